import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addressBytes, compareAddresses, ranked, startElection, stepElection, type ElectionInput, type ElectionState } from '../../core/election.ts';

const LIMIT = 3000;

/** Applies inputs in order; returns the final state and every leader change. */
function run(state: ElectionState, inputs: ElectionInput[]): { state: ElectionState; changes: Array<{ from: string; to: string }>; dropped: string[] } {
  const changes: Array<{ from: string; to: string }> = [];
  const dropped: string[] = [];
  for (const input of inputs) {
    const s = stepElection(state, input);
    state = s.state;
    if (s.changed) changes.push(s.changed);
    dropped.push(...s.dropped);
  }
  return { state, changes, dropped };
}

const heard = (nodeId: string, address: string, at: number): ElectionInput => ({ type: 'heard', nodeId, address, at });

describe('compareAddresses', () => {
  test('orders IPv4 numerically: 10.0.0.9 before 10.0.0.10 (a string sort would not)', () => {
    assert.ok(compareAddresses('10.0.0.9', '10.0.0.10') < 0);
    assert.ok('10.0.0.9' > '10.0.0.10', 'the string order is the opposite');
    assert.ok(compareAddresses('9.255.255.255', '10.0.0.0') < 0);
    assert.ok(compareAddresses('192.168.1.2', '192.168.1.2') === 0);
  });

  test('orders IPv6 numerically, compressed or not, and IPv4 as ::ffff:a.b.c.d among them', () => {
    assert.equal(compareAddresses('fe80::1', 'fe80:0:0:0:0:0:0:1'), 0);
    assert.ok(compareAddresses('2001:db8::9', '2001:db8::10') < 0);
    assert.ok(compareAddresses('2001:db8::ffff', '2001:db8::1:0') < 0);
    assert.ok(compareAddresses('::1', '10.0.0.1') < 0, '::1 is below ::ffff:10.0.0.1');
    assert.equal(compareAddresses('::ffff:10.0.0.1', '10.0.0.1'), 0);
    assert.ok(compareAddresses('10.0.0.1', '2001:db8::1') < 0);
    assert.equal(compareAddresses('fe80::1%eth0', '[fe80::1]'), 0, 'zone and brackets are not part of the address');
  });

  test('puts anything that is not an address after every address', () => {
    assert.ok(compareAddresses('255.255.255.255', 'localhost') < 0);
    assert.ok(compareAddresses('ffff::', 'not-an-ip') < 0);
    for (const bad of ['10.0.0', '10.0.0.256', '1::2::3', '1:2:3:4:5:6:7:8:9', 'g::1', '']) assert.equal(addressBytes(bad), undefined, bad);
  });
});

