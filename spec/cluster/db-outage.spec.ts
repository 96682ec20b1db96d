/**
 * Issue 5 "Asynchronous database", shown on a real node process (slot 3) in cluster mode: NATS, the
 * machine's Redis, and a PostgreSQL of the spec's own on port 11603 that the spec stops and starts
 * (spec/support/postgres-instance.ts; the shared PostgreSQL is never touched).
 *
 * 1. PostgreSQL stopped: 1,000 reservations, 100 modifications and 100 cancellations (50 events get
 *    both) through the REST API all succeed while their DB writes wait in Redis (BullMQ jobs, a
 *    flush's batch of states each).
 *    PostgreSQL starts: every event has exactly one row matching event-info.xml in content storage
 *    (status, title, updated_at, the version of that state), written by the queue alone.
 * 2. PostgreSQL stopped again, 200 more reservations and 40 modifications, then the node is killed
 *    with SIGKILL while its worker holds some of the jobs. The states of 50 events are removed from
 *    the waiting jobs, as if they had never left the dead node's memory, so only the start-up
 *    reconciliation can bring those back. PostgreSQL starts, the node restarts: all 1,200 events
 *    have their one row as stored, the queue is empty, and the log counts what reconciliation wrote.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { parseEventInfo } from '../../codecs/event-info.ts';
import { DB_QUEUE, dbQueuePrefix, jobStates, type DbJobData } from '../../runtime/db-queue.ts';
import { versionOf } from '../../runtime/reporting.ts';
import type { EventInfo } from '../../runtime/contracts.ts';
import { CLUSTER_API_KEY, REDIS_URL, startCluster, type Cluster } from '../support/cluster.ts';
import { apiRequest } from '../support/node-process.ts';
import { startPostgresInstance, type PostgresInstance } from '../support/postgres-instance.ts';
import { purgeNamespace } from '../support/redis.ts';
import { mapLimit } from '../../runtime/map-limit.ts';
import { waitFor } from '../support/event-plane.ts';

const SLOT = 3;
const RESERVATIONS = 1000;
const CHANGES = 100;
const IN_FLIGHT = 32;
const KILL_RESERVATIONS = 200;
/** How often the spec looks at PostgreSQL and the queue while it waits. */
const POLL_MS = 200;

interface Row { event_id: string; status: string; title: string; updated_at: Date; version: string }

