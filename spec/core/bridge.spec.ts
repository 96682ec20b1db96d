import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BRIDGE_SILENCE_MS, BridgeTable, bridgeMemberId, shouldAnswer, type BridgeAnnounce } from '../../core/bridge.ts';
import { ConferenceMixer, FRAME_SAMPLES } from '../../core/conference.ts';

const ann = (nodeId: string, port: number, conferences: Array<[string, number]>): BridgeAnnounce => ({
  nodeId,
  host: '127.0.0.1',
  port,
  conferences: conferences.map(([eventId, ssrc]) => ({ eventId, ssrc })),
});

describe('BridgeTable', () => {
  test('announce() adds a peer to each hosted event it lists, and only those', () => {
    const t = new BridgeTable('v1');
    t.host('E1');
    const ch = t.announce(ann('v2', 5000, [['E1', 11], ['E2', 22]]), 0);
    assert.deepEqual(ch.map((c) => [c.type, c.eventId, c.memberId]), [['added', 'E1', 'bridge:v2']]);
    assert.deepEqual(t.targets('E1'), [{ nodeId: 'v2', host: '127.0.0.1', port: 5000 }]);
    assert.deepEqual(t.targets('E2'), [], 'no local conference of E2: nothing sent');
    assert.ok(shouldAnswer(ch));
  });

  test('announce() of its own node is ignored (a server never bridges with itself)', () => {
    const t = new BridgeTable('v1');
    t.host('E1');
    assert.deepEqual(t.announce(ann('v1', 5000, [['E1', 11]]), 0), []);
    assert.deepEqual(t.targets('E1'), []);
  });

  test('announce() again unchanged changes nothing and needs no answer', () => {
    const t = new BridgeTable('v1');
    t.host('E1');
    t.announce(ann('v2', 5000, [['E1', 11]]), 0);
    const ch = t.announce(ann('v2', 5000, [['E1', 11]]), 500);
    assert.deepEqual(ch, []);
    assert.equal(shouldAnswer(ch), false);
  });

  test('announce() without the event withdraws the peer; with a new address or SSRC replaces it', () => {
    const t = new BridgeTable('v1');
    t.host('E1');
    t.announce(ann('v2', 5000, [['E1', 11]]), 0);
    const moved = t.announce(ann('v2', 5002, [['E1', 12]]), 10);
    assert.deepEqual(moved.map((c) => (c.type === 'removed' ? `removed:${c.reason}` : 'added')), ['removed:replaced', 'added']);
    assert.equal(t.rtp('127.0.0.1', 5000, 11, 20), undefined, 'the old source no longer feeds the mixer');
    assert.deepEqual(t.rtp('127.0.0.1', 5002, 12, 20), { eventId: 'E1', memberId: 'bridge:v2' });
    const gone = t.announce(ann('v2', 5002, []), 30);
    assert.deepEqual(gone.map((c) => c.type === 'removed' && c.reason), ['withdrawn']);
    assert.deepEqual(t.targets('E1'), []);
  });

  test('rtp() maps a packet by source address and SSRC; strangers are ignored', () => {
    const t = new BridgeTable('v1');
    t.host('E1');
    t.host('E2');
    t.announce(ann('v2', 5000, [['E1', 11], ['E2', 22]]), 0);
    assert.deepEqual(t.rtp('127.0.0.1', 5000, 22, 1), { eventId: 'E2', memberId: 'bridge:v2' });
    assert.equal(t.rtp('127.0.0.1', 5000, 99, 1), undefined, 'unknown SSRC');
    assert.equal(t.rtp('127.0.0.9', 5000, 11, 1), undefined, 'right SSRC from another address');
  });

  test('expire() drops a peer after silenceMs without RTP, counted from its addition until the first packet', () => {
    const t = new BridgeTable('v1');
    t.host('E1');
    t.announce(ann('v2', 5000, [['E1', 11]]), 0);
    assert.deepEqual(t.expire(BRIDGE_SILENCE_MS), []);
    t.rtp('127.0.0.1', 5000, 11, 1500);
    assert.deepEqual(t.expire(1500 + BRIDGE_SILENCE_MS), [], 'a packet restarts the count');
    const ch = t.expire(1501 + BRIDGE_SILENCE_MS);
    assert.deepEqual(ch.map((c) => c.type === 'removed' && c.reason), ['silent']);
    assert.deepEqual(t.targets('E1'), []);
    // A later announcement (the peer is alive after all) adds it back.
    assert.ok(shouldAnswer(t.announce(ann('v2', 5000, [['E1', 11]]), 9000)));
  });

  test('nodeGone() drops the node from every event; unhost() forgets the event and all its peers', () => {
    const t = new BridgeTable('v1');
    t.host('E1');
    t.host('E2');
    t.announce(ann('v2', 5000, [['E1', 11], ['E2', 22]]), 0);
    t.announce(ann('v3', 6000, [['E1', 33]]), 0);
    assert.deepEqual(t.nodeGone('v2').map((c) => `${c.eventId}:${c.type === 'removed' && c.reason}`), ['E1:node-gone', 'E2:node-gone']);
    assert.deepEqual(t.unhost('E1').map((c) => `${c.nodeId}:${c.type === 'removed' && c.reason}`), ['v3:local-ended']);
    assert.equal(t.hosts('E1'), false);
    assert.equal(t.rtp('127.0.0.1', 6000, 33, 1), undefined);
    assert.deepEqual(t.unhost('E1'), [], 'idempotent');
  });

  test('bridgeMemberId() names the mixer member of a peer', () => {
    assert.equal(bridgeMemberId('v2'), 'bridge:v2');
  });
});

