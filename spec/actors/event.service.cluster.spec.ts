/**
 * The event actor in cluster mode against the machine's real NATS and Redis (a namespace of its
 * own; keys deleted afterwards): two event nodes, one of them a child process that is SIGKILLed,
 * plus a client node without the actor (it plays the voice server and the reservation). The Redis
 * outage runs against a private redis-server that the spec kills and restarts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { ServiceBroker } from 'moleculer';
import { createArchiveCoordinatorService } from '../../actors/archive-coordinator.service.ts';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createEventService, type HeldEvent } from '../../actors/event.service.ts';
import { createMonitoringService } from '../../actors/monitoring.service.ts';
import { makeEventId } from '../../codecs/ids.ts';
import type { StoredEvent } from '../../core/event-lifecycle.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type EventInfo, type EventView, type JoinResult, type StreamDataset } from '../../runtime/contracts.ts';
import { testConfig } from '../support/config.ts';
import { FakeReporting, dataset, sampleInfo, waitFor } from '../support/event-plane.ts';
import { SPEC_NATS_URL, SPEC_REDIS_URL, purgeNamespace, specNamespace, startPrivateRedis, type PrivateRedis } from '../support/redis.ts';

const LOG = (process.env.JITCAST_SPEC_LOG ?? 'warn') as 'warn';
const ARCHIVE_TIMEOUT_S = 10;

/** The node the client's Shard strategy sends this event's calls to (the ring Moleculer built for `event.*`). */
function ringOwner(broker: ServiceBroker, eventId: string): string | undefined {
  const list = broker.registry.getActionEndpoints('event.join') as any;
  const strategy = list?.strategy;
  assert.equal(typeof strategy?.getNodeIDByKey, 'function', 'event.join must be routed by the Shard strategy on a node without the actor');
  const available = list.endpoints.filter((e: any) => e.isAvailable);
  if (strategy.needRebuild) strategy.rebuild(available);
  return strategy.getNodeIDByKey(eventId) ?? undefined;
}

/** Event IDs the ring places on `nodeId`, `n` of them. */
function idsOn(broker: ServiceBroker, nodeId: string, n: number, from: number): string[] {
  const out: string[] = [];
  for (let i = from; out.length < n; i++) {
    const id = makeEventId(String(i).padStart(7, '0'));
    if (ringOwner(broker, id) === nodeId) out.push(id);
    if (i > from + 10_000) throw new Error(`no event IDs placed on ${nodeId}`);
  }
  return out;
}

interface ChildNode {
  proc: ChildProcess;
  nodeId: string;
  output(): string;
}