describe('reporting DB outage and a killed node (slot 3)', { timeout: 120_000 }, () => {
  let pg: PostgresInstance;
  let cluster: Cluster;
  let queue: Queue<DbJobData>;
  let redis: Redis;
  /** Events of the first test, checked again after the restart. */
  const all: string[] = [];

  before(async () => {
    pg = await startPostgresInstance(11603);
    cluster = await startCluster({
      name: 'db-outage',
      slot: SLOT,
      postgres: false,
      env: { JITCAST_DB_URL: pg.url, JITCAST_DB_RETRY_MAX_S: '0.5' },
      nodes: [{ id: 'db-a', roles: ['gateway', 'reservation', 'event', 'content-storage', 'monitoring'] }],
    });
    redis = new Redis(REDIS_URL);
    queue = new Queue<DbJobData>(DB_QUEUE, { connection: redis, prefix: dbQueuePrefix(cluster.namespace) });
  });

  after(async () => {
    await queue?.close().catch(() => undefined);
    redis?.disconnect();
    await cluster?.stop();
    await pg?.destroy();
    if (cluster) await purgeNamespace(REDIS_URL, cluster.namespace);
  });

  /** Event-info as stored on the node. */
  const storedInfo = (dataDir: string, id: string): EventInfo => parseEventInfo(readFileSync(join(dataDir, 'storage', 'dc1', id, 'event-info.xml'), 'utf8'));

  /** Waits until `events` holds exactly `ids`, each row showing its stored event-info; returns the rows. */
  async function rowsAsStored(dataDir: string, ids: string[], timeoutMs: number): Promise<Row[]> {
    const stored = new Map(ids.map((id) => [id, storedInfo(dataDir, id)]));
    const rows = await waitFor('every row as stored', async () => {
      const rs = await pg.query<Row>('SELECT event_id, status, title, updated_at, version::text AS version FROM events');
      if (rs.length !== ids.length) return undefined;
      const byId = new Map(rs.map((r) => [r.event_id, r]));
      const off = ids.filter((id) => {
        const r = byId.get(id);
        const s = stored.get(id)!;
        return !r || r.status !== s.status || r.title !== s.title || r.updated_at.getTime() !== Date.parse(s.updatedAt);
      });
      return off.length === 0 ? rs : undefined;
    }, timeoutMs, POLL_MS);
    // Exactly one row per event (the primary key) and nothing else; each row at its stored state's version.
    assert.deepEqual(new Set(rows.map((r) => r.event_id)), new Set(ids));
    for (const r of rows) {
      const v = versionOf(stored.get(r.event_id)!);
      // updatedAt in µs, plus one per further change within the same millisecond.
      assert.ok(Number(r.version) >= v && Number(r.version) < v + 1000, `version of ${r.event_id}: ${r.version} vs ${v}`);
    }
    return rows;
  }

  const unfinished = async () => {
    const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed');
    return Object.values(c).reduce((a, b) => a + b, 0);
  };

  /** States in the jobs not yet done (a job carries a flush's batch). */
  const queuedStates = async () => {
    const jobs = await queue.getJobs(['waiting', 'active', 'delayed', 'prioritized']);
    return jobs.reduce((n, j) => n + (j ? jobStates(j.data).length : 0), 0);
  };

  test('PostgreSQL down: 1,000 reservations, 100 modifications and 100 cancellations succeed; once it is back every row lands from the queue, once, as stored', async () => {
    const node = cluster.node('db-a');
    const api = (method: string, path: string, body?: unknown) => apiRequest(node.baseUrl, CLUSTER_API_KEY, method, path, body, { timeoutMs: 10_000 });
    // The start-up pass (storage still empty) is done before the outage, so the rows below come from the queue alone.
    await waitFor('the start-up reconciliation', async () => /reconciled 0 events/.test(node.output()) || undefined, 15_000, POLL_MS);
    await pg.stop();

    const created = await mapLimit(Array.from({ length: RESERVATIONS }, (_, i) => i), IN_FLIGHT, async (i) => {
      const r = await api('POST', '/api/events', { title: `outage ${i}` });
      assert.equal(r.status, 201, `reservation ${i}: ${r.text}`);
      return r.body.eventId as string;
    });
    assert.equal(new Set(created).size, RESERVATIONS);
    const modified = created.slice(0, CHANGES);
    const cancelled = created.slice(CHANGES / 2, CHANGES / 2 + CHANGES); // half of them modified first
    await mapLimit(modified, 16, async (id) => {
      const r = await api('PATCH', `/api/events/${id}`, { title: `changed ${id}` });
      assert.equal(r.status, 200, `modify ${id}: ${r.text}`);
    });
    await mapLimit(cancelled, 16, async (id) => {
      const r = await api('DELETE', `/api/events/${id}`);
      assert.equal(r.status, 200, `cancel ${id}: ${r.text}`);
    });
    // The writes wait in Redis, at least one state per event.
    const queued = await waitFor('every event queued', async () => ((await queuedStates()) >= RESERVATIONS ? queuedStates() : undefined), 10_000, POLL_MS);
    assert.ok(queued >= RESERVATIONS, `queued ${queued}`);
    assert.ok(/reporting DB unreachable/.test(node.output()), 'the worker saw the outage');

    await pg.start();
    const rows = await rowsAsStored(node.dataDir, created, 30_000);
    assert.equal(rows.filter((r) => r.status === 'cancelled').length, CHANGES);
    assert.equal(rows.filter((r) => r.status === 'reserved').length, RESERVATIONS - CHANGES);
    assert.equal(rows.filter((r) => r.title.startsWith('changed ')).length, CHANGES);
    await waitFor('queue empty', async () => (await unfinished()) === 0 || undefined, 15_000, POLL_MS);
    // Only the queue wrote them: the start-up pass (database up, storage empty) wrote nothing.
    assert.deepEqual([...node.output().matchAll(/reconciled (\d+) events/g)].map((m) => m[1]), ['0']);
    all.push(...created);
  });

  test('SIGKILL of the node holding queued writes while PostgreSQL is down: after restart nothing is missing', async () => {
    const node = cluster.node('db-a');
    const api = (method: string, path: string, body?: unknown) => apiRequest(node.baseUrl, CLUSTER_API_KEY, method, path, body, { timeoutMs: 10_000 });
    await pg.stop();
    const created = await mapLimit(Array.from({ length: KILL_RESERVATIONS }, (_, i) => i), IN_FLIGHT, async (i) => {
      const r = await api('POST', '/api/events', { title: `killed ${i}` });
      assert.equal(r.status, 201, `reservation ${i}: ${r.text}`);
      return r.body.eventId as string;
    });
    const changed = [...all.slice(200, 220), ...created.slice(0, 20)];
    await mapLimit(changed, 16, async (id) => {
      const r = await api('PATCH', `/api/events/${id}`, { title: `late ${id}` });
      assert.equal(r.status, 200, `modify ${id}: ${r.text}`);
    });
    await waitFor('every write queued', async () => ((await queuedStates()) >= KILL_RESERVATIONS + changed.length - 20 ? true : undefined), 10_000, POLL_MS);
    await waitFor('the worker holding jobs', async () => ((await queue.getActiveCount()) > 0 ? true : undefined), 10_000, POLL_MS);

    await cluster.kill9('db-a');
    // States that never reached Redis are lost with the process: make it so for the last 50 events.
    const lost = new Set(created.slice(-50));
    let removed = 0;
    for (const job of await queue.getJobs(['waiting'])) {
      if (!job) continue;
      const states = jobStates(job.data);
      const kept = states.filter((s) => !lost.has(s.eventId));
      if (kept.length === states.length) continue;
      removed += states.length - kept.length;
      if (kept.length === 0) await job.remove();
      else await job.updateData({ states: kept, by: job.data.by });
    }
    assert.ok(removed >= 40, `removed the states of most of the last 50 events (${removed})`);

    await pg.start();
    const restarted = await cluster.restart('db-a');
    const ids = [...all, ...created];
    const rows = await rowsAsStored(restarted.dataDir, ids, 30_000);
    assert.equal(rows.filter((r) => r.title.startsWith('late ')).length, changed.length);
    await waitFor('queue empty', async () => (await unfinished()) === 0 || undefined, 15_000, POLL_MS);
    const m = /reconciled (\d+) events \[stored:(\d+) missing:(\d+) stale:(\d+)/.exec(restarted.output()); // the new process's output only
    assert.ok(m, `reconciliation logged:\n${restarted.output().slice(-3000)}`);
    assert.equal(Number(m[2]), ids.length, 'the pass saw every stored event');
    assert.ok(Number(m[1]) >= removed, `reconciled ${m[1]} ≥ ${removed} whose jobs were lost`);
  });
});
