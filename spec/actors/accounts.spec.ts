/**
 * Account isolation (issue 5 item 6), end to end on the in-process broker: the real gateway,
 * reservation, event, content-storage and monitoring actors, real HTTP, keys made through
 * `/api/keys` and through the `jitcast keys` command line.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import { formatApiKey } from '../../codecs/api-key.ts';
import { createArchiveCoordinatorService } from '../../actors/archive-coordinator.service.ts';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createEventService } from '../../actors/event.service.ts';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { createMonitoringService } from '../../actors/monitoring.service.ts';
import { createReservationService } from '../../actors/reservation.service.ts';
import { createUsageService } from '../../actors/usage.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import { openPostgres, type Db } from '../../runtime/db.ts';
import type { JoinResult } from '../../runtime/contracts.ts';
import { testConfig } from '../support/config.ts';
import { FakeReporting, sampleInfo, waitFor } from '../support/event-plane.ts';
import { apiRequest, type HttpAnswer } from '../support/http.ts';

const PORT = 18631;
const BASE = `http://127.0.0.1:${PORT}`;
const config = testConfig({ httpPort: String(PORT), archiveTimeoutS: '1' });
const OPERATOR = config.apiKeys[0]!;
const ROOT = join(import.meta.dirname, '..', '..');
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** The event actor's reporting sink, with a database (real PostgreSQL) for the accounts and keys mirror. */
class SinkWithDb extends FakeReporting {
  constructor(private readonly db: () => Db) {
    super();
  }
  withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    return fn(this.db());
  }
}

