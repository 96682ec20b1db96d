/**
 * The dial-in IVR as a pure state machine (DESIGN.md "Dial-in"): event ID then `#`, PIN then `#`,
 * three failures end the call, and once live the end code (`*399#`) ends the event.
 * `step(state, input)` returns the next state and the effects the voice server carries out
 * (play a prompt, verify a PIN, join, hang up); it never touches a socket or a timer.
 */
import { isValidEventId } from '../codecs/ids.ts';

/** Every prompt the IVR can play; the voice server maps each to audio. */
export const PROMPT_TEXT = {
  welcome: 'Welcome to jitcast.',
  'enter-event-id': 'Please enter your event I D, followed by the pound key.',
  'enter-pin': 'Please enter your PIN, followed by the pound key.',
  'invalid-event-id': 'That event I D is not valid.',
  'wrong-pin': 'That PIN is not correct.',
  'no-input': 'We did not hear any keys.',
  'event-unavailable': 'This event is not available. It may have ended, or been cancelled.',
  throttled: 'There have been too many attempts for this event. Please try again later.',
  'service-unavailable': 'We cannot take your call right now. Please try again in a moment.',
  joined: 'You are now live. To end the event, press star, 3, 9, 9, pound.',
  'event-ended': 'The event has ended. Thank you.',
  goodbye: 'Goodbye.',
} as const;
export type PromptName = keyof typeof PROMPT_TEXT;

/** Why a PIN or join was refused, as the voice server learned it. */
export type VerifyFailure = 'wrong-pin' | 'throttled' | 'event-unavailable' | 'service-unavailable';

export type IvrPhase = 'event-id' | 'pin' | 'verifying' | 'live' | 'closing';

export interface IvrState {
  phase: IvrPhase;
  /** Digits keyed so far in the current entry. */
  buffer: string;
  /** Failed entries so far (wrong ID, wrong PIN, no input). */
  failures: number;
  /** The event ID once it passed its Luhn check. */
  eventId?: string;
  /** Digits keyed while live, for the end code. */
  liveDigits: string;
}

export type IvrInput =
  | { type: 'start' }
  | { type: 'digit'; digit: string }
  | { type: 'digit-timeout' }
  | { type: 'verified'; ok: true }
  | { type: 'verified'; ok: false; reason: VerifyFailure }
  | { type: 'event-ended' };

export type IvrEffect =
  | { type: 'play'; prompt: PromptName }
  /** A key press interrupts prompts still queued (barge-in). */
  | { type: 'stop-prompts' }
  | { type: 'start-digit-timer' }
  | { type: 'clear-digit-timer' }
  /** Check the PIN (constant time, throttled) and join the event's conference. */
  | { type: 'verify'; eventId: string; pin: string }
  | { type: 'end-event'; eventId: string }
  /** Hang up once the queued prompts have played. */
  | { type: 'hangup'; reason: 'failures' | 'event-ended' | 'refused' };

export interface IvrOptions {
  /** Failed entries that end the call. DESIGN.md: 3. */
  maxFailures: number;
  /** The digits that end the event from the phone. DESIGN.md: `*399#`. */
  endCode: string;
}

/** Longest entry accepted before it counts as a failure (an event ID is 8, a PIN 6). */
const MAX_ENTRY = 16;

/** The state of a new call. */
export function initialIvrState(): IvrState {
  return { phase: 'event-id', buffer: '', failures: 0, liveDigits: '' };
}

/** Advances the IVR by one input. */
export function stepIvr(state: IvrState, input: IvrInput, opts: IvrOptions): { state: IvrState; effects: IvrEffect[] } {
  const s: IvrState = { ...state };
  const fx: IvrEffect[] = [];

  const fail = (prompt: PromptName, reprompt: PromptName, phase: 'event-id' | 'pin') => {
    s.failures += 1;
    s.buffer = '';
    fx.push({ type: 'play', prompt });
    if (s.failures >= opts.maxFailures) {
      s.phase = 'closing';
      fx.push({ type: 'clear-digit-timer' }, { type: 'play', prompt: 'goodbye' }, { type: 'hangup', reason: 'failures' });
    } else {
      s.phase = phase;
      if (phase === 'event-id') s.eventId = undefined;
      fx.push({ type: 'play', prompt: reprompt }, { type: 'start-digit-timer' });
    }
  };

  switch (input.type) {
    case 'start':
      fx.push({ type: 'play', prompt: 'welcome' }, { type: 'play', prompt: 'enter-event-id' }, { type: 'start-digit-timer' });
      break;

    case 'digit': {
      const d = input.digit;
      if (s.phase === 'live') {
        // Keep only as many trailing digits as the end code is long.
        s.liveDigits = (s.liveDigits + d).slice(-opts.endCode.length);
        if (s.liveDigits === opts.endCode && s.eventId) {
          s.liveDigits = '';
          fx.push({ type: 'end-event', eventId: s.eventId });
        }
        break;
      }
      if (s.phase !== 'event-id' && s.phase !== 'pin') break; // verifying or closing: keys are ignored
      if (s.buffer === '') fx.push({ type: 'stop-prompts' });
      fx.push({ type: 'start-digit-timer' });
      if (d === '*') {
        s.buffer = ''; // star clears the entry, as callers expect
        break;
      }
      if (d !== '#') {
        s.buffer += d;
        if (s.buffer.length > MAX_ENTRY) {
          fail(s.phase === 'event-id' ? 'invalid-event-id' : 'wrong-pin', s.phase === 'event-id' ? 'enter-event-id' : 'enter-pin', s.phase);
        }
        break;
      }
      if (s.phase === 'event-id') {
        // The Luhn check digit refuses a mistyped ID before any lookup.
        if (!isValidEventId(s.buffer)) {
          fail('invalid-event-id', 'enter-event-id', 'event-id');
        } else {
          s.eventId = s.buffer;
          s.buffer = '';
          s.phase = 'pin';
          fx.push({ type: 'play', prompt: 'enter-pin' });
        }
      } else {
        const pin = s.buffer;
        s.buffer = '';
        s.phase = 'verifying';
        fx.push({ type: 'clear-digit-timer' }, { type: 'verify', eventId: s.eventId!, pin });
      }
      break;
    }

    case 'digit-timeout':
      if (s.phase === 'event-id' || s.phase === 'pin') {
        fail('no-input', s.phase === 'event-id' ? 'enter-event-id' : 'enter-pin', s.phase);
      }
      break;

    case 'verified':
      if (s.phase !== 'verifying') break;
      if (input.ok) {
        s.phase = 'live';
        s.failures = 0;
        fx.push({ type: 'play', prompt: 'joined' });
      } else if (input.reason === 'wrong-pin') {
        fail('wrong-pin', 'enter-pin', 'pin');
      } else {
        // Throttled, ended, cancelled or no capacity: another try would not help this call.
        s.phase = 'closing';
        fx.push({ type: 'play', prompt: input.reason }, { type: 'play', prompt: 'goodbye' }, { type: 'hangup', reason: 'refused' });
      }
      break;

    case 'event-ended':
      if (s.phase === 'closing') break;
      s.phase = 'closing';
      fx.push({ type: 'clear-digit-timer' }, { type: 'stop-prompts' }, { type: 'play', prompt: 'event-ended' }, { type: 'hangup', reason: 'event-ended' });
      break;
  }
  return { state: s, effects: fx };
}
