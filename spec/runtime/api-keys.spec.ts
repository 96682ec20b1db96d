import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatApiKey, hashApiKey, operatorKeyId } from '../../codecs/api-key.ts';
import {
  ApiKeyMirror, ApiKeyRegistry, ApiKeys, FileKeyStore, RedisKeyStore, SinkKeyMirror, mergeRecord, parseRecord, type ApiKeyRecord, type ApiKeysOptions,
} from '../../runtime/api-keys.ts';
import { ReportingWriter } from '../../runtime/reporting.ts';
import { openPostgres, type Db } from '../../runtime/db.ts';
import { NotFoundError, StateConflictError, StorageUnavailableError, ValidationFailedError } from '../../runtime/errors.ts';
import { createRedis, type RedisConnection } from '../../runtime/redis.ts';
import { CapturingLogger, SPEC_REDIS_URL, connectRedis, purgeNamespace, specNamespace } from '../support/redis.ts';

const OPERATOR_KEY = 'spec-operator-key-0123456789';
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

function record(overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return { keyId: randomBytes(6).toString('hex'), account: 'acme', label: 'ci', hash: randomBytes(32).toString('hex'), createdAt: '2026-12-01T10:00:00.000Z', ...overrides };
}

/** A registry with one minted key of `account`, merged in. */
function withKey(account = 'acme'): { registry: ApiKeyRegistry; key: string; record: ApiKeyRecord } {
  const registry = new ApiKeyRegistry([OPERATOR_KEY]);
  const { key, record: r } = registry.mint(account, 'ci', '2026-12-01T10:00:00.000Z');
  registry.merge(r);
  return { registry, key, record: r };
}

const tempFile = () => join(mkdtempSync(join(tmpdir(), 'jitcast-keys-')), 'api-keys.json');

