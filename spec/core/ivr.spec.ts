import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { initialIvrState, stepIvr, type IvrEffect, type IvrInput, type IvrState } from '../../core/ivr.ts';

const opts = { maxFailures: 3, endCode: '*399#' };
const EVENT = '12345674';

function feed(state: IvrState, inputs: IvrInput[]): { state: IvrState; effects: IvrEffect[] } {
  const effects: IvrEffect[] = [];
  for (const i of inputs) {
    const r = stepIvr(state, i, opts);
    state = r.state;
    effects.push(...r.effects);
  }
  return { state, effects };
}
const keys = (s: string): IvrInput[] => [...s].map((digit) => ({ type: 'digit', digit }));
const plays = (fx: IvrEffect[]) => fx.filter((f) => f.type === 'play').map((f) => (f as { prompt: string }).prompt);

describe('stepIvr()', () => {
  test('start plays the welcome and asks for the event ID', () => {
    const { state, effects } = stepIvr(initialIvrState(), { type: 'start' }, opts);
    assert.equal(state.phase, 'event-id');
    assert.deepEqual(plays(effects), ['welcome', 'enter-event-id']);
    assert.ok(effects.some((f) => f.type === 'start-digit-timer'));
  });

  test('a Luhn-valid event ID then a PIN asks to verify that pair', () => {
    const { state, effects } = feed(initialIvrState(), [{ type: 'start' }, ...keys(`${EVENT}#`), ...keys('123456#')]);
    assert.equal(state.phase, 'verifying');
    assert.deepEqual(effects.filter((f) => f.type === 'verify'), [{ type: 'verify', eventId: EVENT, pin: '123456' }]);
    assert.deepEqual(plays(effects), ['welcome', 'enter-event-id', 'enter-pin']);
  });

  test('the first key interrupts the prompts (barge-in)', () => {
    const { effects } = feed(initialIvrState(), [{ type: 'start' }, ...keys('1')]);
    assert.ok(effects.some((f) => f.type === 'stop-prompts'));
  });

  test('a mistyped event ID (bad check digit) is refused before any lookup and re-prompted', () => {
    const { state, effects } = feed(initialIvrState(), [{ type: 'start' }, ...keys('12345675#')]);
    assert.equal(state.phase, 'event-id');
    assert.equal(state.failures, 1);
    assert.ok(!effects.some((f) => f.type === 'verify'));
    assert.deepEqual(plays(effects).slice(-2), ['invalid-event-id', 'enter-event-id']);
  });

  test('star clears the entry so the caller can start over', () => {
    const { state, effects } = feed(initialIvrState(), [{ type: 'start' }, ...keys(`99*${EVENT}#`)]);
    assert.equal(state.phase, 'pin');
    assert.equal(state.eventId, EVENT);
    assert.equal(plays(effects).at(-1), 'enter-pin');
  });

  test('a wrong PIN re-prompts for the PIN, the third failure says goodbye and hangs up', () => {
    let { state } = feed(initialIvrState(), [{ type: 'start' }, ...keys(`${EVENT}#`), ...keys('000000#')]);
    let r = stepIvr(state, { type: 'verified', ok: false, reason: 'wrong-pin' }, opts);
    assert.equal(r.state.phase, 'pin');
    assert.deepEqual(plays(r.effects), ['wrong-pin', 'enter-pin']);
    ({ state } = feed(r.state, keys('111111#')));
    r = stepIvr(state, { type: 'verified', ok: false, reason: 'wrong-pin' }, opts);
    ({ state } = feed(r.state, keys('222222#')));
    r = stepIvr(state, { type: 'verified', ok: false, reason: 'wrong-pin' }, opts);
    assert.equal(r.state.phase, 'closing');
    assert.deepEqual(plays(r.effects), ['wrong-pin', 'goodbye']);
    assert.deepEqual(r.effects.at(-1), { type: 'hangup', reason: 'failures' });
  });

  test('failures of different kinds add up to three', () => {
    const { state, effects } = feed(initialIvrState(), [{ type: 'start' }, { type: 'digit-timeout' }, ...keys('1#'), { type: 'digit-timeout' }]);
    assert.equal(state.phase, 'closing');
    assert.deepEqual(effects.at(-1), { type: 'hangup', reason: 'failures' });
  });

  test('an over-long entry counts as a failure', () => {
    const { state } = feed(initialIvrState(), [{ type: 'start' }, ...keys('12345678901234567')]);
    assert.equal(state.failures, 1);
    assert.equal(state.buffer, '');
  });

  test('a throttled or unavailable event ends the call at once', () => {
    for (const reason of ['throttled', 'event-unavailable', 'service-unavailable'] as const) {
      const { state } = feed(initialIvrState(), [{ type: 'start' }, ...keys(`${EVENT}#123456#`)]);
      const r = stepIvr(state, { type: 'verified', ok: false, reason }, opts);
      assert.equal(r.state.phase, 'closing');
      assert.deepEqual(plays(r.effects), [reason, 'goodbye']);
      assert.deepEqual(r.effects.at(-1), { type: 'hangup', reason: 'refused' });
    }
  });

  test('verified ok goes live; the end code then ends the event, other keys do not', () => {
    const { state } = feed(initialIvrState(), [{ type: 'start' }, ...keys(`${EVENT}#123456#`), { type: 'verified', ok: true }]);
    assert.equal(state.phase, 'live');
    const none = feed(state, keys('12*39#'));
    assert.ok(!none.effects.some((f) => f.type === 'end-event'));
    const ended = feed(none.state, keys('*399#'));
    assert.deepEqual(ended.effects, [{ type: 'end-event', eventId: EVENT }]);
  });

  test('keys while verifying are ignored', () => {
    const { state } = feed(initialIvrState(), [{ type: 'start' }, ...keys(`${EVENT}#123456#`)]);
    const r = feed(state, keys('999#'));
    assert.equal(r.state.phase, 'verifying');
    assert.deepEqual(r.effects, []);
  });

  test('event-ended plays the closing prompt and hangs up once', () => {
    const { state } = feed(initialIvrState(), [{ type: 'start' }, ...keys(`${EVENT}#123456#`), { type: 'verified', ok: true }]);
    const r = stepIvr(state, { type: 'event-ended' }, opts);
    assert.equal(r.state.phase, 'closing');
    assert.deepEqual(plays(r.effects), ['event-ended']);
    assert.deepEqual(stepIvr(r.state, { type: 'event-ended' }, opts).effects, []);
  });
});