async function startChild(overrides: Record<string, string>): Promise<ChildNode> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'spec/support/event-node.ts'], {
    env: { ...process.env, JITCAST_SPEC_NODE: JSON.stringify(overrides) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  await waitFor('child node ready', () => /ready /.test(out) || (proc.exitCode !== null && Promise.reject(new Error(out))), 30_000);
  return { proc, nodeId: overrides.nodeId!, output: () => out };
}

/** Starts an in-process event-plane node (content-storage, monitoring, event, archive-coordinator). */
async function startNode(overrides: Record<string, string>): Promise<ServiceBroker> {
  const config = testConfig(overrides);
  const broker = createBroker(config);
  broker.createService(createContentStorageService(config));
  broker.createService(createMonitoringService(config));
  broker.createService(createEventService(config, { reporting: () => new FakeReporting() }));
  broker.createService(createArchiveCoordinatorService(config));
  await broker.start();
  return broker;
}

/** A client node without the actors (the voice server and the reservation, as far as `event` can tell). */
async function startClient(overrides: Record<string, string>) {
  const config = testConfig(overrides);
  const broker = createBroker(config);
  const ended = new Map<string, { atMs: number; reason: string; nodeID: string }>();
  broker.createService({
    name: 'spec-listener',
    events: {
      [EVENTS.eventEnded]: {
        handler(ctx: any) {
          if (!ended.has(ctx.params.eventId)) ended.set(ctx.params.eventId, { atMs: Date.now(), reason: ctx.params.reason, nodeID: ctx.nodeID });
        },
      },
    },
  });
  await broker.start();
  return { broker, ended };
}

async function eventNodes(broker: ServiceBroker): Promise<string[]> {
  const list = broker.registry.getServiceList({ onlyAvailable: true }) as Array<{ name: string; nodeID: string }>;
  return list.filter((s) => s.name === 'event').map((s) => s.nodeID).sort();
}

async function register(client: ServiceBroker, eventId: string): Promise<EventInfo> {
  const info = sampleInfo({ eventId, title: `Cluster ${eventId}` });
  await client.call('content-storage.putEventInfo', { info });
  return client.call<EventInfo, { info: EventInfo }>('event.register', { info });
}

const held = (broker: ServiceBroker, nodeID: string) => broker.call<HeldEvent[], object>('event.held', {}, { nodeID });
const get = (broker: ServiceBroker, eventId: string) => broker.call<EventView, { eventId: string }>('event.get', { eventId });

async function storedState(url: string, namespace: string, eventId: string): Promise<StoredEvent | undefined> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const json = await r.hget(`jitcast:${namespace}:event:${eventId}`, 'state');
    return json ? (JSON.parse(json) as StoredEvent) : undefined;
  } finally {
    r.disconnect();
  }
}

