import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  JOIN_REFUSED,
  callerCount,
  initialState,
  recover,
  step,
  type LifecycleInput,
  type LifecycleState,
} from '../../core/event-lifecycle.ts';
import type { EventStatus } from '../../runtime/contracts.ts';
import { STREAM_ID, sampleInfo } from '../support/event-plane.ts';

const T0 = '2026-11-25T10:00:00.000Z';
const T1 = '2026-11-25T11:00:00.000Z';
const T2 = '2026-11-25T12:00:00.000Z';

function inStatus(status: EventStatus, extra: Partial<LifecycleState> = {}): LifecycleState {
  return { ...initialState(sampleInfo({ status })), ...extra };
}

const join = (channelId: string, at = T1): LifecycleInput => ({ type: 'join', at, channelId, nodeId: 'spec-node', port: 10002 });
const leave = (channelId: string, at = T1): LifecycleInput => ({ type: 'leave', at, channelId });
const types = (effects: { type: string }[]) => effects.map((e) => e.type);

const ALL: EventStatus[] = ['reserved', 'live', 'ended', 'archiving', 'archived', 'archive-error', 'cancelled'];

describe('event lifecycle', () => {
  describe('join', () => {
    it('step(reserved, join) goes live with liveAt, the caller counted, persist and a live broadcast', () => {
      const r = step(inStatus('reserved'), join('ch-1'));
      assert.equal(r.refusal, undefined);
      assert.equal(r.state.info.status, 'live');
      assert.equal(r.state.info.liveAt, T1);
      assert.equal(r.state.info.updatedAt, T1);
      assert.deepEqual(r.state.callers, { 'ch-1': { nodeId: 'spec-node', port: 10002 } });
      assert.deepEqual(r.effects, [{ type: 'persist' }, { type: 'broadcast-status', status: 'live' }]);
    });

    it('step(live, join) of a second caller adds it without persisting', () => {
      const live = step(inStatus('reserved'), join('ch-1')).state;
      const r = step(live, join('ch-2'));
      assert.equal(callerCount(r.state), 2);
      assert.deepEqual(r.effects, []);
    });

    it('step(live, join) while the idle timer runs cancels it', () => {
      const r = step(inStatus('live', { idleTimer: true }), join('ch-1'));
      assert.equal(r.state.idleTimer, false);
      assert.deepEqual(types(r.effects), ['cancel-idle-timer']);
    });

    it('step(live, join) keeps the first liveAt', () => {
      const again = step(step(inStatus('reserved'), join('a', T1)).state, join('b', T2));
      assert.equal(again.state.info.liveAt, T1);
    });

    for (const status of ['cancelled', 'ended', 'archiving', 'archived', 'archive-error'] as const) {
      it(`step(${status}, join) is refused and names the state`, () => {
        const s = inStatus(status);
        const r = step(s, join('ch-1'));
        assert.equal(r.refusal?.status, status);
        assert.match(r.refusal!.message, new RegExp(`status:${status}`));
        assert.equal(r.state, s);
        assert.deepEqual(r.effects, []);
        assert.ok(JOIN_REFUSED.has(status));
      });
    }
  });

  describe('leave', () => {
    it('step(live, leave) of the last caller starts the idle timer', () => {
      const live = step(inStatus('reserved'), join('ch-1')).state;
      const r = step(live, leave('ch-1'));
      assert.equal(callerCount(r.state), 0);
      assert.equal(r.state.idleTimer, true);
      assert.deepEqual(r.effects, [{ type: 'start-idle-timer' }]);
      assert.equal(r.state.info.status, 'live');
    });

    it('step(live, leave) with callers left starts no timer', () => {
      const two = step(step(inStatus('reserved'), join('a')).state, join('b')).state;
      const r = step(two, leave('a'));
      assert.equal(callerCount(r.state), 1);
      assert.deepEqual(r.effects, []);
      assert.equal(r.state.idleTimer, false);
    });

    it('step(live, leave) of an unknown channel changes nothing', () => {
      const live = step(inStatus('reserved'), join('ch-1')).state;
      const r = step(live, leave('other'));
      assert.equal(r.state, live);
      assert.deepEqual(r.effects, []);
      assert.equal(r.refusal, undefined);
    });

    it('leave, join, leave: the timer is started, cancelled, started again', () => {
      let s = step(inStatus('reserved'), join('a')).state;
      const seen: string[] = [];
      for (const input of [leave('a'), join('b'), leave('b')]) {
        const r = step(s, input);
        seen.push(...types(r.effects));
        s = r.state;
      }
      assert.deepEqual(seen, ['start-idle-timer', 'cancel-idle-timer', 'start-idle-timer']);
    });
  });

  describe('end and idle-timeout', () => {
    it('step(live, end api) ends: endedAt, callers dropped, persist, eventEnded, status, await streams', () => {
      const live = step(inStatus('reserved'), join('ch-1')).state;
      const r = step(live, { type: 'end', at: T2, reason: 'api' });
      assert.equal(r.state.info.status, 'ended');
      assert.equal(r.state.info.endedAt, T2);
      assert.equal(callerCount(r.state), 0);
      assert.deepEqual(r.effects, [
        { type: 'persist' },
        { type: 'broadcast-ended', reason: 'api' },
        { type: 'broadcast-status', status: 'ended' },
        { type: 'await-streams' },
      ]);
    });

    it('step(live with idle timer, end end-code) cancels the timer first', () => {
      const r = step(inStatus('live', { idleTimer: true }), { type: 'end', at: T2, reason: 'end-code' });
      assert.equal(r.effects[0]?.type, 'cancel-idle-timer');
      assert.equal(r.state.idleTimer, false);
    });

    for (const status of ALL.filter((s) => s !== 'live')) {
      it(`step(${status}, end) is refused naming ${status}`, () => {
        const r = step(inStatus(status), { type: 'end', at: T2, reason: 'api' });
        assert.equal(r.refusal?.status, status);
        assert.equal(r.refusal?.input, 'end');
        assert.match(r.refusal!.message, new RegExp(status));
      });
    }

    it('step(live, no callers, idle-timeout) ends with reason timeout', () => {
      const r = step(inStatus('live', { idleTimer: true }), { type: 'idle-timeout', at: T2 });
      assert.equal(r.state.info.status, 'ended');
      assert.deepEqual(r.effects.find((e) => e.type === 'broadcast-ended'), { type: 'broadcast-ended', reason: 'timeout' });
      assert.ok(!types(r.effects).includes('cancel-idle-timer'));
    });

    it('step(live with a caller, idle-timeout) is stale and changes nothing', () => {
      const live = step(inStatus('reserved'), join('ch-1')).state;
      const r = step(live, { type: 'idle-timeout', at: T2 });
      assert.equal(r.state, live);
      assert.deepEqual(r.effects, []);
      assert.equal(r.refusal, undefined);
    });

    it('step(ended, idle-timeout) is stale and changes nothing', () => {
      const s = inStatus('ended');
      const r = step(s, { type: 'idle-timeout', at: T2 });
      assert.equal(r.state, s);
      assert.deepEqual(r.effects, []);
    });
  });

  describe('cancel', () => {
    it('step(reserved, cancel) cancels with persist and a status broadcast', () => {
      const r = step(inStatus('reserved'), { type: 'cancel', at: T1 });
      assert.equal(r.state.info.status, 'cancelled');
      assert.deepEqual(r.effects, [{ type: 'persist' }, { type: 'broadcast-status', status: 'cancelled' }]);
    });

    for (const status of ALL.filter((s) => s !== 'reserved')) {
      it(`step(${status}, cancel) is refused`, () => {
        assert.equal(step(inStatus(status), { type: 'cancel', at: T1 }).refusal?.status, status);
      });
    }
  });

  describe('archive', () => {
    const archive = [{ streamId: STREAM_ID, start: 0, end: 12.5 }];

    it('step(ended, streams-settled) goes archiving and requests the archive', () => {
      const r = step(inStatus('ended'), { type: 'streams-settled', at: T2 });
      assert.equal(r.state.info.status, 'archiving');
      assert.deepEqual(r.effects, [{ type: 'persist' }, { type: 'broadcast-status', status: 'archiving' }, { type: 'request-archive' }]);
    });

    it('step(live, streams-settled) is refused', () => {
      assert.equal(step(inStatus('live'), { type: 'streams-settled', at: T2 }).refusal?.status, 'live');
    });

    it('step(archiving, archive-built) is archived with the fragments', () => {
      const r = step(inStatus('archiving'), { type: 'archive-built', at: T2, archive });
      assert.equal(r.state.info.status, 'archived');
      assert.deepEqual(r.state.info.archive, archive);
      assert.deepEqual(r.effects, [{ type: 'persist' }, { type: 'broadcast-status', status: 'archived' }]);
    });

    it('step(archive-error, archive-built) is archived and the error is cleared', () => {
      const s = { ...inStatus('archive-error'), info: { ...sampleInfo({ status: 'archive-error' }), archiveError: 'no recorded stream' } };
      const r = step(s, { type: 'archive-built', at: T2, archive });
      assert.equal(r.state.info.status, 'archived');
      assert.equal('archiveError' in r.state.info, false);
    });

    it('step(archived, archive-built) keeps the first archive and does nothing', () => {
      const done = step(inStatus('archiving'), { type: 'archive-built', at: T1, archive }).state;
      const r = step(done, { type: 'archive-built', at: T2, archive: [{ streamId: STREAM_ID, start: 0, end: 1 }] });
      assert.equal(r.state, done);
      assert.deepEqual(r.effects, []);
      assert.equal(r.refusal, undefined);
    });

    for (const status of ['reserved', 'live', 'ended', 'cancelled'] as const) {
      it(`step(${status}, archive-built) is refused`, () => {
        assert.equal(step(inStatus(status), { type: 'archive-built', at: T2, archive }).refusal?.status, status);
      });
    }

    it('step(archiving, archive-failed) is archive-error with the reason', () => {
      const r = step(inStatus('archiving'), { type: 'archive-failed', at: T2, error: 'no recorded stream' });
      assert.equal(r.state.info.status, 'archive-error');
      assert.equal(r.state.info.archiveError, 'no recorded stream');
      assert.deepEqual(r.effects, [{ type: 'persist' }, { type: 'broadcast-status', status: 'archive-error' }]);
    });

    it('step(archived, archive-failed) is refused', () => {
      assert.equal(step(inStatus('archived'), { type: 'archive-failed', at: T2, error: 'x' }).refusal?.status, 'archived');
    });

    it('step(archive-error, retry-archive) goes archiving and requests the archive again', () => {
      const r = step(inStatus('archive-error'), { type: 'retry-archive', at: T2 });
      assert.equal(r.state.info.status, 'archiving');
      assert.deepEqual(types(r.effects), ['persist', 'broadcast-status', 'request-archive']);
    });

    it('step(archived, retention-ended) drops the archive, stays archived, persists; again: nothing to do', () => {
      const archived = step(inStatus('archiving'), { type: 'archive-built', at: T2, archive: [{ streamId: 's', start: 0, end: 4 }] }).state;
      const r = step(archived, { type: 'retention-ended', at: T2 });
      assert.equal(r.state.info.status, 'archived');
      assert.equal(r.state.info.archive, undefined);
      assert.deepEqual(types(r.effects), ['persist']);
      assert.deepEqual(step(r.state, { type: 'retention-ended', at: T2 }).effects, []);
    });

    for (const status of ALL.filter((s) => s !== 'archived')) {
      it(`step(${status}, retention-ended) is refused`, () => {
        assert.equal(step(inStatus(status), { type: 'retention-ended', at: T2 }).refusal?.status, status);
      });
    }

    for (const status of ALL.filter((s) => s !== 'archive-error')) {
      it(`step(${status}, retry-archive) is refused`, () => {
        assert.equal(step(inStatus(status), { type: 'retry-archive', at: T2 }).refusal?.status, status);
      });
    }
  });

  describe('update', () => {
    for (const status of ['reserved', 'live'] as const) {
      it(`step(${status}, update) changes only the patched fields and persists`, () => {
        const r = step(inStatus(status), { type: 'update', at: T2, patch: { title: 'New', archiveDays: 7, hasPassword: true, startsAt: T2 } });
        assert.equal(r.state.info.title, 'New');
        assert.equal(r.state.info.archiveDays, 7);
        assert.equal(r.state.info.hasPassword, true);
        assert.equal(r.state.info.startsAt, T2);
        assert.equal(r.state.info.status, status);
        assert.equal(r.state.info.updatedAt, T2);
        assert.equal(r.state.info.createdAt, T0);
        assert.deepEqual(r.effects, [{ type: 'persist' }]);
      });
    }

    for (const status of ['ended', 'archiving', 'archived', 'archive-error', 'cancelled'] as const) {
      it(`step(${status}, update) is refused with a message naming ${status}`, () => {
        const r = step(inStatus(status), { type: 'update', at: T2, patch: { title: 'New' } });
        assert.equal(r.refusal?.status, status);
        assert.match(r.refusal!.message, /reserved or live/);
      });
    }
  });

  describe('recover', () => {
    it('recover(live) starts the idle timer with nobody connected', () => {
      const r = recover(sampleInfo({ status: 'live' }));
      assert.equal(callerCount(r.state), 0);
      assert.equal(r.state.idleTimer, true);
      assert.deepEqual(r.effects, [{ type: 'start-idle-timer' }]);
    });

    it('recover(ended) waits for streams; recover(archiving) requests the archive', () => {
      assert.deepEqual(recover(sampleInfo({ status: 'ended' })).effects, [{ type: 'await-streams' }]);
      assert.deepEqual(recover(sampleInfo({ status: 'archiving' })).effects, [{ type: 'request-archive' }]);
    });

    for (const status of ['reserved', 'archived', 'archive-error', 'cancelled'] as const) {
      it(`recover(${status}) has no effects`, () => {
        assert.deepEqual(recover(sampleInfo({ status })).effects, []);
      });
    }
  });

  describe('callers-gone (a voice server node left the cluster)', () => {
    const on = (nodeId: string, channelId: string): LifecycleInput => ({ type: 'join', at: T1, channelId, nodeId, port: 10002 });
    const twoNodes = () => step(step(inStatus('reserved'), on('voice-a', 'a1')).state, on('voice-b', 'b1')).state;

    it('step(live, callers-gone) drops only that node\'s callers and keeps the event without a timer', () => {
      const r = step(twoNodes(), { type: 'callers-gone', at: T2, nodeIds: ['voice-a'] });
      assert.deepEqual(Object.keys(r.state.callers), ['b1']);
      assert.equal(r.state.idleTimer, false);
      assert.deepEqual(r.effects, []);
    });

    it('step(live, callers-gone) of the last caller\'s node starts the idle timer', () => {
      const once = step(twoNodes(), { type: 'callers-gone', at: T2, nodeIds: ['voice-a'] }).state;
      const r = step(once, { type: 'callers-gone', at: T2, nodeIds: ['voice-b'] });
      assert.equal(callerCount(r.state), 0);
      assert.equal(r.state.idleTimer, true);
      assert.deepEqual(r.effects, [{ type: 'start-idle-timer' }]);
    });

    it('step(live, callers-gone) of a node with no callers returns the same state', () => {
      const s = twoNodes();
      const r = step(s, { type: 'callers-gone', at: T2, nodeIds: ['voice-c'] });
      assert.equal(r.state, s);
      assert.deepEqual(r.effects, []);
    });
  });

  describe('resume (taken over from the shared store)', () => {
    const withCallers = (nodes: string[], idleTimer = false) =>
      inStatus('live', { callers: Object.fromEntries(nodes.map((n, i) => [`ch-${i}`, { nodeId: n, port: 10002 + i }])), idleTimer });

    it('step(live, resume) keeps callers on live nodes, no timer, same state when nothing changed', () => {
      const s = withCallers(['voice-a']);
      const r = step(s, { type: 'resume', at: T2, goneNodeIds: [] });
      assert.equal(r.state, s);
      assert.deepEqual(r.effects, []);
    });

    it('step(live, resume) drops callers on gone nodes and, with none left, starts the idle timer', () => {
      const r = step(withCallers(['voice-a', 'voice-a']), { type: 'resume', at: T2, goneNodeIds: ['voice-a'] });
      assert.equal(callerCount(r.state), 0);
      assert.equal(r.state.idleTimer, true);
      assert.deepEqual(r.effects, [{ type: 'start-idle-timer' }]);
    });

    it('step(live, resume) with the idle timer already running re-arms it (the actor keeps the stored deadline)', () => {
      const s = withCallers([], true);
      const r = step(s, { type: 'resume', at: T2, goneNodeIds: [] });
      assert.equal(r.state, s);
      assert.deepEqual(r.effects, [{ type: 'start-idle-timer' }]);
    });

    it('step(ended, resume) waits for streams; step(archiving, resume) requests the archive; others do nothing', () => {
      assert.deepEqual(step(inStatus('ended'), { type: 'resume', at: T2, goneNodeIds: [] }).effects, [{ type: 'await-streams' }]);
      assert.deepEqual(step(inStatus('archiving'), { type: 'resume', at: T2, goneNodeIds: [] }).effects, [{ type: 'request-archive' }]);
      for (const status of ['reserved', 'archived', 'archive-error', 'cancelled'] as const) {
        assert.deepEqual(step(inStatus(status), { type: 'resume', at: T2, goneNodeIds: [] }).effects, []);
      }
    });
  });

  it('step() never mutates the state it is given', () => {
    const s = inStatus('reserved');
    const frozen = structuredClone(s);
    step(s, join('a'));
    step(s, { type: 'update', at: T2, patch: { title: 'x' } });
    assert.deepEqual(s, frozen);
  });
});
