/**
 * API keys of customer accounts (issue 5 item 6) and the account names they belong to.
 *
 * key    = "jk_" keyId "_" secret
 * keyId  = 12 lowercase hex digits (48 bits): names the key in lists, logs and `keys revoke`; not secret
 * secret = base64url of 32 random bytes (43 characters, 256 bits)
 *
 * A gateway stores only sha256(key): the key has 256 bits of entropy, so a fast hash leaves nothing
 * to guess, and comparing hashes in constant time compares equal-length buffers whatever is presented.
 * Keys given in JITCAST_API_KEYS (and the one an embedded node generates, "jk_" + 24 characters)
 * have no keyId: they are the operator's and never match this format.
 */
import { createHash } from 'node:crypto';
import { CodecError } from './errors.ts';

/** The account of operator keys: sees and changes every account's events and manages keys. */
export const OPERATOR_ACCOUNT = 'operator';

/** Account names: lowercase, so "Acme" and "acme" can never be two accounts. */
const ACCOUNT_RE = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
/** What ACCOUNT_RE means, for error messages. */
export const ACCOUNT_RULE = 'must be 1-64 of a-z 0-9 _ . - starting with a letter or digit';
const KEY_ID_RE = /^[0-9a-f]{12}$/;
const KEY_RE = /^jk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
/** Control characters, noncharacters and lone surrogates a label may not hold (it is shown in terminals and XML). */
const CONTROL_RE = /[\u0000-\u001F\u007F-\u009F\u2028\u2029\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Longest label. */
export const MAX_LABEL_LENGTH = 200;

/** A key string that cannot be made (bad keyId or secret bytes). */
export class ApiKeyFormatError extends CodecError {}

/** Whether `v` is a valid account name. */
export function isValidAccount(v: unknown): v is string {
  return typeof v === 'string' && ACCOUNT_RE.test(v);
}

/** Whether `v` is a keyId (12 lowercase hex digits). */
export function isValidKeyId(v: unknown): v is string {
  return typeof v === 'string' && KEY_ID_RE.test(v);
}

/** Why a label is refused, or undefined when it is fine. */
export function labelProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'must be a string';
  if (v.length > MAX_LABEL_LENGTH) return `must be at most ${MAX_LABEL_LENGTH} characters`;
  if (CONTROL_RE.test(v)) return 'must not hold control characters';
  return undefined;
}

/** Builds a key from its keyId and 32 random bytes. */
export function formatApiKey(keyId: string, secret: Uint8Array): string {
  if (!isValidKeyId(keyId)) throw new ApiKeyFormatError(`invalid keyId ${JSON.stringify(keyId)}`, 'API_KEY_BAD_ID');
  if (secret.length !== 32) throw new ApiKeyFormatError(`an API key secret is 32 bytes, got ${secret.length}`, 'API_KEY_BAD_SECRET');
  return `jk_${keyId}_${Buffer.from(secret).toString('base64url')}`;
}

/** The keyId of an account key, or undefined for anything else (an operator key, junk). */
export function keyIdOf(key: string): string | undefined {
  if (typeof key !== 'string' || key.length > 64) return undefined;
  return KEY_RE.exec(key)?.[1];
}

/** sha256 of the key, as stored and compared. */
export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** The short ID of an operator key from config, as lists and logs show it: "op-" + 12 hex of its hash. */
export function operatorKeyId(key: string): string {
  return 'op-' + hashApiKey(key).subarray(0, 6).toString('hex');
}

/** The key in an `Authorization: Bearer <key>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (typeof header !== 'string' || header.length > 1024) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
}

/** The account an event belongs to: event-info written before accounts existed belongs to the operator. */
export function accountOf(info: { account?: string }): string {
  return info.account ?? OPERATOR_ACCOUNT;
}

/**
 * The one ownership rule: whether `viewer` may see and change an event. `undefined` is a call from
 * inside the cluster (no API key: the dashboard's own actions, another actor), which sees everything,
 * as does the operator; an account sees only its own events.
 */
export function mayAccess(viewer: string | undefined, info: { account?: string }): boolean {
  return viewer === undefined || viewer === OPERATOR_ACCOUNT || accountOf(info) === viewer;
}