describe('event actor on two nodes over NATS with Redis', { timeout: 120_000 }, () => {
  const ns = specNamespace('events');
  const dataDir = mkdtempSync(join(tmpdir(), 'jitcast-spec-cluster-'));
  const base = { namespace: ns, natsUrl: SPEC_NATS_URL, redisUrl: SPEC_REDIS_URL, dataDir, archiveTimeoutS: String(ARCHIVE_TIMEOUT_S), heartbeatS: '1', heartbeatTimeoutS: '3', logLevel: LOG };
  const V = `${ns}-v`;
  const S = `${ns}-s`;
  const C = `${ns}-c`;
  let victim: ChildNode;
  let survivor: ServiceBroker;
  let client: Awaited<ReturnType<typeof startClient>>;

  before(async () => {
    victim = await startChild({ ...base, nodeId: V });
    survivor = await startNode({ ...base, nodeId: S });
    client = await startClient({ ...base, nodeId: C });
    await waitFor('both event nodes seen by the client', async () => (await eventNodes(client.broker)).length === 2 || undefined, 15_000);
    // Let both event nodes hear of each other before any placement matters (their first sweep).
    await new Promise((r) => setTimeout(r, 2000));
  });

  after(async () => {
    if (victim?.proc.exitCode === null && victim.proc.signalCode === null) victim.proc.kill('SIGKILL');
    await client?.broker.stop();
    await survivor?.stop();
    await purgeNamespace(SPEC_REDIS_URL, ns);
    if (process.env.JITCAST_SPEC_LOG) process.stdout.write(victim?.output() ?? '');
  });

  it("an event's calls stick to the node the Shard strategy places it on, also calls made on the other event node", async () => {
    const onV = idsOn(client.broker, V, 2, 1000000);
    const onS = idsOn(client.broker, S, 2, 1000000);
    for (const id of [...onV, ...onS]) await register(client.broker, id);
    for (const id of [...onV, ...onS]) {
      await client.broker.call('event.join', { eventId: id, nodeId: C, channelId: `${id}-a`, port: 10002 });
      await get(client.broker, id);
    }
    // S calls an event placed on V: Moleculer serves it locally (preferLocal), the actor forwards it.
    const fromS = await survivor.call<JoinResult, object>('event.join', { eventId: onV[0]!, nodeId: C, channelId: `${onV[0]}-b`, port: 10004 });
    assert.deepEqual(fromS, { ok: true, status: 'live' });
    assert.equal((await get(survivor, onV[0]!)).callers, 2);

    const hv = await held(client.broker, V);
    const hs = await held(client.broker, S);
    assert.deepEqual(hv.map((e) => e.eventId), [...onV].sort());
    assert.deepEqual(hs.map((e) => e.eventId), [...onS].sort());
    assert.equal(hv.find((e) => e.eventId === onV[0])!.callers, 2);
    for (const id of onV) assert.equal((await storedState(SPEC_REDIS_URL, ns, id))?.owner, V);
    for (const id of onS) assert.equal((await storedState(SPEC_REDIS_URL, ns, id))?.owner, S);
    // `list` from either side sees all four.
    const list = await client.broker.call<EventView[], object>('event.list', {});
    for (const id of [...onV, ...onS]) assert.equal(list.find((e) => e.eventId === id)?.status, 'live');
  });

  it('SIGKILL of the holder: after the heartbeat timeout the other node answers with the stored state, drops callers of the dead node and its idle timers end the events', async () => {
    const [e1, e2, e3] = idsOn(client.broker, V, 3, 2000000);
    for (const id of [e1!, e2!, e3!]) await register(client.broker, id);
    // e1: a caller on the client (alive) and one on V (dies with it).
    await client.broker.call('event.join', { eventId: e1, nodeId: C, channelId: 'c1', port: 10002 });
    await client.broker.call('event.join', { eventId: e1, nodeId: V, channelId: 'v1', port: 10004 });
    // e2: the last caller left; V's idle timer runs.
    await client.broker.call('event.join', { eventId: e2, nodeId: C, channelId: 'c2', port: 10006 });
    await client.broker.call('event.leave', { eventId: e2, channelId: 'c2' });
    const leftAt = Date.now();
    // e3: its only voice server was V.
    await client.broker.call('event.join', { eventId: e3, nodeId: V, channelId: 'v3', port: 10008 });
    assert.deepEqual((await held(client.broker, V)).filter((h) => [e1, e2, e3].includes(h.eventId)).map((h) => [h.eventId, h.callers]), [
      [e1, 2],
      [e2, 0],
      [e3, 1],
    ]);

    const killedAt = Date.now();
    victim.proc.kill('SIGKILL');
    await waitFor('client drops the dead node', async () => (await eventNodes(client.broker)).length === 1 || undefined, 15_000);
    const detectedS = (Date.now() - killedAt) / 1000;

    // The next call for e1 lands on S, which carries on from Redis: the client's caller stays, V's is
    // dropped as soon as S too has noticed V's death (each node's heartbeat check runs on its own clock).
    const v1 = await get(client.broker, e1!);
    const answeredS = (Date.now() - killedAt) / 1000;
    assert.equal(v1.status, 'live');
    assert.ok(v1.callers === 1 || v1.callers === 2, `callers ${v1.callers}`);
    await waitFor("V's caller dropped on S", async () => (await get(client.broker, e1!)).callers === 1 || undefined, 5000);
    const hs = await waitFor('S holds all three', async () => {
      const h = await held(client.broker, S);
      return [e1, e2, e3].every((id) => h.some((x) => x.eventId === id)) ? h : undefined;
    }, 10_000);
    assert.equal(hs.find((h) => h.eventId === e3)!.callers, 0);
    // e2's idle timer keeps V's deadline: it ends ARCHIVE_TIMEOUT_S after the leave, not after the takeover.
    const e2Deadline = Date.parse(hs.find((h) => h.eventId === e2)!.idleDeadline!);
    assert.ok(Math.abs(e2Deadline - (leftAt + ARCHIVE_TIMEOUT_S * 1000)) < 1000, `e2 deadline ${e2Deadline - leftAt} ms after the leave`);

    // e1 carries on: its last caller leaves on S and S's timer ends it.
    await client.broker.call('event.leave', { eventId: e1, channelId: 'c1' });
    const e1LeftAt = Date.now();
    await waitFor('all three ended by timeout', () => [e1, e2, e3].every((id) => client.ended.has(id!)), (ARCHIVE_TIMEOUT_S + 8) * 1000);
    for (const id of [e1, e2, e3]) {
      assert.equal(client.ended.get(id!)!.reason, 'timeout');
      assert.equal(client.ended.get(id!)!.nodeID, S);
    }
    const e2EndedAfterLeave = (client.ended.get(e2!)!.atMs - leftAt) / 1000;
    assert.ok(e2EndedAfterLeave >= ARCHIVE_TIMEOUT_S - 0.2 && e2EndedAfterLeave < ARCHIVE_TIMEOUT_S + 1.5, `e2 ended ${e2EndedAfterLeave}s after its last caller left`);
    const e1EndedAfterLeave = (client.ended.get(e1!)!.atMs - e1LeftAt) / 1000;
    assert.ok(e1EndedAfterLeave >= ARCHIVE_TIMEOUT_S - 0.2 && e1EndedAfterLeave < ARCHIVE_TIMEOUT_S + 1.5, `e1 ended ${e1EndedAfterLeave}s after its last caller left`);
    assert.notEqual((await get(client.broker, e3!)).status, 'live');
    // No stream was recorded, so the archive of each ends in archive-error; S did it, V is gone.
    for (const id of [e1, e2]) await waitFor(`${id} archive-error`, async () => (await get(client.broker, id!)).status === 'archive-error' || undefined, 10_000);
    process.stdout.write(`# node dropped ${detectedS.toFixed(1)}s after SIGKILL, first call answered by the survivor ${answeredS.toFixed(1)}s after\n`);
  });
});