describe('election', () => {
  test('the leader is the first by IP address (numeric), not by node ID or arrival', () => {
    let s = startElection({ nodeId: 'a', address: '10.0.0.10' }, LIMIT, 0);
    assert.equal(s.leader, 'a', 'alone, a node leads');
    const r = run(s, [heard('z', '10.0.0.9', 10), heard('b', '10.0.0.11', 20)]);
    s = r.state;
    assert.equal(s.leader, 'z');
    assert.deepEqual(r.changes, [{ from: 'a', to: 'z' }]);
    assert.deepEqual(ranked(s).map((p) => p.nodeId), ['z', 'a', 'b']);
  });

  test('ties on one IP address (nodes on one machine) go to the lower node ID', () => {
    const s = run(startElection({ nodeId: 'node-b', address: '127.0.0.1' }, LIMIT, 0), [heard('node-c', '127.0.0.1', 1), heard('node-a', '127.0.0.1', 2), heard('node-10', '127.0.0.2', 3)]).state;
    assert.equal(s.leader, 'node-a');
    assert.deepEqual(ranked(s).map((p) => p.nodeId), ['node-a', 'node-b', 'node-c', 'node-10']);
  });

  test('a peer silent for longer than the limit is dropped, and not before', () => {
    let s = startElection({ nodeId: 'b', address: '10.0.0.2' }, LIMIT, 0);
    s = stepElection(s, heard('a', '10.0.0.1', 1000)).state;
    assert.equal(s.leader, 'a');
    let step = stepElection(s, { type: 'tick', at: 1000 + LIMIT });
    assert.equal(step.state.leader, 'a', 'exactly at the limit the peer stays');
    assert.deepEqual(step.dropped, []);
    step = stepElection(step.state, { type: 'tick', at: 1000 + LIMIT + 1 });
    assert.equal(step.state.leader, 'b');
    assert.deepEqual(step.dropped, ['a']);
    assert.deepEqual(step.changed, { from: 'a', to: 'b' });
  });

  test('each announce heard refreshes the peer: a peer heard every heartbeat is never dropped', () => {
    let s = startElection({ nodeId: 'b', address: '10.0.0.2' }, LIMIT, 0);
    for (let t = 0; t <= 60_000; t += 1000) {
      s = stepElection(s, heard('a', '10.0.0.1', t)).state;
      s = stepElection(s, { type: 'announce', at: t }).state;
      const step = stepElection(s, { type: 'tick', at: t + 500 });
      assert.deepEqual(step.dropped, []);
      s = step.state;
    }
    assert.equal(s.leader, 'a');
  });

  test('self is never dropped, however long it has not announced', () => {
    const s = startElection({ nodeId: 'me', address: '10.0.0.5' }, LIMIT, 0);
    const step = stepElection(s, { type: 'tick', at: 10 * LIMIT });
    assert.equal(step.state.leader, 'me');
    assert.ok(step.state.peers.has('me'));
    assert.deepEqual(step.dropped, []);
    assert.equal(stepElection(s, { type: 'gone', nodeId: 'me' }).state.peers.has('me'), true, 'a goodbye with our own ID does not remove us');
  });

  test('an announce with our own node ID (our broadcast coming back, or a misconfigured twin) changes nothing', () => {
    const s = startElection({ nodeId: 'me', address: '10.0.0.5' }, LIMIT, 0);
    const step = stepElection(s, heard('me', '10.0.0.1', 5));
    assert.equal(step.state, s);
    assert.equal(step.changed, undefined);
  });

  test('a peer that comes back after being dropped leads again at once', () => {
    let s = startElection({ nodeId: 'b', address: '10.0.0.2' }, LIMIT, 0);
    const r = run(s, [heard('a', '10.0.0.1', 0), { type: 'tick', at: LIMIT + 1 }, { type: 'tick', at: 5000 }]);
    s = r.state;
    assert.equal(s.leader, 'b');
    const back = stepElection(s, heard('a', '10.0.0.1', 6000));
    assert.equal(back.joined, 'a');
    assert.deepEqual(back.changed, { from: 'b', to: 'a' });
    assert.deepEqual(r.changes, [{ from: 'b', to: 'a' }, { from: 'a', to: 'b' }]);
  });

  test("a clean goodbye ('gone') drops the peer at once; hearing it again brings it back", () => {
    let s = run(startElection({ nodeId: 'b', address: '10.0.0.2' }, LIMIT, 0), [heard('a', '10.0.0.1', 0)]).state;
    const gone = stepElection(s, { type: 'gone', nodeId: 'a' });
    assert.deepEqual(gone.changed, { from: 'a', to: 'b' });
    assert.deepEqual(gone.dropped, ['a']);
    assert.equal(stepElection(gone.state, { type: 'gone', nodeId: 'a' }).dropped.length, 0, 'a second goodbye changes nothing');
    s = stepElection(gone.state, heard('a', '10.0.0.1', 100)).state;
    assert.equal(s.leader, 'a');
  });

  test('a peer that changes its address is re-ranked', () => {
    let s = run(startElection({ nodeId: 'b', address: '10.0.0.5' }, LIMIT, 0), [heard('a', '10.0.0.1', 0)]).state;
    assert.equal(s.leader, 'a');
    s = stepElection(s, heard('a', '10.0.0.9', 100)).state;
    assert.equal(s.leader, 'b');
    s = stepElection(s, { type: 'announce', at: 200, address: '10.0.0.10' }).state;
    assert.equal(s.leader, 'a', 'our own new address counts too');
  });

  test('split views (a partition) converge on one leader once announcements flow again', () => {
    const nodes = [
      { nodeId: 'n3', address: '10.0.0.3' },
      { nodeId: 'n1', address: '10.0.0.1' },
      { nodeId: 'n2', address: '10.0.0.2' },
      { nodeId: 'n4', address: '10.0.0.1' },
    ];
    const states = new Map(nodes.map((n) => [n.nodeId, startElection(n, LIMIT, 0)]));
    /** One heartbeat at `t`: every node announces, and those that can hear each other do. */
    const heartbeat = (t: number, canHear: (from: string, to: string) => boolean) => {
      for (const n of nodes) states.set(n.nodeId, stepElection(states.get(n.nodeId)!, { type: 'announce', at: t }).state);
      for (const from of nodes) {
        for (const to of nodes) {
          if (from === to || !canHear(from.nodeId, to.nodeId)) continue;
          states.set(to.nodeId, stepElection(states.get(to.nodeId)!, heard(from.nodeId, from.address, t)).state);
        }
      }
      for (const n of nodes) states.set(n.nodeId, stepElection(states.get(n.nodeId)!, { type: 'tick', at: t + 500 }).state);
    };
    const leaders = () => nodes.map((n) => states.get(n.nodeId)!.leader);

    for (let t = 0; t < 3000; t += 1000) heartbeat(t, () => true);
    assert.deepEqual(leaders(), ['n1', 'n1', 'n1', 'n1'], 'one view: n1 (10.0.0.1, and n1 < n4)');

    // Partition: {n1, n2} | {n3, n4}. After the silence limit each side elects its own leader.
    const side = (id: string) => (id === 'n1' || id === 'n2' ? 0 : 1);
    for (let t = 3000; t < 8000; t += 1000) heartbeat(t, (a, b) => side(a) === side(b));
    assert.deepEqual(leaders(), ['n4', 'n1', 'n1', 'n4'], 'two views, two leaders: the moment archive idempotency covers');

    // Healed: one heartbeat of announcements is enough for every view to agree again.
    heartbeat(8000, () => true);
    assert.deepEqual(leaders(), ['n1', 'n1', 'n1', 'n1']);
    for (const n of nodes) assert.deepEqual([...states.get(n.nodeId)!.peers.keys()].sort(), ['n1', 'n2', 'n3', 'n4']);
  });

  test('startElection() refuses a silence limit that is not positive', () => {
    assert.throws(() => startElection({ nodeId: 'a', address: '10.0.0.1' }, 0, 0), RangeError);
  });
});