describe('runtime/api-keys ApiKeyRegistry', () => {
  it('authenticate() answers the operator for a key from config, with its op- ID', () => {
    const { registry } = withKey();
    assert.deepEqual(registry.authenticate(OPERATOR_KEY), { keyId: operatorKeyId(OPERATOR_KEY), account: 'operator' });
  });

  it('authenticate() answers the account of a minted key once it is merged in, and nothing before', () => {
    const registry = new ApiKeyRegistry([OPERATOR_KEY]);
    const { key, record: r } = registry.mint('acme', undefined, '2026-12-01T10:00:00.000Z');
    assert.match(key, /^jk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    assert.equal(r.hash, hashApiKey(key).toString('hex'));
    assert.equal(r.label, undefined);
    assert.equal(registry.authenticate(key), undefined);
    registry.merge(r);
    assert.deepEqual(registry.authenticate(key), { keyId: r.keyId, account: 'acme' });
  });

  it('authenticate() refuses a forged key: a known keyId with another secret', () => {
    const { registry, record: r } = withKey();
    assert.equal(registry.authenticate(formatApiKey(r.keyId, randomBytes(32))), undefined);
  });

  it('authenticate() refuses an unknown keyId, junk, an empty or missing key, and a known key with a character changed', () => {
    const { registry, key } = withKey();
    const flipped = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
    for (const k of [formatApiKey('0123456789ab', randomBytes(32)), 'nonsense', '', undefined, flipped, key + ' ', OPERATOR_KEY + 'x']) {
      assert.equal(registry.authenticate(k), undefined, String(k));
    }
  });

  it('authenticate() refuses a revoked key', () => {
    const { registry, key, record: r } = withKey();
    registry.merge({ ...r, revokedAt: '2026-12-01T11:00:00.000Z' });
    assert.equal(registry.authenticate(key), undefined);
  });

  it('a key minted for the account "operator" is an operator key', () => {
    const { registry, key } = withKey('operator');
    assert.equal(registry.authenticate(key)?.account, 'operator');
  });

  it('merge() is a union in which a revocation wins and is never undone, whatever the order', () => {
    const live = record();
    const revoked = { ...live, revokedAt: '2026-12-01T11:00:00.000Z' };
    const earlier = { ...live, revokedAt: '2026-12-01T10:30:00.000Z' };
    assert.equal(mergeRecord(undefined, live), live);
    assert.equal(mergeRecord(live, live), live, 'nothing new: the held record itself');
    assert.deepEqual(mergeRecord(live, revoked), revoked);
    assert.equal(mergeRecord(revoked, live), revoked);
    assert.deepEqual(mergeRecord(revoked, earlier).revokedAt, earlier.revokedAt);
    const registry = new ApiKeyRegistry([]);
    assert.equal(registry.merge(revoked), true);
    assert.equal(registry.merge(live), false);
    assert.equal(registry.get(live.keyId)!.revokedAt, revoked.revokedAt);
  });

  it('summaries() list config keys (operator) then account keys, never a key or a hash; filtered by account', () => {
    const { registry, record: a } = withKey('acme');
    const b = record({ account: 'globex', createdAt: '2026-12-02T10:00:00.000Z' });
    registry.merge(b);
    const all = registry.summaries();
    assert.deepEqual(all.map((s) => [s.keyId, s.account, s.source]), [[operatorKeyId(OPERATOR_KEY), 'operator', 'config'], [a.keyId, 'acme', 'api'], [b.keyId, 'globex', 'api']]);
    assert.ok(!JSON.stringify(all).includes(a.hash) && !JSON.stringify(all).includes('"hash"'));
    assert.deepEqual(registry.summaries('globex').map((s) => s.keyId), [b.keyId]);
    assert.deepEqual(registry.summaries('operator').map((s) => s.source), ['config']);
  });

  it('parseRecord() refuses records with a bad field and keeps only known fields', () => {
    const good = record();
    assert.deepEqual(parseRecord({ ...good, extra: 1 }), good);
    for (const bad of [{ ...good, keyId: 'x' }, { ...good, account: 'Acme' }, { ...good, hash: 'ab' }, { ...good, createdAt: 'yesterday' }, { ...good, revokedAt: 5 }, { ...good, label: 'a\nb' }, null, [], 'x']) {
      assert.equal(parseRecord(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe('runtime/api-keys FileKeyStore', () => {
  it('put() writes a 0600 file a new store loads back, leaving no temporary file', async () => {
    const file = tempFile();
    const r = record();
    await new FileKeyStore(file).put(r);
    assert.deepEqual(await new FileKeyStore(file).load(), [r]);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(join(file, '..')), ['api-keys.json']);
  });

  it('put() of a live copy after the revocation keeps the key revoked', async () => {
    const file = tempFile();
    const r = record();
    const store = new FileKeyStore(file);
    await store.put({ ...r, revokedAt: '2026-12-01T11:00:00.000Z' });
    await store.put(r);
    assert.equal((await new FileKeyStore(file).load())[0]!.revokedAt, '2026-12-01T11:00:00.000Z');
  });

  it('load() of a file that is not a registry throws naming the file (a gateway must not start believing no key exists)', async () => {
    const file = tempFile();
    writeFileSync(file, '{"version":1,"keys":[{"keyId":"nope"}]}');
    await assert.rejects(new FileKeyStore(file).load(), (err: Error) => err.message.includes(file) && /invalid record/.test(err.message));
    writeFileSync(file, '{"keys":');
    await assert.rejects(new FileKeyStore(file).load(), /not JSON/);
  });

  it('load() with no file answers no records', async () => {
    assert.deepEqual(await new FileKeyStore(tempFile()).load(), []);
  });
});

/** ApiKeys options for a spec, embedded unless `redis` is given. */
function options(file: string, extra: Partial<ApiKeysOptions> = {}): ApiKeysOptions {
  return { operatorKeys: [OPERATOR_KEY], file, logger: new CapturingLogger(), ...extra };
}

describe('runtime/api-keys ApiKeys (embedded: the file is the registry)', () => {
  it('create() answers the key once; it authenticates, and after revoke() it does not, also after a restart', async () => {
    const file = tempFile();
    const keys = new ApiKeys(options(file));
    await keys.start();
    const a = await keys.create({ account: 'acme', label: ' CI deploys ' });
    const b = await keys.create({ account: 'globex' });
    assert.equal(a.label, 'CI deploys');
    assert.equal(keys.authenticate(a.key)?.account, 'acme');
    const revoked = await keys.revoke(a.keyId);
    assert.equal(revoked.revoked, true);
    assert.ok(revoked.revokedAt);
    assert.equal(keys.authenticate(a.key), undefined);
    await keys.stop();
    const again = new ApiKeys(options(file));
    await again.start();
    assert.equal(again.authenticate(a.key), undefined);
    assert.equal(again.authenticate(b.key)?.account, 'globex');
    assert.deepEqual((await again.revoke(a.keyId)).revokedAt, revoked.revokedAt, 'a second revoke changes nothing');
    await again.stop();
  });

  it('create() refuses a missing or invalid account, a bad label and unknown fields with 400 naming each', async () => {
    const keys = new ApiKeys(options(tempFile()));
    await keys.start();
    const fieldsOf = async (p: Record<string, unknown>) => {
      try {
        await keys.create(p);
      } catch (err) {
        assert.ok(err instanceof ValidationFailedError);
        return Object.keys((err.data as { fields: object }).fields).sort();
      }
      assert.fail('create() accepted ' + JSON.stringify(p));
    };
    assert.deepEqual(await fieldsOf({}), ['account']);
    assert.deepEqual(await fieldsOf({ account: 'Acme Corp' }), ['account']);
    assert.deepEqual(await fieldsOf({ account: 'acme', label: 'x'.repeat(201) }), ['label']);
    assert.deepEqual(await fieldsOf({ account: 'acme', key: 'jk_mine', admin: true }), ['admin', 'key']);
    assert.deepEqual(keys.list().filter((s) => s.source === 'api'), [], 'nothing was created');
    await keys.stop();
  });

  it('revoke() answers 404 for an unknown key, 400 for a malformed ID and 409 for a key from config', async () => {
    const keys = new ApiKeys(options(tempFile()));
    await keys.start();
    await assert.rejects(keys.revoke('0123456789ab'), NotFoundError);
    await assert.rejects(keys.revoke('../etc'), ValidationFailedError);
    await assert.rejects(keys.revoke(operatorKeyId(OPERATOR_KEY)), StateConflictError);
    assert.equal(keys.authenticate(OPERATOR_KEY)?.account, 'operator');
    await keys.stop();
  });

  it('create() answers 503 and changes nothing when the registry cannot be written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jitcast-keys-'));
    // A directory where the file should be: every write fails.
    const file = join(dir, 'api-keys.json');
    const keys = new ApiKeys(options(file));
    await keys.start();
    const { mkdirSync } = await import('node:fs');
    mkdirSync(`${file}.${process.pid}.tmp`);
    await assert.rejects(keys.create({ account: 'acme' }), StorageUnavailableError);
    assert.deepEqual(keys.list().filter((s) => s.source === 'api'), []);
    await keys.stop();
  });
});

describe('runtime/api-keys in cluster mode (Redis, real)', () => {
  const ns = specNamespace('api-keys');
  const open: ApiKeys[] = [];
  const redisOf = (url = SPEC_REDIS_URL): RedisConnection => createRedis({ url, namespace: ns, name: 'api-keys', logger: new CapturingLogger() });
  after(async () => {
    for (const k of open) await k.stop();
    await purgeNamespace(SPEC_REDIS_URL, ns);
  });

  async function gateway(extra: Partial<ApiKeysOptions> = {}, file = tempFile()): Promise<ApiKeys> {
    const keys = new ApiKeys(options(file, { redis: redisOf(), reloadEveryMs: 60_000, ...extra }));
    open.push(keys);
    await keys.start();
    return keys;
  }

  it('RedisKeyStore.put() of a live copy after the revocation keeps the key revoked (the Lua merge)', async () => {
    const conn = await connectRedis(SPEC_REDIS_URL, ns);
    try {
      const store = new RedisKeyStore(conn);
      const r = record();
      await store.put({ ...r, revokedAt: '2026-12-01T11:00:00.000Z' });
      await store.put(r);
      assert.equal((await store.load()).find((x) => x.keyId === r.keyId)!.revokedAt, '2026-12-01T11:00:00.000Z');
    } finally {
      await conn.close();
    }
  });

  it('a key created on gateway A is accepted by gateway B as soon as the broadcast arrives; revoked on A, B refuses it', async () => {
    let b: ApiKeys | undefined;
    const a = await gateway({ publish: async (r) => b!.heard(structuredClone(r)) });
    b = await gateway();
    const created = await a.create({ account: 'acme' });
    assert.equal(b.authenticate(created.key)?.account, 'acme');
    await a.revoke(created.keyId);
    assert.equal(b.authenticate(created.key), undefined);
  });

  it('a gateway that missed the broadcast takes the change in on its next reload from Redis', async () => {
    const a = await gateway();
    const b = await gateway();
    const created = await a.create({ account: 'initech' });
    assert.equal(b.authenticate(created.key), undefined, 'no broadcast wired: B does not know it yet');
    assert.equal(await b.reload(), 1);
    assert.equal(b.authenticate(created.key)?.account, 'initech');
    await a.revoke(created.keyId);
    await b.reload();
    assert.equal(b.authenticate(created.key), undefined);
  });

  it('revoke() on a gateway that never heard of the key finds it in Redis', async () => {
    const a = await gateway();
    const b = await gateway();
    const created = await a.create({ account: 'acme' });
    assert.equal((await b.revoke(created.keyId)).revoked, true);
  });

  it('a gateway starts from its local copy while Redis is unreachable, and Redis that lost everything gets the keys back', async () => {
    const file = tempFile();
    const a = await gateway({}, file);
    const created = await a.create({ account: 'umbrella' });
    await a.stop(); // waits for its local copy to be written
    // Redis unreachable: a port nothing listens on.
    const down = new ApiKeys(options(file, { redis: redisOf('redis://127.0.0.1:1'), reloadEveryMs: 60_000 }));
    open.push(down);
    await down.start(300);
    assert.equal(down.authenticate(created.key)?.account, 'umbrella');
    await down.stop();
    // Redis emptied: the next gateway to start from the copy writes the keys back.
    await purgeNamespace(SPEC_REDIS_URL, ns);
    await gateway({}, file);
    const fresh = await gateway();
    assert.equal(fresh.authenticate(created.key)?.account, 'umbrella');
  });
});

describe('runtime/api-keys ApiKeyMirror (PostgreSQL, real)', () => {
  let db: Db;
  before(async () => {
    db = await openPostgres(PG_URL);
  });
  after(() => db.close());

  const shared = (): Db => ({ query: (s, p) => db.query(s, p), close: async () => {} });
  const rowsOf = (keyIds: string[]) =>
    db.query<{ key_id: string; account: string; label: string | null; revoked_at: Date | null }>('SELECT key_id, account, label, revoked_at FROM api_keys WHERE key_id = ANY($1) ORDER BY key_id', [keyIds]);

  it('enqueue() lands accounts and keys (no hash) and a later revocation; a stale live copy never undoes it', async () => {
    const account = `spec-${randomBytes(4).toString('hex')}`;
    const r1 = record({ account });
    const r2 = record({ account, label: undefined, createdAt: '2026-11-30T10:00:00.000Z' });
    const mirror = new ApiKeyMirror(async () => shared(), undefined, { minBackoffMs: 10, maxBackoffMs: 50 });
    mirror.enqueue(r1, r2);
    await mirror.drain(10_000);
    const acc = await db.query<{ created_at: Date }>('SELECT created_at FROM accounts WHERE account = $1', [account]);
    assert.equal(acc[0]!.created_at.toISOString(), '2026-11-30T10:00:00.000Z', 'an account is as old as its first key');
    mirror.enqueue({ ...r1, revokedAt: '2026-12-01T12:00:00.000Z' });
    await mirror.drain(10_000);
    mirror.enqueue(r1);
    await mirror.drain(10_000);
    const rows = await rowsOf([r1.keyId, r2.keyId]);
    const byId = new Map(rows.map((r) => [r.key_id, r]));
    assert.equal(byId.get(r1.keyId)!.revoked_at!.toISOString(), '2026-12-01T12:00:00.000Z');
    assert.equal(byId.get(r1.keyId)!.label, 'ci');
    assert.equal(byId.get(r2.keyId)!.revoked_at, null);
    const cols = await db.query<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'api_keys' AND table_schema = current_schema()`);
    assert.ok(!cols.some((c) => /hash|secret/.test(c.column_name)), 'the DB never holds a key hash');
    await mirror.close();
  });

  it('a write that fails (DB away) is retried until it lands', async () => {
    let opens = 0;
    const mirror = new ApiKeyMirror(async () => {
      if (++opens <= 2) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
      return shared();
    }, undefined, { minBackoffMs: 10, maxBackoffMs: 50 });
    const r = record({ account: `spec-${randomBytes(4).toString('hex')}` });
    mirror.enqueue(r);
    await mirror.drain(10_000);
    assert.equal(opens, 3);
    assert.equal((await rowsOf([r.keyId])).length, 1);
    await mirror.close();
  });

  it('SinkKeyMirror writes the registry file and later broadcasts through a reporting writer\'s database (the PGlite path)', async () => {
    const file = tempFile();
    const account = `spec-${randomBytes(4).toString('hex')}`;
    const stored = record({ account });
    await new FileKeyStore(file).put(stored);
    const writer = new ReportingWriter(() => openPostgres(PG_URL));
    const mirror = new SinkKeyMirror((fn) => writer.withDb(fn), file, new CapturingLogger(), { minBackoffMs: 10, maxBackoffMs: 50 });
    await mirror.start();
    const later = record({ account, createdAt: '2026-12-02T10:00:00.000Z' });
    mirror.heard({ ...later, revokedAt: '2026-12-02T11:00:00.000Z' });
    mirror.heard({ keyId: 'junk' });
    await mirror.drain(10_000);
    const rows = await rowsOf([stored.keyId, later.keyId]);
    assert.deepEqual(rows.map((r) => [r.key_id, r.account, r.revoked_at?.toISOString() ?? null]).sort(), [
      [stored.keyId, account, null],
      [later.keyId, account, '2026-12-02T11:00:00.000Z'],
    ].sort());
    await mirror.close();
    await writer.close();
  });

  it('migration 2 gives events an account column that defaults to operator', async () => {
    const cols = await db.query<{ column_name: string; column_default: string }>(`SELECT column_name, column_default FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'account' AND table_schema = current_schema()`);
    assert.equal(cols.length, 1);
    assert.match(cols[0]!.column_default, /operator/);
  });
});
