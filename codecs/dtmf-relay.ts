/**
 * DTMF carried in SIP INFO bodies (RFC 2976 INFO method). Two bodies are in use, neither of them
 * an RFC: `application/dtmf-relay` (Cisco, also sent by Asterisk, FreeSWITCH, baresip, sipp):
 *
 *   Signal=5\r\n
 *   Duration=160\r\n
 *
 * where Signal is the key (0-9, *, #, A-D) or its RFC 4733 §3.2 event code (10 = *, 11 = #,
 * 12-15 = A-D), and `application/dtmf`, whose body is the key alone (`5`). Parsing is lenient
 * about case, spacing and line endings, as the senders differ.
 */
import { eventToDigit } from './rfc4733.ts';

const KEYS = /^[0-9*#A-D]$/;

/** Maps a Signal value (key or RFC 4733 event code) to its key, or undefined. */
function signalToDigit(value: string): string | undefined {
  const v = value.trim().toUpperCase();
  if (KEYS.test(v)) return v;
  if (/^\d{2}$/.test(v)) return eventToDigit(Number(v));
  return undefined;
}

/** Returns the key sent in a SIP INFO body, or undefined when the body carries none. */
export function parseDtmfInfo(contentType: string, body: string): string | undefined {
  // Media type without parameters (RFC 3261 §20.15), compared case-insensitively.
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (type === 'application/dtmf-relay') {
    for (const line of body.split(/\r\n|\r|\n/)) {
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      if (line.slice(0, eq).trim().toLowerCase() === 'signal') return signalToDigit(line.slice(eq + 1));
    }
    return undefined;
  }
  if (type === 'application/dtmf') return signalToDigit(body);
  return undefined;
}
