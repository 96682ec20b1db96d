import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseVoiceServer, RoutingTable, unavailableBecause, type RouteCandidate } from '../../core/routing.ts';
import type { VoiceStatus } from '../../runtime/contracts.ts';

const NOW = 1_000_000;
const TIMEOUT = 3000;

function status(nodeId: string, dataCenter: string, o: Partial<Omit<VoiceStatus, 'ports'>> & { available?: number; busy?: number; capacity?: number; suspendBelow?: number } = {}): VoiceStatus {
  const capacity = o.capacity ?? 25;
  const available = o.available ?? capacity;
  const busy = o.busy ?? 0;
  return {
    nodeId,
    dataCenter,
    sip: o.sip ?? { host: '127.0.0.1', port: 5000 + nodeId.length },
    state: o.state ?? 'in-service',
    drained: o.drained ?? false,
    ports: { capacity, available, busy, suspendBelow: o.suspendBelow ?? 2, resumeAt: 4 },
    channels: { inService: capacity, busy, maintenance: 0, outOfService: 0 },
    seq: o.seq ?? 1,
    updatedAt: o.updatedAt ?? '2026-11-25T10:00:00.000Z',
  };
}

function cand(s: VoiceStatus, o: Partial<Omit<RouteCandidate, 'status'>> = {}): RouteCandidate {
  return { status: s, heardAt: NOW, pending: 0, healthy: true, refused: false, ...o };
}

const opts = { dataCenter: 'dc1', now: NOW, timeoutMs: TIMEOUT };

describe('chooseVoiceServer()', () => {
  test('prefers a server in the caller\'s data center even when another data center has more free ports', () => {
    const c = chooseVoiceServer([cand(status('b', 'dc2', { available: 25 })), cand(status('a', 'dc1', { available: 5 }))], opts);
    assert.equal(c?.nodeId, 'a');
    assert.equal(c?.crossDataCenter, false);
  });

  test('falls over to another data center when the caller\'s has no candidate', () => {
    const c = chooseVoiceServer([cand(status('a', 'dc1', { state: 'maintenance' })), cand(status('b', 'dc2'))], opts);
    assert.equal(c?.nodeId, 'b');
    assert.equal(c?.crossDataCenter, true);
    assert.equal(c?.dataCenter, 'dc2');
  });

  test('balances by free ports within a data center', () => {
    const c = chooseVoiceServer([cand(status('a', 'dc1', { available: 10 })), cand(status('b', 'dc1', { available: 20 })), cand(status('c', 'dc1', { available: 15 }))], opts);
    assert.equal(c?.nodeId, 'b');
  });

  test('counts calls routed since the status: free ports are net of pending calls', () => {
    const c = chooseVoiceServer([cand(status('a', 'dc1', { available: 20 }), { pending: 11 }), cand(status('b', 'dc1', { available: 10 }))], opts);
    assert.equal(c?.nodeId, 'b');
    assert.equal(c?.freePorts, 10);
  });

  test('ties go to fewer busy channels, then to the node ID', () => {
    assert.equal(chooseVoiceServer([cand(status('a', 'dc1', { available: 5, busy: 9 })), cand(status('b', 'dc1', { available: 5, busy: 1 }))], opts)?.nodeId, 'b');
    assert.equal(chooseVoiceServer([cand(status('b', 'dc1')), cand(status('a', 'dc1'))], opts)?.nodeId, 'a');
  });

  test('skips suspended, maintenance, out-of-service, unhealthy, refused, silent, full and excluded servers', () => {
    const skipped: Array<[RouteCandidate, string]> = [
      [cand(status('s', 'dc1', { state: 'suspended' })), 'suspended'],
      [cand(status('m', 'dc1', { state: 'maintenance' })), 'maintenance'],
      [cand(status('o', 'dc1', { state: 'out-of-service' })), 'out-of-service'],
      [cand(status('u', 'dc1'), { healthy: false }), 'failed its health test'],
      [cand(status('r', 'dc1'), { refused: true }), 'refused a call'],
      [cand(status('q', 'dc1'), { heardAt: NOW - TIMEOUT - 1 }), 'not heard within the heartbeat timeout'],
      [cand(status('f', 'dc1', { available: 0, busy: 25, suspendBelow: 0 })), 'no free port'],
      [cand(status('x', 'dc1')), 'already tried'],
    ];
    for (const [c, why] of skipped) assert.equal(unavailableBecause(c, { ...opts, exclude: new Set(['x']) }), why, c.status.nodeId);
    assert.equal(chooseVoiceServer(skipped.map(([c]) => c), { ...opts, exclude: new Set(['x']) }), undefined);
  });

  test('skips a server that the calls already sent would push below its suspend threshold', () => {
    // Status: 2 free of 4 (not suspended); one call routed since → the server will hold 1 < 2 and suspend.
    const c = cand(status('a', 'dc1', { capacity: 4, available: 2, busy: 2 }), { pending: 1 });
    assert.equal(unavailableBecause(c, opts), 'about to suspend');
    // Without the pending call it still takes the call that suspends it.
    assert.equal(unavailableBecause({ ...c, pending: 0 }, opts), undefined);
  });

  test('a status heard exactly at the timeout still counts; one past it does not', () => {
    assert.equal(chooseVoiceServer([cand(status('a', 'dc1'), { heardAt: NOW - TIMEOUT })], opts)?.nodeId, 'a');
    assert.equal(chooseVoiceServer([cand(status('a', 'dc1'), { heardAt: NOW - TIMEOUT - 1 })], opts), undefined);
  });

  test('returns undefined for an empty table', () => {
    assert.equal(chooseVoiceServer([], opts), undefined);
  });
});

