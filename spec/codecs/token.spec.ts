import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  passwordMatches,
  passwordProof,
  signAuthCode,
  signToken,
  TokenError,
  verifyAuthCode,
  verifyToken,
  type AccessClaims,
  type TokenErrorCode,
} from '../../codecs/token.ts';
import { CodecError } from '../../codecs/errors.ts';

const SECRET = 'jitcast-test-secret';
const EVENT = '12345674';
const STREAM = '12345674-node-a-10002-mieemv40';
const NOW = 1764064800;

/** The attendee token for {e:'12345674', r:'attendee'}: payload = base64url('{"e":"12345674","r":"attendee"}'). */
const ATTENDEE_TOKEN = 'eyJlIjoiMTIzNDU2NzQiLCJyIjoiYXR0ZW5kZWUifQ.CpkwpC_n585GYJYuhL1WJrUKu-mRaaNOLWVpR0I4-gg';

function rejects(token: string, code: TokenErrorCode, nowS = NOW, secret = SECRET): void {
  assert.throws(
    () => verifyToken(secret, token, nowS),
    (err: unknown) => err instanceof TokenError && err instanceof CodecError && err.code === code,
    `expected ${code}`,
  );
}

/** Signs an arbitrary payload string the way signToken() does, to test what verifyToken() does after the MAC. */
function forge(payloadJson: string, secret = SECRET): string {
  const part = Buffer.from(payloadJson, 'utf8').toString('base64url');
  return `${part}.${createHmac('sha256', secret).update(`jitcast.token.v1|${part}`).digest('base64url')}`;
}

/** Flips one bit of the character at `i` within the base64url alphabet (stays base64url). */
function flipChar(s: string, i: number): string {
  const c = s[i];
  const swap = c === 'A' ? 'B' : 'A';
  return s.slice(0, i) + swap + s.slice(i + 1);
}

