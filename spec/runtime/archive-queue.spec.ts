/**
 * The archive queue and the leader's worker against the machine's Redis (a namespace of this run,
 * purged after): one job per event whatever the number of requests, a job whose worker died taken
 * by the next worker within the lock plus a couple of stalled checks, and ArchiveLeadership starting
 * the worker only on the elected leader and closing it when leadership moves.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { ARCHIVE_LOCK_MS, ARCHIVE_QUEUE, ArchiveWorker, archiveJobId, archiveQueuePrefix, enqueueArchive, type ArchiveJobData } from '../../runtime/archive-queue.ts';
import { ArchiveLeadership, electionAddress, type LeadershipBroker } from '../../runtime/archive-leadership.ts';
import { EVENTS, type ArchiveAnnounce } from '../../runtime/contracts.ts';
import { CapturingLogger, purgeNamespace, SPEC_REDIS_URL, specNamespace } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const data = (eventId: string): ArchiveJobData => ({ eventId, requestedBy: 'spec', requestedAt: new Date().toISOString() });

describe('archive queue (BullMQ on Redis)', { timeout: 60_000 }, () => {
  const namespaces: string[] = [];
  after(async () => {
    for (const ns of namespaces) await purgeNamespace(SPEC_REDIS_URL, ns);
  });

  test('enqueueArchive() twice for one event leaves one job, its ID derived from the event ID', async () => {
    const ns = specNamespace('archive-q');
    namespaces.push(ns);
    const target = { url: SPEC_REDIS_URL, namespace: ns };
    const a = await enqueueArchive(target, data('12345674'));
    const b = await enqueueArchive(target, data('12345674'));
    await enqueueArchive(target, data('20000014'));
    assert.equal(a.jobId, 'event-12345674');
    assert.equal(b.jobId, a.jobId);
    assert.equal(a.state, 'waiting');
    const client = new Redis(SPEC_REDIS_URL);
    const queue = new Queue(ARCHIVE_QUEUE, { connection: client, prefix: archiveQueuePrefix(ns) });
    try {
      assert.equal(await queue.getWaitingCount(), 2, 'one job per event');
      const keys = await client.keys(`jitcast:${ns}:archive:*`);
      assert.ok(keys.length > 0 && keys.every((k) => k.startsWith(`jitcast:${ns}:archive:`)), 'every key under the namespace');
    } finally {
      await queue.close();
      client.disconnect();
    }
  });

  test('enqueueArchive() rejects at once when Redis is unreachable', async () => {
    const t0 = Date.now();
    await assert.rejects(enqueueArchive({ url: 'redis://127.0.0.1:1', namespace: 'nowhere' }, data('12345674'), 3000));
    assert.ok(Date.now() - t0 < 3000);
  });

  test('a job whose worker died (lock no longer renewed) is taken by the next worker, once', async () => {
    const ns = specNamespace('archive-stall');
    namespaces.push(ns);
    const logger = new CapturingLogger();
    const taken: string[] = [];
    const first = new ArchiveWorker({ url: SPEC_REDIS_URL, namespace: ns, logger, process: async (job) => {
      taken.push(`first:${job.data.eventId}`);
      await new Promise(() => undefined); // hangs: stands for a leader that dies mid-build
    } });
    await first.ready();
    await enqueueArchive({ url: SPEC_REDIS_URL, namespace: ns }, data('12345674'));
    await waitFor('the first worker to take the job', () => taken.length === 1 || undefined, 5000);
    // A forced close stops lock renewal without finishing the job, as a SIGKILL would.
    await first.close(true);
    const diedAt = Date.now();
    let doneAt = 0;
    const second = new ArchiveWorker({ url: SPEC_REDIS_URL, namespace: ns, logger, process: async (job) => {
      taken.push(`second:${job.data.eventId}`);
      doneAt = Date.now();
    } });
    try {
      await waitFor('the second worker to take the stalled job', () => doneAt || undefined, 15_000);
      const pickupMs = doneAt - diedAt;
      // Lock (3 s) plus up to two stalled checks (1 s apart); generous bound, no speed claim.
      assert.ok(pickupMs < ARCHIVE_LOCK_MS + 4000, `picked up after ${pickupMs} ms`);
      await sleep(1500);
      assert.deepEqual(taken, ['first:12345674', 'second:12345674']);
      const client = new Redis(SPEC_REDIS_URL);
      try {
        assert.equal(await client.exists(`jitcast:${ns}:archive:${archiveJobId('12345674')}`), 0, 'removed once done: a later retry can queue it again');
      } finally {
        client.disconnect();
      }
    } finally {
      await second.close();
    }
  });

  test('ArchiveLeadership runs the worker only on the leader and hands it over when the leader goes', async () => {
    const ns = specNamespace('archive-lead');
    namespaces.push(ns);
    // Three coordinators on one fake bus; same address, so node IDs decide: a < b < c.
    const members = new Map<string, ArchiveLeadership>();
    const processed: string[] = [];
    const bus = (nodeID: string): LeadershipBroker => ({
      nodeID,
      broadcast(event: string, payload: unknown) {
        assert.equal(event, EVENTS.archiveAnnounce);
        for (const [id, m] of members) if (id !== nodeID) m.heard(payload as ArchiveAnnounce);
      },
    });
    const config = { archiveSilenceLimitS: 1.5, heartbeatS: 0.3, redisUrl: SPEC_REDIS_URL, namespace: ns, sipHost: '127.0.0.1' };
    const loggers = new Map<string, CapturingLogger>();
    for (const id of ['c', 'a', 'b']) {
      const logger = new CapturingLogger();
      loggers.set(id, logger);
      members.set(id, new ArchiveLeadership({ config, broker: bus(id), logger, address: '10.0.0.1', process: async (job) => void processed.push(`${id}:${job.data.eventId}`) }));
    }
    try {
      for (const m of members.values()) m.start();
      await waitFor('every coordinator to name a and a to run the worker', () => ([...members.values()].every((m) => m.status().leader === 'a') && members.get('a')!.status().worker) || undefined, 5000);
      assert.equal(members.get('b')!.status().worker, false);
      assert.equal(members.get('c')!.status().worker, false);
      assert.deepEqual(members.get('b')!.status().peers.map((p) => p.nodeId), ['a', 'b', 'c']);
      await enqueueArchive({ url: SPEC_REDIS_URL, namespace: ns }, data('12345674'));
      await waitFor('the leader to process the job', () => processed.length === 1 || undefined, 5000);
      assert.deepEqual(processed, ['a:12345674']);

      // a dies silently: it stops announcing (and is no longer on the bus).
      const a = members.get('a')!;
      members.delete('a');
      await a.stop();
      await waitFor('b to lead and run the worker', () => (members.get('b')!.status().worker && members.get('c')!.status().leader === 'b') || undefined, 5000);
      assert.ok(loggers.get('b')!.lines.some((l) => /archive leader is now b \[was:a /.test(l)), loggers.get('b')!.lines.join('\n'));
      await enqueueArchive({ url: SPEC_REDIS_URL, namespace: ns }, data('20000014'));
      await waitFor('the new leader to process the next job', () => processed.length === 2 || undefined, 5000);
      assert.deepEqual(processed, ['a:12345674', 'b:20000014']);
    } finally {
      for (const m of members.values()) await m.stop();
    }
  });

  test('electionAddress() takes the first non-internal IPv4, else the SIP host', () => {
    const lo = { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '', internal: true, cidr: null } as const;
    const v6 = { address: 'fd00::2', netmask: '', family: 'IPv6', mac: '', internal: false, cidr: null, scopeid: 0 } as const;
    const v4 = { address: '192.0.2.7', netmask: '', family: 'IPv4', mac: '', internal: false, cidr: null } as const;
    assert.equal(electionAddress({ sipHost: '10.1.1.1' }, { lo: [lo], eth0: [v6, v4] }), '192.0.2.7');
    assert.equal(electionAddress({ sipHost: '10.1.1.1' }, { lo: [lo] }), '10.1.1.1');
    assert.equal(electionAddress({ sipHost: '0.0.0.0' }, { lo: [lo] }), '127.0.0.1');
  });
});
