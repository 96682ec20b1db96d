/**
 * Attendee tokens and stream auth codes (DESIGN.md "Identifiers and secrets", "Attendee access").
 * Both are verified with the cluster secret alone, so attendee access needs neither DB nor storage.
 *
 * token     = base64url(JSON claims) "." base64url(HMAC-SHA256(secret, "jitcast.token.v1|" + payloadPart))
 * auth code = <expiry unix s> "." base64url(HMAC-SHA256(secret, "jitcast.auth.v1|" eventId "|" streamId "|" expiry))
 *
 * Every MAC input starts with its own domain label, so a MAC of one kind can never be replayed as
 * another (a password proof is not a token signature, a token signature is not an auth code).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { CodecError } from './errors.ts';
import { eventIdOfStream, isValidEventId, isValidStreamId } from './ids.ts';

/** The claims inside an attendee token: event, role, optional expiry (unix s) and password proof. */
export interface AccessClaims {
  e: string;
  r: 'attendee' | 'host';
  x?: number;
  p?: string;
}

/** Why a token was refused. */
export type TokenErrorCode = 'TOKEN_MALFORMED' | 'TOKEN_BAD_SIGNATURE' | 'TOKEN_EXPIRED' | 'TOKEN_BAD_CLAIMS';

/** A refused or unsignable attendee token. */
export class TokenError extends CodecError {
  declare readonly code: TokenErrorCode;
  constructor(message: string, code: TokenErrorCode) {
    super(message, code);
  }
}

/** Longest token accepted; real tokens are about 150 characters, so anything near this is junk. */
export const MAX_TOKEN_LENGTH = 1024;
/** Longest auth code accepted: up to 12 expiry digits, a dot and a 43-character MAC. */
const MAX_AUTH_CODE_LENGTH = 64;

const TOKEN_LABEL = 'jitcast.token.v1|';
const PASSWORD_LABEL = 'jitcast.password.v1|';
const AUTH_LABEL = 'jitcast.auth.v1|';

const B64URL_RE = /^[A-Za-z0-9_-]+$/;
/** base64url of a 32-byte HMAC-SHA256, unpadded. */
const MAC_B64_RE = /^[A-Za-z0-9_-]{43}$/;
const CLAIM_KEYS = new Set(['e', 'r', 'x', 'p']);

function mac(secret: string, input: string): string {
  return createHmac('sha256', secret).update(input, 'utf8').digest('base64url');
}

/** Constant-time string equality; unequal lengths are refused first (length is not secret here). */
function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** Claims checked field by field; returns a fresh object holding only the known fields. */
function checkClaims(value: unknown): AccessClaims {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenError('token payload is not an object', 'TOKEN_BAD_CLAIMS');
  }
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!CLAIM_KEYS.has(k)) throw new TokenError(`token has unknown claim '${k}'`, 'TOKEN_BAD_CLAIMS');
  }
  if (!isValidEventId(o.e)) throw new TokenError("token claim 'e' is not a valid event ID", 'TOKEN_BAD_CLAIMS');
  if (o.r !== 'attendee' && o.r !== 'host') throw new TokenError("token claim 'r' must be 'attendee' or 'host'", 'TOKEN_BAD_CLAIMS');
  const claims: AccessClaims = { e: o.e, r: o.r };
  if (o.x !== undefined) {
    if (typeof o.x !== 'number' || !Number.isSafeInteger(o.x) || o.x < 0) {
      throw new TokenError("token claim 'x' must be a non-negative integer", 'TOKEN_BAD_CLAIMS');
    }
    claims.x = o.x;
  }
  if (o.p !== undefined) {
    if (typeof o.p !== 'string' || !MAC_B64_RE.test(o.p)) throw new TokenError("token claim 'p' is not a password proof", 'TOKEN_BAD_CLAIMS');
    claims.p = o.p;
  }
  return claims;
}

/** Signs claims into an attendee token; throws TokenError(TOKEN_BAD_CLAIMS) for claims verifyToken() would refuse. */
export function signToken(secret: string, claims: AccessClaims): string {
  const c = checkClaims(claims);
  // Fixed key order so one set of claims always yields one token.
  const ordered: AccessClaims = { e: c.e, r: c.r };
  if (c.x !== undefined) ordered.x = c.x;
  if (c.p !== undefined) ordered.p = c.p;
  const payloadPart = Buffer.from(JSON.stringify(ordered), 'utf8').toString('base64url');
  return `${payloadPart}.${mac(secret, TOKEN_LABEL + payloadPart)}`;
}