const api = (key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> => apiRequest(BASE, key, method, path, body, { headers });

/** Runs `node bin/jitcast.js …` against the spec's gateway with `key` as JITCAST_API_KEYS. */
async function cli(key: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const child = spawn(process.execPath, ['bin/jitcast.js', ...args, '--url', BASE], {
    cwd: ROOT,
    env: { ...process.env, JITCAST_API_KEYS: key, JITCAST_DATA_DIR: join(config.dataDir, 'cli'), JITCAST_LOG_LEVEL: 'warn' },
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const [code] = (await once(child, 'exit')) as [number];
  return { code, out };
}

function notFound(r: HttpAnswer, eventId: string, what: string): void {
  assert.equal(r.status, 404, `${what}: ${r.text}`);
  assert.deepEqual(r.json, { error: { code: 'NOT_FOUND', message: `no event ${eventId}` } }, `${what} answers what an unknown event does`);
}

describe('accounts: API keys per account and account isolation', () => {
  let broker: ServiceBroker;
  let keyA: { key: string; keyId: string };
  let keyB: { key: string; keyId: string };
  let eventA: string;
  let eventB: string;
  let db: Db;

  before(async () => {
    db = await openPostgres(PG_URL);
    broker = createBroker(config);
    broker.createService(createContentStorageService(config));
    broker.createService(createMonitoringService(config));
    broker.createService(createEventService(config, { reporting: () => new SinkWithDb(() => db) }));
    broker.createService(createArchiveCoordinatorService(config));
    broker.createService(createReservationService(config));
    // The usage report (its own actor) with a store that holds nothing: only its access check matters here.
    broker.createService(createUsageService(config, { store: () => ({ enqueue() {}, read: async () => undefined, depth: () => 0, close: async () => {} }) }));
    broker.createService(createGatewayService(config));
    await broker.start();
  });
  after(async () => {
    await broker.stop();
    await db.close();
  });

  it('POST /api/keys with the operator key answers 201 with a key for each account, shown this once', async () => {
    const a = await api(OPERATOR, 'POST', '/api/keys', { account: 'acme', label: 'Acme CI' });
    const b = await api(OPERATOR, 'POST', '/api/keys', { account: 'globex' });
    assert.equal(a.status, 201, a.text);
    assert.equal(b.status, 201, b.text);
    assert.match(a.json.key, /^jk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual({ account: a.json.account, label: a.json.label, revoked: a.json.revoked, keyId: a.json.key.slice(3, 15) }, { account: 'acme', label: 'Acme CI', revoked: false, keyId: a.json.keyId });
    keyA = a.json;
    keyB = b.json;
  });

  it('GET /api/keys lists keys without the keys; ?account= keeps one account; XML lists <apiKeys><apiKey>', async () => {
    const all = await api(OPERATOR, 'GET', '/api/keys');
    assert.equal(all.status, 200, all.text);
    assert.ok(!all.text.includes(keyA.key) && !all.text.includes(keyB.key) && !all.text.includes('hash'), 'no key and no hash in the list');
    assert.deepEqual(all.json.filter((k: any) => k.source === 'api').map((k: any) => [k.keyId, k.account]), [[keyA.keyId, 'acme'], [keyB.keyId, 'globex']]);
    assert.ok(all.json.some((k: any) => k.source === 'config' && k.account === 'operator'), 'the operator key from config is listed');
    const acme = await api(OPERATOR, 'GET', '/api/keys?account=acme');
    assert.deepEqual(acme.json.map((k: any) => k.keyId), [keyA.keyId]);
    const xml = await api(OPERATOR, 'GET', '/api/keys?account=globex', undefined, { accept: 'application/xml' });
    assert.match(xml.text, new RegExp(`<apiKeys>\\s*<apiKey>[\\s\\S]*<keyId>${keyB.keyId}</keyId>`));
  });

  it('an event belongs to the account that reserved it: in the answer and in event-info.xml', async () => {
    const a = await api(keyA.key, 'POST', '/api/events', { title: 'Acme town hall' });
    assert.equal(a.status, 201, a.text);
    assert.equal(a.json.account, 'acme');
    eventA = a.json.eventId;
    const b = await api(keyB.key, 'POST', '/api/events', { title: 'Globex earnings' });
    assert.equal(b.status, 201, b.text);
    eventB = b.json.eventId;
    const xml = readFileSync(join(config.dataDir, 'storage', config.storageCenters[0]!, eventA, 'event-info.xml'), 'utf8');
    assert.match(xml, /<account>acme<\/account>/);
  });

  it("account B cannot see account A's event: GET answers the 404 of an unknown event, and the list leaves it out", async () => {
    notFound(await api(keyB.key, 'GET', `/api/events/${eventA}`), eventA, 'GET');
    assert.equal((await api(keyA.key, 'GET', `/api/events/${eventA}`)).status, 200);
    const listB = await api(keyB.key, 'GET', '/api/events');
    assert.deepEqual(listB.json.map((e: any) => e.eventId), [eventB]);
    const listA = await api(keyA.key, 'GET', '/api/events');
    assert.deepEqual(listA.json.map((e: any) => e.eventId), [eventA]);
  });

  it("account B cannot change or report on account A's event: PATCH, DELETE, end, archive retry and report answer 404 and change nothing", async () => {
    notFound(await api(keyB.key, 'PATCH', `/api/events/${eventA}`, { title: 'Hijacked' }), eventA, 'PATCH');
    notFound(await api(keyB.key, 'DELETE', `/api/events/${eventA}`), eventA, 'DELETE');
    notFound(await api(keyB.key, 'POST', `/api/events/${eventA}/end`), eventA, 'end');
    notFound(await api(keyB.key, 'POST', `/api/events/${eventA}/archive/retry`), eventA, 'archive retry');
    notFound(await api(keyB.key, 'GET', `/api/events/${eventA}/report`), eventA, 'usage report');
    assert.equal((await api(keyA.key, 'GET', `/api/events/${eventA}/report`)).status, 200, 'its own account reads the report');
    const a = await api(keyA.key, 'GET', `/api/events/${eventA}`);
    assert.deepEqual({ title: a.json.title, status: a.json.status }, { title: 'Acme town hall', status: 'reserved' });
  });

  it("ending another account's live event answers 404, not 409; its own account ends it", async () => {
    const joined = await broker.call<JoinResult, object>('event.join', { eventId: eventA, nodeId: config.nodeId, channelId: 'ch-acme', port: 10002 });
    assert.equal(joined.ok, true);
    notFound(await api(keyB.key, 'POST', `/api/events/${eventA}/end`), eventA, 'end of a live event');
    const ended = await api(keyA.key, 'POST', `/api/events/${eventA}/end`);
    assert.equal(ended.status, 200, ended.text);
    assert.equal(ended.json.status, 'ended');
  });

  it("the operator sees every account's events and may change them", async () => {
    const list = await api(OPERATOR, 'GET', '/api/events');
    assert.deepEqual(list.json.map((e: any) => e.eventId).sort(), [eventA, eventB].sort());
    assert.equal((await api(OPERATOR, 'GET', `/api/events/${eventB}`)).json.account, 'globex');
    const patched = await api(OPERATOR, 'PATCH', `/api/events/${eventB}`, { title: 'Globex earnings Q4' });
    assert.equal(patched.status, 200, patched.text);
    assert.equal((await api(keyB.key, 'GET', `/api/events/${eventB}`)).json.title, 'Globex earnings Q4');
    assert.equal((await api(keyB.key, 'DELETE', `/api/events/${eventB}`)).json.status, 'cancelled', 'its own account cancels it');
  });

  it('an event reserved before accounts existed (no <account>) is the operator\'s: accounts get 404, the operator sees it', async () => {
    const old = sampleInfo({ eventId: '87654323', title: 'From before accounts' });
    assert.equal(old.account, undefined);
    await broker.call('content-storage.putEventInfo', { info: old });
    await broker.call('event.register', { info: old });
    notFound(await api(keyA.key, 'GET', `/api/events/${old.eventId}`), old.eventId, 'GET of an old event');
    assert.ok(!(await api(keyA.key, 'GET', '/api/events')).json.some((e: any) => e.eventId === old.eventId));
    const seen = await api(OPERATOR, 'GET', `/api/events/${old.eventId}`);
    assert.equal(seen.status, 200, seen.text);
    assert.equal(seen.json.title, 'From before accounts');
  });

  it('an account key cannot manage keys or see the cluster: 403, and nothing changes', async () => {
    for (const [method, path, body] of [['POST', '/api/keys', { account: 'acme' }], ['GET', '/api/keys'], ['DELETE', `/api/keys/${keyB.keyId}`], ['GET', '/api/cluster']] as const) {
      const r = await api(keyA.key, method, path, body);
      assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
      assert.equal(r.json.error.code, 'FORBIDDEN');
    }
    assert.equal((await api(keyB.key, 'GET', '/api/events')).status, 200, 'B was not revoked by A');
    const keys = await api(OPERATOR, 'GET', '/api/keys');
    assert.equal(keys.json.filter((k: any) => k.source === 'api').length, 2, 'A created no key');
  });

  it('a forged key (a valid key ID with another secret) and a key with no ID answer 401', async () => {
    const forged = formatApiKey(keyA.keyId, Buffer.alloc(32, 7));
    const r = await api(forged, 'GET', '/api/events');
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'UNAUTHORIZED');
    assert.equal((await api(keyA.key.slice(0, 16), 'GET', '/api/events')).status, 401);
  });

  it('DELETE /api/keys/:keyId revokes: the next request with that key answers 401, the other account is untouched', async () => {
    const r = await api(OPERATOR, 'DELETE', `/api/keys/${keyB.keyId}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.revoked, true);
    assert.equal((await api(keyB.key, 'GET', '/api/events')).status, 401);
    assert.equal((await api(keyB.key, 'POST', '/api/events', { title: 'after revoke' })).status, 401);
    assert.equal((await api(keyA.key, 'GET', '/api/events')).status, 200);
    assert.equal((await api(OPERATOR, 'GET', '/api/keys?account=globex')).json[0].revoked, true);
  });

  it('the reporting DB gets the accounts and keys through the event actor\'s sink, the revocation too (embedded path)', async () => {
    const rows = await waitFor('api_keys rows of both accounts, globex revoked', async () => {
      const r = await db.query<{ key_id: string; account: string; revoked_at: Date | null }>('SELECT key_id, account, revoked_at FROM api_keys WHERE key_id = ANY($1) ORDER BY account', [[keyA.keyId, keyB.keyId]]);
      return r.length === 2 && r[1]!.revoked_at ? r : undefined;
    });
    assert.deepEqual(rows.map((r) => [r.key_id, r.account, r.revoked_at !== null]), [[keyA.keyId, 'acme', false], [keyB.keyId, 'globex', true]]);
  });

  it('POST /api/keys refuses a bad account name with 400 naming the field', async () => {
    const r = await api(OPERATOR, 'POST', '/api/keys', { account: 'Not Valid' });
    assert.equal(r.status, 400);
    assert.ok(r.json.error.fields.account);
  });

  it('jitcast keys create / list / revoke drive the same API with the operator key', async () => {
    const created = await cli(OPERATOR, 'keys', 'create', '--account', 'initech', '--label', 'from the CLI', '--json');
    assert.equal(created.code, 0, created.out);
    const k = JSON.parse(created.out);
    assert.equal(k.account, 'initech');
    assert.equal((await api(k.key, 'POST', '/api/events', { title: 'Initech all-hands' })).status, 201, 'the printed key works');

    const listed = await cli(OPERATOR, 'keys', 'list', '--account', 'initech');
    assert.equal(listed.code, 0, listed.out);
    assert.match(listed.out, new RegExp(`${k.keyId}\\s+initech\\s+from the CLI`));
    assert.ok(!listed.out.includes(k.key), 'the list never shows a key');

    const revoked = await cli(OPERATOR, 'keys', 'revoke', k.keyId);
    assert.equal(revoked.code, 0, revoked.out);
    assert.match(revoked.out, new RegExp(`${k.keyId} of account initech is revoked`));
    assert.equal((await api(k.key, 'GET', '/api/events')).status, 401);
  });
});
