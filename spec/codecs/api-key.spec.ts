import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  ApiKeyFormatError, OPERATOR_ACCOUNT, accountOf, bearerToken, formatApiKey, hashApiKey, isValidAccount, isValidKeyId, keyIdOf, labelProblem, mayAccess, operatorKeyId,
} from '../../codecs/api-key.ts';
import { CodecError } from '../../codecs/errors.ts';

const SECRET = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
/** base64url of bytes 0..31, by hand. */
const SECRET_B64 = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8';

describe('codecs/api-key', () => {
  it('formatApiKey() writes jk_<keyId>_<base64url of the 32 secret bytes>', () => {
    assert.equal(formatApiKey('0123456789ab', SECRET), `jk_0123456789ab_${SECRET_B64}`);
  });

  it('keyIdOf() reads the keyId back from a formatted key', () => {
    assert.equal(keyIdOf(formatApiKey('00ff00ff00ff', SECRET)), '00ff00ff00ff');
  });

  it('keyIdOf() answers undefined for operator keys, the generated embedded key and junk', () => {
    for (const k of ['spec-api-key-0123456789', 'jk_AbCdEfGhIjKlMnOpQrStUvWx', `jk_0123456789AB_${SECRET_B64}`, `jk_0123456789ab_${SECRET_B64}x`, `jk_0123456789ab_${SECRET_B64.slice(1)}`, `jk_0123456789ab-${SECRET_B64}`, '', `jk_0123456789ab_${SECRET_B64}\n`]) {
      assert.equal(keyIdOf(k), undefined, JSON.stringify(k));
    }
  });

  it('formatApiKey() refuses a bad keyId or a secret that is not 32 bytes with ApiKeyFormatError', () => {
    assert.throws(() => formatApiKey('0123456789AB', SECRET), (e: unknown) => e instanceof ApiKeyFormatError && e instanceof CodecError && e.code === 'API_KEY_BAD_ID');
    assert.throws(() => formatApiKey('0123456789ab', SECRET.subarray(1)), (e: unknown) => e instanceof ApiKeyFormatError && e.code === 'API_KEY_BAD_SECRET');
  });

  it('hashApiKey() is sha256 of the key text; operatorKeyId() is op- and its first 6 bytes in hex', () => {
    const sha = createHash('sha256').update('spec-api-key-0123456789').digest();
    assert.deepEqual(hashApiKey('spec-api-key-0123456789'), sha);
    assert.equal(operatorKeyId('spec-api-key-0123456789'), 'op-' + sha.subarray(0, 6).toString('hex'));
  });

  it('bearerToken() takes the key from "Bearer <key>" (any case, trailing space) and nothing else', () => {
    assert.equal(bearerToken('Bearer abc'), 'abc');
    assert.equal(bearerToken('bearer abc  '), 'abc');
    for (const h of [undefined, '', 'Basic abc', 'Bearer', 'Bearer a b', 'abc', `Bearer ${'x'.repeat(2000)}`]) assert.equal(bearerToken(h), undefined, String(h));
  });

  it('isValidAccount() takes lowercase names of 1-64 of a-z 0-9 _ . - starting with a letter or digit', () => {
    for (const ok of ['a', 'acme', 'acme-corp', 'acme.eu_2', '0day', 'x'.repeat(64), OPERATOR_ACCOUNT]) assert.equal(isValidAccount(ok), true, ok);
    for (const bad of ['', 'Acme', '-acme', '.acme', 'a b', 'a/b', 'x'.repeat(65), 'ü', 42, undefined, null]) assert.equal(isValidAccount(bad), false, String(bad));
  });

  it('isValidKeyId() takes exactly 12 lowercase hex digits', () => {
    assert.equal(isValidKeyId('0123456789ab'), true);
    for (const bad of ['0123456789a', '0123456789abc', '0123456789AB', 'op-0123456789', 12]) assert.equal(isValidKeyId(bad), false, String(bad));
  });

  it('labelProblem() accepts up to 200 characters of text with emoji and refuses control characters and lone surrogates', () => {
    assert.equal(labelProblem('CI deploys — 🚀'), undefined);
    assert.equal(labelProblem('x'.repeat(200)), undefined);
    assert.match(labelProblem('x'.repeat(201))!, /at most 200/);
    for (const bad of ['a\nb', 'a\u0000', 'a\u009b[31m', '\uD800x']) assert.match(labelProblem(bad)!, /control/, JSON.stringify(bad));
    assert.equal(labelProblem(7), 'must be a string');
  });

  it('accountOf() is the event\'s account, or operator for event-info written before accounts', () => {
    assert.equal(accountOf({ account: 'acme' }), 'acme');
    assert.equal(accountOf({}), OPERATOR_ACCOUNT);
  });

  it('mayAccess() lets an account see its own events only; the operator and inside calls see all', () => {
    assert.equal(mayAccess('acme', { account: 'acme' }), true);
    assert.equal(mayAccess('acme', { account: 'globex' }), false);
    assert.equal(mayAccess('acme', {}), false, 'an old operator event is not an account\'s');
    assert.equal(mayAccess(OPERATOR_ACCOUNT, { account: 'globex' }), true);
    assert.equal(mayAccess(undefined, { account: 'globex' }), true);
  });
});