describe('RoutingTable', () => {
  test('pick() counts the call against the server, so a burst alternates between equal servers', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    t.update(status('a', 'dc1', { available: 10 }), NOW);
    t.update(status('b', 'dc1', { available: 10 }), NOW);
    const picks = [1, 2, 3, 4].map(() => t.pick({ dataCenter: 'dc1', now: NOW })?.nodeId);
    assert.deepEqual(picks, ['a', 'b', 'a', 'b']);
  });

  test('a 4-port server with portSuspendBelow 2 takes three calls of a burst, the fourth falls over', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    t.update(status('small', 'dc1', { capacity: 4, available: 4 }), NOW);
    t.update(status('other', 'dc2', { capacity: 50, available: 50 }), NOW);
    const picks = [1, 2, 3, 4].map(() => t.pick({ dataCenter: 'dc1', now: NOW })?.nodeId);
    assert.deepEqual(picks, ['small', 'small', 'small', 'other']);
  });

  test('a new status replaces the pending count, except for calls routed within the grace period', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT, pendingGraceMs: 100 });
    t.update(status('a', 'dc1', { available: 10, seq: 1 }), NOW);
    t.routed('a', NOW);
    t.routed('a', NOW + 450);
    t.update(status('a', 'dc1', { available: 9, seq: 2 }), NOW + 500);
    assert.equal(t.candidates()[0]?.pending, 1);
  });

  test('update() drops a status older than the one held, and takes a restarted server\'s lower seq', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    assert.equal(t.update(status('a', 'dc1', { seq: 5, updatedAt: '2026-11-25T10:00:05.000Z' }), NOW), true);
    assert.equal(t.update(status('a', 'dc1', { seq: 4, updatedAt: '2026-11-25T10:00:04.000Z' }), NOW), false);
    assert.equal(t.update(status('a', 'dc1', { seq: 1, updatedAt: '2026-11-25T10:01:00.000Z' }), NOW), true);
  });

  test('expire() drops servers not heard within the timeout; remove() drops one at once', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    t.update(status('a', 'dc1'), NOW);
    t.update(status('b', 'dc1'), NOW + 2000);
    assert.deepEqual(t.expire(NOW + TIMEOUT + 1), ['a']);
    assert.equal(t.size, 1);
    assert.equal(t.remove('b'), true);
    assert.equal(t.pick({ dataCenter: 'dc1', now: NOW + 3000 }), undefined);
  });

  test('refuse() keeps calls away until the server\'s next status', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    t.update(status('a', 'dc1', { seq: 1 }), NOW);
    t.refuse('a');
    assert.equal(t.pick({ dataCenter: 'dc1', now: NOW }), undefined);
    t.update(status('a', 'dc1', { seq: 2 }), NOW + 1000);
    assert.equal(t.pick({ dataCenter: 'dc1', now: NOW + 1000 })?.nodeId, 'a');
  });

  test('setHealth(false) evicts a server until setHealth(true), also when the verdict came before its status', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    t.setHealth('a', false);
    t.update(status('a', 'dc1'), NOW);
    assert.equal(t.pick({ dataCenter: 'dc1', now: NOW }), undefined);
    t.setHealth('a', true);
    assert.equal(t.pick({ dataCenter: 'dc1', now: NOW })?.nodeId, 'a');
  });

  test('nodeAt() knows a voice server\'s SIP address even while it drains or after it went quiet', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    t.update(status('a', 'dc1', { sip: { host: '127.0.0.1', port: 41061 }, state: 'maintenance' }), NOW);
    assert.equal(t.nodeAt('127.0.0.1', 41061), 'a');
    t.expire(NOW + TIMEOUT + 1);
    assert.equal(t.nodeAt('127.0.0.1', 41061), 'a');
    assert.equal(t.nodeAt('127.0.0.1', 41062), undefined);
  });

  test('view() says why each server would or would not take a call', () => {
    const t = new RoutingTable({ timeoutMs: TIMEOUT });
    t.update(status('a', 'dc1'), NOW);
    t.update(status('b', 'dc2', { state: 'suspended' }), NOW);
    const v = t.view(NOW, 'dc1');
    assert.deepEqual(v.map((x) => [x.nodeId, x.routable, x.because, x.home]), [
      ['a', true, undefined, true],
      ['b', false, 'suspended', false],
    ]);
  });
});
