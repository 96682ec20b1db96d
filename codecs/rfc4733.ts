/**
 * RTP payload for DTMF digits (telephone-event), RFC 4733 §2.3:
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |     event     |E|R| volume    |          duration             |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * event: §3.2 codes (0-9, 10 = *, 11 = #, 12-15 = A-D); E: end of event; R: reserved, sent as 0
 * and ignored on receipt (§2.3.3); volume: power level in -dBm0, 0-63 (§2.3.4); duration: in
 * RTP timestamp units since the event's timestamp (§2.3.5).
 */
import { CodecError } from './errors.ts';
import { timestampDistance } from './rtp.ts';

/** One telephone-event report (RFC 4733 §2.3). */
export interface TelephoneEvent {
  event: number;
  end: boolean;
  volume: number;
  duration: number;
}

/** A telephone-event payload, event code or digit that cannot be read or written. */
export class TelephoneEventError extends CodecError {}

/** Size of one event report in octets (§2.3). */
export const TELEPHONE_EVENT_SIZE = 4;

/** Parses the first event report of a telephone-event payload (RFC 4733 §2.3). */
export function parseTelephoneEvent(payload: Buffer): TelephoneEvent {
  if (payload.length < TELEPHONE_EVENT_SIZE) {
    throw new TelephoneEventError(
      `telephone-event payload too short [length:${payload.length}]`,
      'TELEPHONE_EVENT_TOO_SHORT',
    );
  }
  const flags = payload[1];
  return {
    event: payload[0],
    end: (flags & 0x80) !== 0,
    volume: flags & 0x3f,
    duration: payload.readUInt16BE(2),
  };
}

/** Serialises one event report (RFC 4733 §2.3); the R bit is written as 0 (§2.3.3). */
export function serializeTelephoneEvent(e: TelephoneEvent): Buffer {
  const fields: Array<[string, number, number]> = [
    ['event', e.event, 0xff],
    ['volume', e.volume, 0x3f],
    ['duration', e.duration, 0xffff],
  ];
  for (const [name, value, max] of fields) {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new TelephoneEventError(`'${name}' must be an integer 0-${max} [${name}:${value}]`, 'TELEPHONE_EVENT_RANGE');
    }
  }
  const out = Buffer.alloc(TELEPHONE_EVENT_SIZE);
  out[0] = e.event;
  out[1] = (e.end ? 0x80 : 0) | e.volume;
  out.writeUInt16BE(e.duration, 2);
  return out;
}

const DIGITS = '0123456789*#ABCD';

/** Maps a DTMF event code (RFC 4733 §3.2, Table 7) to its key, or undefined for non-DTMF codes. */
export function eventToDigit(n: number): string | undefined {
  return Number.isInteger(n) && n >= 0 && n < DIGITS.length ? DIGITS[n] : undefined;
}

/** Maps a DTMF key (0-9, *, #, A-D in either case) to its event code (RFC 4733 §3.2). */
export function digitToEvent(d: string): number {
  const n = d.length === 1 ? DIGITS.indexOf(d.toUpperCase()) : -1;
  if (n < 0) throw new TelephoneEventError(`not a DTMF key [digit:${JSON.stringify(d)}]`, 'UNKNOWN_DIGIT');
  return n;
}

/** What the receiver needs of each RTP packet carrying telephone-event. */
export interface TelephoneEventPacket {
  timestamp: number;
  sequenceNumber: number;
  marker: boolean;
  payload: Buffer;
}

interface SeenEvent {
  timestamp: number;
  event: number;
  ended: boolean;
  duration: number;
}

/** How far behind the newest event an event's timestamp is still remembered (8 s at 8 kHz). */
const REMEMBER_TICKS = 65536;
/** At most this many events are remembered, whatever their age. */
const REMEMBER_EVENTS = 32;

/**
 * Turns a stream of telephone-event packets into key presses, each reported exactly once.
 *
 * RFC 4733 §2.5.1: all packets of one event share the RTP timestamp of its start; updates repeat
 * it with growing duration and the final report is sent three times (§2.5.1.4). So a press is a
 * timestamp not seen before: reporting on the first packet that arrives tolerates a lost start
 * packet (marker bit), and remembering recent timestamps makes late, reordered or replayed
 * packets of an event already reported harmless. A new segment of a long event (§2.5.1.3: new
 * timestamp after the duration field saturates, same event, no end bit yet) continues the press.
 * Malformed payloads are ignored rather than thrown, since this sits in the media path.
 */
export class TelephoneEventReceiver {
  #seen: SeenEvent[] = [];

  /** Feeds one packet; returns the key ('0'-'9', '*', '#', 'A'-'D') when it starts a new press. */
  push(p: TelephoneEventPacket): string | undefined {
    if (p.payload.length < TELEPHONE_EVENT_SIZE) return undefined;
    const report = parseTelephoneEvent(p.payload);
    const known = this.#seen.find((s) => s.timestamp === p.timestamp);
    if (known) {
      known.ended ||= report.end;
      known.duration = Math.max(known.duration, report.duration);
      return undefined;
    }

    const newest = this.#seen[this.#seen.length - 1];
    const continuesLongEvent =
      newest !== undefined &&
      !newest.ended &&
      newest.event === report.event &&
      newest.duration >= 0x8000 &&
      timestampDistance(newest.timestamp, p.timestamp) > 0 &&
      timestampDistance(newest.timestamp, p.timestamp) <= newest.duration + 8000;

    this.#remember({ timestamp: p.timestamp, event: report.event, ended: report.end, duration: report.duration });
    return continuesLongEvent ? undefined : eventToDigit(report.event);
  }

  #remember(entry: SeenEvent): void {
    const newest = this.#seen[this.#seen.length - 1];
    if (newest === undefined || timestampDistance(newest.timestamp, entry.timestamp) > 0) {
      this.#seen.push(entry);
    } else {
      // A reordered older event: keep the list sorted so "newest" stays the last entry.
      const at = this.#seen.findIndex((s) => timestampDistance(s.timestamp, entry.timestamp) < 0);
      this.#seen.splice(at < 0 ? this.#seen.length : at, 0, entry);
    }
    const latest = this.#seen[this.#seen.length - 1].timestamp;
    this.#seen = this.#seen
      .filter((s) => timestampDistance(s.timestamp, latest) <= REMEMBER_TICKS)
      .slice(-REMEMBER_EVENTS);
  }
}
