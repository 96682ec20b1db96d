/**
 * Monitoring actors on two nodes over the real NATS, sharing the real Redis (a namespace of their
 * own, deleted afterwards); a third node plays the encoders and broadcasts datasets to both.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceBroker } from 'moleculer';
import { createMonitoringService } from '../../actors/monitoring.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type StreamDataset, type StreamRecord } from '../../runtime/contracts.ts';
import { testConfig } from '../support/config.ts';
import { STREAM_ID, dataset, stopRecord, waitFor } from '../support/event-plane.ts';
import { SPEC_NATS_URL, SPEC_REDIS_URL, keysOf, purgeNamespace, specNamespace } from '../support/redis.ts';

const EVENT = '12345674';
const OTHER = '12345674-spec-node-10004-lq0abd';
const RESTARTED = '12345674-spec-node-10002-lq0abz';

describe('monitoring actors on two nodes sharing Redis', { timeout: 60_000 }, () => {
  const ns = specNamespace('monitoring');
  const base = { namespace: ns, natsUrl: SPEC_NATS_URL, redisUrl: SPEC_REDIS_URL, heartbeatS: '1', heartbeatTimeoutS: '3', logLevel: 'warn' };
  const brokers: ServiceBroker[] = [];
  let m1: ServiceBroker;
  let m2: ServiceBroker;
  let encoder: ServiceBroker;

  async function monitoringNode(nodeId: string): Promise<ServiceBroker> {
    const config = testConfig({ ...base, nodeId });
    const b = createBroker(config);
    b.createService(createMonitoringService(config));
    await b.start();
    brokers.push(b);
    return b;
  }

  const active = (b: ServiceBroker, nodeID: string) => b.call<StreamDataset[], object>('monitoring.activeStreams', { eventId: EVENT }, { nodeID });
  const history = (b: ServiceBroker, nodeID: string) => b.call<StreamRecord[], object>('monitoring.history', { eventId: EVENT }, { nodeID });

  before(async () => {
    m1 = await monitoringNode(`${ns}-m1`);
    m2 = await monitoringNode(`${ns}-m2`);
    encoder = createBroker(testConfig({ ...base, nodeId: `${ns}-enc` }));
    brokers.push(encoder);
    await encoder.start();
    await waitFor('both monitoring nodes', () => {
      const list = encoder.registry.getServiceList({ onlyAvailable: true }) as Array<{ name: string }>;
      return list.filter((s) => s.name === 'monitoring').length === 2;
    });
  });

  after(async () => {
    while (brokers.length > 0) await brokers.pop()!.stop();
    await purgeNamespace(SPEC_REDIS_URL, ns);
  });

  it('both nodes list the same active streams; a stream whose pushes stop leaves both within heartbeatTimeoutS (3 s)', async () => {
    await encoder.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    await encoder.broadcast(EVENTS.streamDataset, dataset(OTHER));
    for (const [b, id] of [[m1, `${ns}-m1`], [m2, `${ns}-m2`]] as const) {
      await waitFor(`two active on ${id}`, async () => (await active(b, id)).length === 2);
    }
    const keep = setInterval(() => void encoder.broadcast(EVENTS.streamDataset, dataset(OTHER)), 1000);
    const lastPush = Date.now();
    try {
      await waitFor('quiet stream gone on both', async () => {
        const a = await active(encoder, `${ns}-m1`);
        const b = await active(encoder, `${ns}-m2`);
        return a.length === 1 && b.length === 1 && a[0]!.streamId === OTHER && b[0]!.streamId === OTHER;
      }, 6000);
      const goneAfterS = (Date.now() - lastPush) / 1000;
      assert.ok(goneAfterS <= 3.3, `gone ${goneAfterS}s after the last push`);
      process.stdout.write(`# quiet stream left the active table ${goneAfterS.toFixed(2)}s after its last push\n`);
    } finally {
      clearInterval(keep);
    }
  });

  it('a monitoring node started late answers from Redis at once, and a stream restarted on the same port shows both records to every node', async () => {
    await encoder.broadcast(EVENTS.streamDataset, dataset(RESTARTED, { startedAt: '2026-11-25T10:05:20.000Z', lastSeenAt: '2026-11-25T10:05:20.000Z' }));
    await encoder.broadcast(EVENTS.streamStopped, stopRecord(RESTARTED, { startedAt: '2026-11-25T10:05:20.000Z', endedAt: '2026-11-25T10:06:00.000Z', durationS: 40 }));
    await waitFor('stop recorded', async () => (await history(encoder, `${ns}-m1`)).some((r) => r.streamId === RESTARTED && r.endedAt));
    const m3 = await monitoringNode(`${ns}-m3`);
    const t0 = Date.now();
    await waitFor('m3 connected to redis', async () => (await history(m3, `${ns}-m3`)).length === 3, 5000);
    assert.ok(Date.now() - t0 < 1000, `m3 answered from Redis ${Date.now() - t0} ms after start`);
    await waitFor('encoder sees m3', () => {
      const list = encoder.registry.getServiceList({ onlyAvailable: true }) as Array<{ name: string }>;
      return list.filter((s) => s.name === 'monitoring').length === 3;
    });
    const views = await Promise.all([`${ns}-m1`, `${ns}-m2`, `${ns}-m3`].map((id) => history(encoder, id)));
    for (const v of views) assert.deepEqual(v, views[0]);
    const ids = views[0]!.map((r) => r.streamId);
    assert.deepEqual(new Set(ids), new Set([STREAM_ID, OTHER, RESTARTED]));
    const restarted = views[0]!.find((r) => r.streamId === RESTARTED)!;
    const first = views[0]!.find((r) => r.streamId === STREAM_ID)!;
    // Same event, same port: the first record's last push and the second's start bound the gap.
    assert.equal(first.port, restarted.port);
    assert.equal(first.endedAt, undefined);
    assert.ok(first.lastSeenAt && first.lastSeenAt <= restarted.startedAt, `${first.lastSeenAt} ≤ ${restarted.startedAt}`);
    const keys = await keysOf(SPEC_REDIS_URL, ns);
    assert.ok(keys.includes(`history:${EVENT}`) && keys.includes('streams:active'), keys.join(' '));
  });
});
