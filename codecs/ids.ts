/**
 * Event and stream identifiers (DESIGN.md "Identifiers and secrets", "Content storage layout").
 * Validated IDs are the only values ever joined into storage paths, so the validators are strict:
 * fixed charsets, bounded lengths, no "..".
 */
import { luhnCheckDigit, luhnValid } from './luhn.ts';

/** Event ID shape: exactly 8 decimal digits (the Luhn check is separate). */
export const EVENT_ID_RE = /^\d{8}$/;

/** Stream ID shape: `<eventId>-<nodeId>-<port>-<startedAt base36>`. */
export const STREAM_ID_RE = /^(\d{8})-([A-Za-z0-9_.-]{1,64})-(\d{1,5})-([0-9a-z]{1,12})$/;

/** The 8-digit event ID for seven digits: the seven followed by their Luhn check digit. */
export function makeEventId(sevenDigits: string): string {
  if (!/^\d{7}$/.test(sevenDigits)) throw new RangeError(`makeEventId() needs exactly 7 digits, got ${JSON.stringify(sevenDigits)}`);
  return sevenDigits + String(luhnCheckDigit(sevenDigits));
}

/** Whether `id` is an 8-digit string whose last digit is the Luhn check digit. */
export function isValidEventId(id: unknown): id is string {
  return typeof id === 'string' && EVENT_ID_RE.test(id) && luhnValid(id);
}

/** The stream ID of one encoder run: event, node, voice-server port and start time (base 36 ms). */
export function makeStreamId(eventId: string, nodeId: string, port: number, startedAtMs: number): string {
  if (!isValidEventId(eventId)) throw new RangeError(`makeStreamId() got an invalid event ID ${JSON.stringify(eventId)}`);
  if (!Number.isSafeInteger(startedAtMs) || startedAtMs < 0) throw new RangeError(`makeStreamId() got an invalid start time ${startedAtMs}`);
  const id = `${eventId}-${nodeId}-${port}-${startedAtMs.toString(36)}`;
  if (!Number.isInteger(port) || port < 0 || port > 65535 || !isValidStreamId(id)) {
    throw new RangeError(`makeStreamId() cannot build a valid stream ID from node ${JSON.stringify(nodeId)} port ${port}`);
  }
  return id;
}

/** Whether `id` is a well-formed stream ID whose event part passes Luhn and which holds no "..". */
export function isValidStreamId(id: unknown): id is string {
  if (typeof id !== 'string' || id.includes('..')) return false;
  const m = STREAM_ID_RE.exec(id);
  return m !== null && luhnValid(m[1]!);
}

/** The event ID a valid stream ID belongs to; throws RangeError for an invalid stream ID. */
export function eventIdOfStream(streamId: string): string {
  if (!isValidStreamId(streamId)) throw new RangeError(`eventIdOfStream() got an invalid stream ID ${JSON.stringify(streamId)}`);
  return streamId.slice(0, 8);
}