describe('event and monitoring actors through a Redis outage', { timeout: 60_000 }, () => {
  const ns = specNamespace('events-outage');
  let redis: PrivateRedis;
  let node: ServiceBroker;
  let client: Awaited<ReturnType<typeof startClient>>;
  const eventId = makeEventId('3000001');
  const streamA = `${eventId}-spec-node-10002-lq0abc`;
  const streamB = `${eventId}-spec-node-10004-lq0abd`;

  before(async () => {
    redis = await startPrivateRedis(11647);
    const dataDir = mkdtempSync(join(tmpdir(), 'jitcast-spec-outage-'));
    const base = { namespace: ns, natsUrl: SPEC_NATS_URL, redisUrl: redis.url, dataDir, archiveTimeoutS: '30', heartbeatS: '1', heartbeatTimeoutS: '3', logLevel: LOG };
    node = await startNode({ ...base, nodeId: `${ns}-n` });
    client = await startClient({ ...base, nodeId: `${ns}-c` });
    await client.broker.waitForServices(['event', 'monitoring'], 10_000);
  });

  after(async () => {
    await client?.broker.stop();
    await node?.stop();
    await redis?.kill();
  });

  it('calls keep working from memory while Redis is down or hanging, and the state and datasets are back in Redis after it restarts empty', async () => {
    const c = client.broker;
    await register(c, eventId);
    await c.call('event.join', { eventId, nodeId: `${ns}-c`, channelId: 'ch-1', port: 10002 });
    await c.broadcast(EVENTS.streamDataset, dataset(streamA));
    await waitFor('stream active', async () => (await c.call<StreamDataset[], object>('monitoring.activeStreams', { eventId })).length === 1 || undefined);
    assert.equal((await storedState(redis.url, ns, eventId))?.state.info.status, 'live');

    await redis.kill();
    const timings: number[] = [];
    const timed = async <T>(p: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      const r = await p();
      timings.push(Date.now() - t0);
      return r;
    };
    assert.deepEqual(await timed(() => c.call<JoinResult, object>('event.join', { eventId, nodeId: `${ns}-c`, channelId: 'ch-2', port: 10004 })), { ok: true, status: 'live' });
    assert.deepEqual(await timed(() => c.call('event.leave', { eventId, channelId: 'ch-1' })), { ok: true });
    await c.broadcast(EVENTS.streamDataset, dataset(streamA));
    const during = await timed(() => get(c, eventId));
    assert.equal(during.callers, 1);
    assert.deepEqual(during.streams.map((s) => s.streamId), [streamA]);
    assert.ok(Math.max(...timings) < 500, `calls took ${timings.join(', ')} ms with Redis down`);
    // Stay down a while (reconnects keep failing), the encoder keeps pushing.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 500));
      await c.broadcast(EVENTS.streamDataset, dataset(streamA));
    }
    assert.deepEqual((await c.call<StreamDataset[], object>('monitoring.activeStreams', { eventId })).map((d) => d.streamId), [streamA]);

    await redis.start();
    // Rewritten once on reconnect, with no further change needed; monitoring repopulates from the next push.
    const resynced = await waitFor('event state back in redis', async () => {
      const s = await storedState(redis.url, ns, eventId);
      return s && Object.keys(s.state.callers).length === 1 ? s : undefined;
    }, 15_000);
    assert.deepEqual(Object.keys(resynced.state.callers), ['ch-2']);
    await c.broadcast(EVENTS.streamDataset, dataset(streamB));
    await waitFor('datasets repopulated', async () => {
      const r = new Redis(redis.url);
      try {
        return (await r.exists(`jitcast:${ns}:stream:${streamB}`)) === 1 || undefined;
      } finally {
        r.disconnect();
      }
    });

    // Redis hangs for 2 s: a join waits at most the command timeout, not for Redis.
    const sleeper = new Redis(redis.url);
    const sleeping = sleeper.call('DEBUG', 'SLEEP', '2').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    assert.deepEqual(await c.call<JoinResult, object>('event.join', { eventId, nodeId: `${ns}-c`, channelId: 'ch-3', port: 10006 }), { ok: true, status: 'live' });
    const hungMs = Date.now() - t0;
    await sleeping;
    sleeper.disconnect();
    assert.ok(hungMs < 1200, `join took ${hungMs} ms while Redis slept`);
    assert.equal((await get(c, eventId)).callers, 2);
    // The next change brings Redis level again.
    await c.call('event.leave', { eventId, channelId: 'ch-3' });
    await waitFor('redis caught up', async () => {
      const s = await storedState(redis.url, ns, eventId);
      return s && Object.keys(s.state.callers).join() === 'ch-2' ? s : undefined;
    });
    process.stdout.write(`# calls with redis down: ${timings.join(', ')} ms; join while redis slept: ${hungMs} ms\n`);
  });

  it("callers of a voice node that drops out and comes back (same process, a partition) are dropped, then restored before the idle timer ends the event", async () => {
    const c = client.broker;
    const partitioned = makeEventId('3000002');
    await register(c, partitioned);
    await c.call('event.join', { eventId: partitioned, nodeId: `${ns}-c`, channelId: 'p-1', port: 10010 });
    const discoverer = (c.registry as any).discoverer;
    discoverer.stopHeartbeatTimers();
    let dropped: HeldEvent | undefined;
    try {
      dropped = await waitFor('callers dropped', async () => {
        const h = (await node.call<HeldEvent[], object>('event.held', {})).find((e) => e.eventId === partitioned);
        return h && h.callers === 0 && h.idleDeadline ? h : undefined;
      }, 10_000);
    } finally {
      discoverer.startHeartbeatTimers();
    }
    assert.ok(dropped);
    const back = await waitFor('callers restored', async () => {
      const h = (await node.call<HeldEvent[], object>('event.held', {})).find((e) => e.eventId === partitioned);
      return h && h.callers === 1 && !h.idleDeadline ? h : undefined;
    }, 10_000);
    assert.equal(back.status, 'live');
  });
});