describe('token', () => {
  it("signToken(secret, {e:'12345674', r:'attendee'}) returns the literal token built from an independent HMAC", () => {
    const payload = Buffer.from('{"e":"12345674","r":"attendee"}').toString('base64url');
    assert.equal(payload, 'eyJlIjoiMTIzNDU2NzQiLCJyIjoiYXR0ZW5kZWUifQ');
    const macPart = createHmac('sha256', SECRET).update(`jitcast.token.v1|${payload}`).digest('base64url');
    assert.equal(`${payload}.${macPart}`, ATTENDEE_TOKEN);
    assert.equal(signToken(SECRET, { e: EVENT, r: 'attendee' }), ATTENDEE_TOKEN);
  });

  it('verifyToken() returns the claims of the literal attendee token', () => {
    assert.deepEqual(verifyToken(SECRET, ATTENDEE_TOKEN, NOW), { e: EVENT, r: 'attendee' });
  });

  it('signToken() → verifyToken() round-trips host claims with expiry and password proof', () => {
    const p = passwordProof(SECRET, EVENT, 'hunter2');
    const claims: AccessClaims = { e: EVENT, r: 'host', x: NOW + 3600, p };
    assert.deepEqual(verifyToken(SECRET, signToken(SECRET, claims), NOW), claims);
  });

  it('verifyToken() keeps host and attendee roles apart', () => {
    assert.equal(verifyToken(SECRET, signToken(SECRET, { e: EVENT, r: 'host' }), NOW).r, 'host');
    assert.equal(verifyToken(SECRET, signToken(SECRET, { e: EVENT, r: 'attendee' }), NOW).r, 'attendee');
    assert.notEqual(signToken(SECRET, { e: EVENT, r: 'host' }), signToken(SECRET, { e: EVENT, r: 'attendee' }));
  });

  it('verifyToken() rejects a host payload with the MAC of an attendee token with TOKEN_BAD_SIGNATURE', () => {
    const host = signToken(SECRET, { e: EVENT, r: 'host' });
    rejects(`${host.split('.')[0]}.${ATTENDEE_TOKEN.split('.')[1]}`, 'TOKEN_BAD_SIGNATURE');
  });

  it('verifyToken() accepts a token one second before expiry and rejects it at expiry with TOKEN_EXPIRED', () => {
    const t = signToken(SECRET, { e: EVENT, r: 'attendee', x: NOW });
    assert.deepEqual(verifyToken(SECRET, t, NOW - 1), { e: EVENT, r: 'attendee', x: NOW });
    rejects(t, 'TOKEN_EXPIRED', NOW);
    rejects(t, 'TOKEN_EXPIRED', NOW + 1);
  });

  it('verifyToken() rejects a flipped payload byte with TOKEN_BAD_SIGNATURE', () => {
    rejects(flipChar(ATTENDEE_TOKEN, 5), 'TOKEN_BAD_SIGNATURE');
  });

  it('verifyToken() rejects a flipped MAC byte with TOKEN_BAD_SIGNATURE', () => {
    const macStart = ATTENDEE_TOKEN.indexOf('.') + 1;
    rejects(flipChar(ATTENDEE_TOKEN, macStart), 'TOKEN_BAD_SIGNATURE');
    rejects(flipChar(ATTENDEE_TOKEN, ATTENDEE_TOKEN.length - 2), 'TOKEN_BAD_SIGNATURE');
  });

  it('verifyToken() rejects a non-canonical spelling of the last MAC character with TOKEN_BAD_SIGNATURE', () => {
    // 'g' ends the 43-char MAC with 2 spare bits; 'h' decodes to the same bytes in lenient decoders.
    assert.equal(ATTENDEE_TOKEN.at(-1), 'g');
    rejects(ATTENDEE_TOKEN.slice(0, -1) + 'h', 'TOKEN_BAD_SIGNATURE');
  });

  it("verifyToken() rejects another token's payload under this token's MAC with TOKEN_BAD_SIGNATURE", () => {
    const other = signToken(SECRET, { e: '79927398', r: 'attendee' });
    rejects(`${other.split('.')[0]}.${ATTENDEE_TOKEN.split('.')[1]}`, 'TOKEN_BAD_SIGNATURE');
  });

  it('verifyToken() rejects a token signed with another secret with TOKEN_BAD_SIGNATURE', () => {
    rejects(signToken('other-secret', { e: EVENT, r: 'attendee' }), 'TOKEN_BAD_SIGNATURE');
  });

  it('verifyToken() rejects a truncated token with TOKEN_MALFORMED or TOKEN_BAD_SIGNATURE', () => {
    rejects(ATTENDEE_TOKEN.slice(0, -1), 'TOKEN_MALFORMED');
    rejects(ATTENDEE_TOKEN.slice(0, ATTENDEE_TOKEN.indexOf('.')), 'TOKEN_MALFORMED');
    rejects(ATTENDEE_TOKEN.slice(0, ATTENDEE_TOKEN.indexOf('.') + 1), 'TOKEN_MALFORMED');
    rejects(ATTENDEE_TOKEN.slice(1), 'TOKEN_BAD_SIGNATURE');
  });

  it('verifyToken() rejects extra dots with TOKEN_MALFORMED', () => {
    rejects(`${ATTENDEE_TOKEN}.`, 'TOKEN_MALFORMED');
    rejects(`.${ATTENDEE_TOKEN}`, 'TOKEN_MALFORMED');
    rejects(ATTENDEE_TOKEN.replace('.', '..'), 'TOKEN_MALFORMED');
    rejects(`${ATTENDEE_TOKEN}.${ATTENDEE_TOKEN.split('.')[1]}`, 'TOKEN_MALFORMED');
  });

  it('verifyToken() rejects non-base64url characters with TOKEN_MALFORMED', () => {
    for (const bad of ['+', '/', '=', ' ', '%', '\n', 'é']) {
      rejects(ATTENDEE_TOKEN.slice(0, 3) + bad + ATTENDEE_TOKEN.slice(4), 'TOKEN_MALFORMED');
    }
    rejects(`${ATTENDEE_TOKEN}=`, 'TOKEN_MALFORMED');
  });

  it('verifyToken() rejects empty, huge and non-string input with TOKEN_MALFORMED', () => {
    rejects('', 'TOKEN_MALFORMED');
    rejects(`${'A'.repeat(2_000_000)}.${ATTENDEE_TOKEN.split('.')[1]}`, 'TOKEN_MALFORMED');
    rejects(forge(`{"e":"12345674","r":"attendee","pad":"${'x'.repeat(1000)}"}`), 'TOKEN_MALFORMED');
    rejects(undefined as unknown as string, 'TOKEN_MALFORMED');
  });

  it('verifyToken() rejects a correctly signed non-JSON payload with TOKEN_MALFORMED', () => {
    rejects(forge('{"e":"12345674",'), 'TOKEN_MALFORMED');
  });

  it('verifyToken() rejects correctly signed bad claims with TOKEN_BAD_CLAIMS', () => {
    const bad = [
      '[]',
      'null',
      '"12345674"',
      '{"e":"12345675","r":"attendee"}',
      '{"e":12345674,"r":"attendee"}',
      '{"e":"12345674","r":"admin"}',
      '{"e":"12345674"}',
      '{"e":"12345674","r":"attendee","x":1.5}',
      '{"e":"12345674","r":"attendee","x":"1764064800"}',
      '{"e":"12345674","r":"attendee","x":-1}',
      '{"e":"12345674","r":"attendee","p":"short"}',
      '{"e":"12345674","r":"attendee","admin":true}',
      '{"e":"12345674","r":"attendee","__proto__":{"r":"host"}}',
    ];
    for (const json of bad) rejects(forge(json), 'TOKEN_BAD_CLAIMS');
  });

  it('signToken() throws TokenError TOKEN_BAD_CLAIMS for claims verifyToken() would refuse', () => {
    assert.throws(() => signToken(SECRET, { e: '12345675', r: 'attendee' }), (e: unknown) => e instanceof TokenError && e.code === 'TOKEN_BAD_CLAIMS');
    assert.throws(() => signToken(SECRET, { e: EVENT, r: 'root' as 'host' }), (e: unknown) => e instanceof TokenError && e.code === 'TOKEN_BAD_CLAIMS');
    assert.throws(() => signToken(SECRET, { e: EVENT, r: 'host', x: 1.5 }), (e: unknown) => e instanceof TokenError && e.code === 'TOKEN_BAD_CLAIMS');
  });

  it("passwordProof(secret, '12345674', 'hunter2') equals HMAC-SHA256(secret, 'jitcast.password.v1|12345674|hunter2')", () => {
    const want = createHmac('sha256', SECRET).update('jitcast.password.v1|12345674|hunter2').digest('base64url');
    assert.equal(passwordProof(SECRET, EVENT, 'hunter2'), want);
    assert.equal(want, 'H-KLWtoAC78Wq8d_r12dLUGLlnEpWi95FgtG44QowCA');
  });

  it('passwordMatches() returns true for the password and false for another, an empty one or a prefix', () => {
    const claims: AccessClaims = { e: EVENT, r: 'attendee', p: passwordProof(SECRET, EVENT, 'hunter2') };
    assert.equal(passwordMatches(SECRET, claims, 'hunter2'), true);
    assert.equal(passwordMatches(SECRET, claims, 'hunter3'), false);
    assert.equal(passwordMatches(SECRET, claims, ''), false);
    assert.equal(passwordMatches(SECRET, claims, 'hunter'), false);
    assert.equal(passwordMatches('other-secret', claims, 'hunter2'), false);
  });

  it("passwordMatches() refuses a proof made for another event's ID", () => {
    const claims: AccessClaims = { e: EVENT, r: 'attendee', p: passwordProof(SECRET, '79927398', 'hunter2') };
    assert.equal(passwordMatches(SECRET, claims, 'hunter2'), false);
  });

  it('passwordMatches() returns false when the token carries no proof', () => {
    assert.equal(passwordMatches(SECRET, { e: EVENT, r: 'attendee' }, ''), false);
    assert.equal(passwordMatches(SECRET, { e: EVENT, r: 'attendee' }, 'anything'), false);
  });

  it('passwordProof() separates event ID and password so shifted boundaries differ', () => {
    assert.notEqual(passwordProof(SECRET, '1', '23'), passwordProof(SECRET, '12', '3'));
  });

  it("signAuthCode(secret, '12345674', stream, 1764064920) returns '<expiry>.' + HMAC over the labelled string", () => {
    const mac = createHmac('sha256', SECRET).update(`jitcast.auth.v1|${EVENT}|${STREAM}|1764064920`).digest('base64url');
    assert.equal(mac, 'sIRE5Fcj2WojVm5Jlcd2IEjaWAm7SOPI5ooBI_FUWH8');
    assert.equal(signAuthCode(SECRET, EVENT, STREAM, 1764064920), `1764064920.${mac}`);
  });

  it('verifyAuthCode() accepts the code before expiry and refuses it at and after expiry', () => {
    const code = signAuthCode(SECRET, EVENT, STREAM, NOW + 120);
    assert.equal(verifyAuthCode(SECRET, code, EVENT, STREAM, NOW), true);
    assert.equal(verifyAuthCode(SECRET, code, EVENT, STREAM, NOW + 119), true);
    assert.equal(verifyAuthCode(SECRET, code, EVENT, STREAM, NOW + 120), false);
    assert.equal(verifyAuthCode(SECRET, code, EVENT, STREAM, NOW + 121), false);
  });

  it('verifyAuthCode() refuses a code for another stream or another event', () => {
    const code = signAuthCode(SECRET, EVENT, STREAM, NOW + 120);
    assert.equal(verifyAuthCode(SECRET, code, EVENT, '12345674-node-b-10002-mieemv40', NOW), false);
    assert.equal(verifyAuthCode(SECRET, code, EVENT, '12345674-node-a-10003-mieemv40', NOW), false);
    assert.equal(verifyAuthCode(SECRET, code, '79927398', '79927398-node-a-10002-mieemv40', NOW), false);
    // A stream ID that does not belong to the event named is refused outright.
    assert.equal(verifyAuthCode(SECRET, code, '79927398', STREAM, NOW), false);
  });

  it('verifyAuthCode() refuses an extended expiry, a flipped MAC, another secret and junk without throwing', () => {
    const code = signAuthCode(SECRET, EVENT, STREAM, NOW + 120);
    const [exp, mac] = code.split('.') as [string, string];
    assert.equal(verifyAuthCode(SECRET, `${Number(exp) + 3600}.${mac}`, EVENT, STREAM, NOW), false);
    assert.equal(verifyAuthCode(SECRET, `0${exp}.${mac}`, EVENT, STREAM, NOW), false);
    assert.equal(verifyAuthCode(SECRET, flipChar(code, code.length - 5), EVENT, STREAM, NOW), false);
    assert.equal(verifyAuthCode('other-secret', code, EVENT, STREAM, NOW), false);
    for (const junk of ['', '.', mac, `${exp}.`, `${code}.`, `${exp}.${mac}=`, `-1.${mac}`, `1e9.${mac}`, 'x'.repeat(100_000)]) {
      assert.equal(verifyAuthCode(SECRET, junk, EVENT, STREAM, NOW), false, junk.slice(0, 40));
    }
    assert.equal(verifyAuthCode(SECRET, null as unknown as string, EVENT, STREAM, NOW), false);
    assert.equal(verifyAuthCode(SECRET, code, '12345675', STREAM, NOW), false);
    assert.equal(verifyAuthCode(SECRET, code, EVENT, '../etc', NOW), false);
  });

  it('verifyAuthCode() does not accept a token MAC or password proof as an auth code', () => {
    const proof = passwordProof(SECRET, EVENT, STREAM);
    assert.equal(verifyAuthCode(SECRET, `${NOW + 120}.${proof}`, EVENT, STREAM, NOW), false);
  });

  it('signAuthCode() throws RangeError for an invalid event, a foreign stream or a bad expiry', () => {
    assert.throws(() => signAuthCode(SECRET, '12345675', STREAM, NOW), RangeError);
    assert.throws(() => signAuthCode(SECRET, '79927398', STREAM, NOW), RangeError);
    assert.throws(() => signAuthCode(SECRET, EVENT, 'stream-1', NOW), RangeError);
    assert.throws(() => signAuthCode(SECRET, EVENT, STREAM, 1.5), RangeError);
    assert.throws(() => signAuthCode(SECRET, EVENT, STREAM, -1), RangeError);
  });
});
