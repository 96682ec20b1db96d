/** RedisEventStore against the machine's real Redis, under a namespace of its own (deleted afterwards). */
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { initialState, type StoredEvent } from '../../core/event-lifecycle.ts';
import type { RedisConnection } from '../../runtime/redis.ts';
import { RedisEventStore, TERMINAL_TTL_S } from '../../runtime/redis-event-store.ts';
import type { EventStatus } from '../../runtime/contracts.ts';
import { EVENT_ID, sampleInfo } from '../support/event-plane.ts';
import { SPEC_REDIS_URL, connectRedis, keysOf, purgeNamespace, specNamespace } from '../support/redis.ts';

const ns = specNamespace('event-store');
const open: RedisConnection[] = [];

async function store(nodeId: string): Promise<{ store: RedisEventStore; conn: RedisConnection }> {
  const conn = await connectRedis(SPEC_REDIS_URL, ns, 'event');
  open.push(conn);
  return { store: new RedisEventStore(conn, nodeId), conn };
}

function state(rev: number, status: EventStatus = 'live', owner = 'node-a'): StoredEvent {
  return { rev, owner, state: { ...initialState(sampleInfo({ status })), callers: { 'ch-1': { nodeId: 'voice-1', port: 10002 } } }, idleDeadlineMs: 1_800_000_000_000, savedAt: '2026-11-25T10:00:00.000Z' };
}

afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
  await purgeNamespace(SPEC_REDIS_URL, ns);
});

describe('RedisEventStore (real Redis)', () => {
  it('save() then load() returns the state; the event is in events:open and events:all', async () => {
    const { store: a } = await store('node-a');
    assert.deepEqual(await a.save(state(1), 'change'), { ok: true });
    assert.deepEqual(await a.load(EVENT_ID), state(1));
    assert.deepEqual(await a.openIds(), [EVENT_ID]);
    assert.deepEqual(await a.allIds(), [EVENT_ID]);
    assert.deepEqual(await keysOf(SPEC_REDIS_URL, ns), [`event:${EVENT_ID}`, 'events:all', 'events:open']);
    assert.equal(await a.load('12345682'), undefined);
  });

  it('save(change) with a rev the store already has or passed is refused with the stored rev; save(sync) of the same rev is taken', async () => {
    const { store: a } = await store('node-a');
    const { store: b } = await store('node-b');
    await a.save(state(5), 'change');
    assert.deepEqual(await b.save(state(5, 'live', 'node-b'), 'change'), { ok: false, rev: 5 });
    assert.deepEqual(await b.save(state(4, 'live', 'node-b'), 'sync'), { ok: false, rev: 5 });
    assert.deepEqual(await b.save(state(5, 'live', 'node-b'), 'sync'), { ok: true });
    assert.equal((await a.load(EVENT_ID))?.owner, 'node-b');
    assert.deepEqual(await a.save(state(6), 'change'), { ok: true });
  });

  it('an archived event leaves events:open and expires after TERMINAL_TTL_S; a live one never expires', async () => {
    const { store: a, conn } = await store('node-a');
    await a.save(state(1), 'change');
    assert.equal(await conn.client.ttl(conn.key('event', EVENT_ID)), -1);
    await a.save(state(2, 'archived'), 'change');
    assert.deepEqual(await a.openIds(), []);
    const ttl = await conn.client.ttl(conn.key('event', EVENT_ID));
    assert.ok(ttl > TERMINAL_TTL_S - 5 && ttl <= TERMINAL_TTL_S, `ttl ${ttl}`);
  });

  it('lock() is held by one node at a time, refreshed by its holder; unlock() by another node does nothing; steal() takes it only from the named holder', async () => {
    const { store: a } = await store('node-a');
    const { store: b } = await store('node-b');
    assert.deepEqual(await a.lock(`${EVENT_ID}:idle`, 5000), { ok: true });
    assert.deepEqual(await a.lock(`${EVENT_ID}:idle`, 5000), { ok: true });
    const refused = await b.lock(`${EVENT_ID}:idle`, 5000);
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.holder, 'node-a');
    assert.ok(!refused.ok && refused.ttlMs > 4000 && refused.ttlMs <= 5000);
    await b.unlock(`${EVENT_ID}:idle`);
    assert.equal((await b.lock(`${EVENT_ID}:idle`, 5000)).ok, false);
    assert.equal(await b.steal(`${EVENT_ID}:idle`, 'node-c', 5000), false);
    assert.equal(await b.steal(`${EVENT_ID}:idle`, 'node-a', 5000), true);
    assert.equal((await a.lock(`${EVENT_ID}:idle`, 5000)).ok, false);
    await b.unlock(`${EVENT_ID}:idle`);
    assert.deepEqual(await a.lock(`${EVENT_ID}:idle`, 5000), { ok: true });
  });

  it('a lock lapses after its time', async () => {
    const { store: a } = await store('node-a');
    const { store: b } = await store('node-b');
    await a.lock(`${EVENT_ID}:archive`, 150);
    assert.equal((await b.lock(`${EVENT_ID}:archive`, 150)).ok, false);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await b.lock(`${EVENT_ID}:archive`, 150), { ok: true });
  });

  it('loadMany() returns the states Redis has, skipping the rest', async () => {
    const { store: a } = await store('node-a');
    await a.save(state(3), 'change');
    const m = await a.loadMany([EVENT_ID, '12345682']);
    assert.deepEqual([...m.keys()], [EVENT_ID]);
    assert.equal(m.get(EVENT_ID)!.rev, 3);
  });
});