/**
 * Three voice servers, each with one caller of event E: every server's table and mixer wired as
 * the actor wires them, with bridge packets delivered at once. Each caller speaks a constant value
 * (1, 10, 100) so the sums show who is in a mix and how many times.
 */
describe('a bridged conference of three servers (simulation)', () => {
  function mesh() {
    const servers = ['v1', 'v2', 'v3'].map((id, i) => ({
      id,
      port: 5000 + i,
      ssrc: 100 + i,
      table: new BridgeTable(id),
      mixer: new ConferenceMixer(),
      caller: `${id}:caller`,
      voice: [1, 10, 100][i]!,
    }));
    for (const s of servers) {
      s.table.host('E');
      s.mixer.add(s.caller);
    }
    // Every server announces; answers go out at once when someone new was learnt.
    const queue = servers.map((s) => s.id);
    let rounds = 0;
    while (queue.length > 0) {
      assert.ok(++rounds < 20, 'announcements must settle');
      const next = queue.shift();
      const from = servers.find((s) => s.id === next)!;
      for (const to of servers) {
        if (to === from) continue;
        const ch = to.table.announce({ nodeId: from.id, host: '127.0.0.1', port: from.port, conferences: [{ eventId: 'E', ssrc: from.ssrc }] }, 0);
        for (const c of ch) if (c.type === 'added') to.mixer.add(c.memberId, { remote: true });
        if (shouldAnswer(ch)) queue.push(to.id);
      }
    }
    return servers;
  }

  function frameOf(servers: ReturnType<typeof mesh>) {
    for (const s of servers) s.mixer.push(s.caller, new Int16Array(FRAME_SAMPLES).fill(s.voice));
    const out = new Map<string, ReturnType<ConferenceMixer['tick']>>();
    for (const s of servers) out.set(s.id, s.mixer.tick());
    // Each server sends its local mix to each target; the receiver maps it to the sender's member.
    for (const s of servers) {
      for (const t of s.table.targets('E')) {
        const to = servers.find((x) => x.port === t.port)!;
        const src = to.table.rtp('127.0.0.1', s.port, s.ssrc, 0);
        assert.ok(src, `${to.id} knows ${s.id}'s bridge audio`);
        to.mixer.push(src.memberId, out.get(s.id)!.local);
      }
    }
    return out;
  }

  test('announcements converge to a full mesh and stop (no announce storm)', () => {
    const servers = mesh();
    for (const s of servers) assert.deepEqual(s.table.targets('E').map((t) => t.nodeId).sort(), servers.filter((x) => x !== s).map((x) => x.id));
  });

  test('every stream carries every speaker exactly once and every caller hears the others, frame after frame', () => {
    const servers = mesh();
    frameOf(servers); // bridge audio arrives one frame late
    for (let i = 0; i < 50; i++) {
      const out = frameOf(servers);
      for (const s of servers) {
        const r = out.get(s.id)!;
        assert.equal(r.cast[0], 111, `${s.id}'s cast is everyone once (no echo, no loop)`);
        assert.equal(r.minus.get(s.caller)![0], 111 - s.voice, `${s.id}'s caller hears everyone but itself`);
        assert.equal(r.local[0], s.voice, `${s.id} forwards only its own caller`);
      }
    }
  });

  test('a server that dies leaves the others bridged with each other', () => {
    const servers = mesh();
    const rest = servers.filter((s) => s.id !== 'v1');
    for (const s of rest) for (const c of s.table.nodeGone('v1')) s.mixer.remove(c.memberId);
    frameOf(rest);
    const out = frameOf(rest);
    assert.equal(out.get('v2')!.cast[0], 110);
    assert.equal(out.get('v3')!.cast[0], 110);
  });
});