/** Verifies an attendee token and returns its claims; throws TokenError. Expired once nowS ≥ x. */
export function verifyToken(secret: string, token: string, nowS: number): AccessClaims {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
    throw new TokenError('token is empty or too long', 'TOKEN_MALFORMED');
  }
  const parts = token.split('.');
  if (parts.length !== 2) throw new TokenError('token must have exactly two parts', 'TOKEN_MALFORMED');
  const [payloadPart, macPart] = parts as [string, string];
  if (!B64URL_RE.test(payloadPart) || !MAC_B64_RE.test(macPart)) {
    throw new TokenError('token is not base64url', 'TOKEN_MALFORMED');
  }
  // The expected MAC is canonical base64url, so a non-canonical spelling of the right bytes fails too.
  if (!safeEqual(mac(secret, TOKEN_LABEL + payloadPart), macPart)) {
    throw new TokenError('token signature does not match', 'TOKEN_BAD_SIGNATURE');
  }
  // Only now is the payload trusted enough to hand to JSON.parse.
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payloadPart, 'base64url').toString('utf8'));
  } catch {
    throw new TokenError('token payload is not JSON', 'TOKEN_MALFORMED');
  }
  const claims = checkClaims(parsed);
  if (claims.x !== undefined && nowS >= claims.x) throw new TokenError('token has expired', 'TOKEN_EXPIRED');
  return claims;
}

/**
 * The `p` claim for an event with a password. DESIGN.md says HMAC(secret, eventId + password); the
 * "|" separator (and the domain label) keep the input unambiguous, so "1"+"23" and "12"+"3" differ.
 */
export function passwordProof(secret: string, eventId: string, password: string): string {
  return mac(secret, `${PASSWORD_LABEL}${eventId}|${password}`);
}

/** Whether `password` matches the token's proof, in constant time; false when the token has no proof. */
export function passwordMatches(secret: string, claims: AccessClaims, password: string): boolean {
  if (typeof claims.p !== 'string' || typeof password !== 'string') return false;
  return safeEqual(passwordProof(secret, claims.e, password), claims.p);
}

function authInput(eventId: string, streamId: string, expiresAtS: number): string {
  return `${AUTH_LABEL}${eventId}|${streamId}|${expiresAtS}`;
}

/** An auth code `<expiry>.<mac>` for one stream of one event, valid until expiresAtS (unix s, exclusive). */
export function signAuthCode(secret: string, eventId: string, streamId: string, expiresAtS: number): string {
  if (!isValidEventId(eventId)) throw new RangeError(`signAuthCode() got an invalid event ID ${JSON.stringify(eventId)}`);
  if (!isValidStreamId(streamId) || eventIdOfStream(streamId) !== eventId) {
    throw new RangeError(`signAuthCode() got a stream ID ${JSON.stringify(streamId)} not of event ${eventId}`);
  }
  if (!Number.isSafeInteger(expiresAtS) || expiresAtS < 0 || expiresAtS > 999_999_999_999) {
    throw new RangeError(`signAuthCode() got an invalid expiry ${expiresAtS}`);
  }
  return `${expiresAtS}.${mac(secret, authInput(eventId, streamId, expiresAtS))}`;
}

/** Whether `code` opens stream `streamId` of event `eventId` at nowS; never throws. */
export function verifyAuthCode(secret: string, code: string, eventId: string, streamId: string, nowS: number): boolean {
  if (typeof code !== 'string' || code.length > MAX_AUTH_CODE_LENGTH) return false;
  if (!isValidEventId(eventId) || !isValidStreamId(streamId) || eventIdOfStream(streamId) !== eventId) return false;
  // Canonical decimal only (no leading zeros, signs or exponents), so one expiry has one spelling.
  const m = /^(0|[1-9]\d{0,11})\.([A-Za-z0-9_-]{43})$/.exec(code);
  if (m === null) return false;
  const expiresAtS = Number(m[1]);
  if (!safeEqual(mac(secret, authInput(eventId, streamId, expiresAtS)), m[2]!)) return false;
  return nowS < expiresAtS;
}
