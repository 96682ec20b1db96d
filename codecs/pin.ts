/**
 * Event PIN (DESIGN.md "Identifiers and secrets"): 6 digits = HMAC-SHA256(cluster secret, event ID)
 * with RFC 4226 §5.3 dynamic truncation mod 10^6. Any voice server recomputes it from the secret
 * alone, so the PIN check needs neither DB nor storage.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { dynamicTruncate } from './hotp.ts';

const PIN_DIGITS = 6;

/** The 6-digit PIN of an event. */
export function pinFor(secret: string, eventId: string): string {
  const mac = createHmac('sha256', secret).update(eventId).digest();
  return String(dynamicTruncate(mac) % 10 ** PIN_DIGITS).padStart(PIN_DIGITS, '0');
}

/** Whether `candidate` is the event's PIN, compared in constant time; false (never throws) for junk input. */
export function pinMatches(secret: string, eventId: string, candidate: string): boolean {
  if (typeof candidate !== 'string' || candidate.length !== PIN_DIGITS || !/^\d{6}$/.test(candidate)) return false;
  const want = Buffer.from(pinFor(secret, eventId), 'ascii');
  const got = Buffer.from(candidate, 'ascii');
  return want.length === got.length && timingSafeEqual(want, got);
}
