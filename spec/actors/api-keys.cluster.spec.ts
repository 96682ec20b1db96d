/**
 * API keys in cluster mode against the machine's real NATS, Redis and PostgreSQL (a namespace of
 * its own; Redis keys deleted afterwards): two gateway nodes share the registry; a key made on one
 * is taken by the other as soon as the broadcast arrives, a key revoked on one is refused by the
 * other from that moment, and the reporting DB gets the account and key rows.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceBroker } from 'moleculer';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS } from '../../runtime/contracts.ts';
import { openPostgres, type Db } from '../../runtime/db.ts';
import { testConfig } from '../support/config.ts';
import { waitFor } from '../support/event-plane.ts';
import { SPEC_NATS_URL, SPEC_REDIS_URL, purgeNamespace, specNamespace } from '../support/redis.ts';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const OPERATOR = 'spec-cluster-operator-key-0123';
const ns = specNamespace('keys');

interface Gateway {
  broker: ServiceBroker;
  base: string;
  /** Key changes this node heard, in order (a listener beside the gateway). */
  heard: Array<{ keyId: string; revokedAt?: string }>;
}

async function startGateway(nodeId: string, port: number): Promise<Gateway> {
  const config = testConfig({ nodeId, namespace: ns, natsUrl: SPEC_NATS_URL, redisUrl: SPEC_REDIS_URL, dbUrl: PG_URL, httpPort: String(port), apiKeys: OPERATOR, roles: 'gateway' });
  const broker = createBroker(config);
  const heard: Gateway['heard'] = [];
  broker.createService(createGatewayService(config));
  broker.createService({
    name: 'spec-listener',
    events: { [EVENTS.apiKeyChanged]: { handler: (ctx: any) => void heard.push(ctx.params) } },
  });
  await broker.start();
  return { broker, base: `http://127.0.0.1:${port}`, heard };
}

async function status(gw: Gateway, key: string, method = 'GET', path = '/api/cluster', body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(gw.base + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

describe('API keys across gateways (NATS, Redis, PostgreSQL)', () => {
  let one: Gateway;
  let two: Gateway;
  let db: Db;

  before(async () => {
    [one, two] = await Promise.all([startGateway('keys-gw-1', 18632), startGateway('keys-gw-2', 18633)]);
    await waitFor('the gateways see each other', () => one.broker.registry.nodes.get('keys-gw-2')?.available && two.broker.registry.nodes.get('keys-gw-1')?.available);
    db = await openPostgres(PG_URL);
  });
  after(async () => {
    await Promise.all([one?.broker.stop(), two?.broker.stop()]);
    await db?.close();
    await purgeNamespace(SPEC_REDIS_URL, ns);
  });

  it('a key made on gateway 1 works on gateway 2 once its broadcast arrives; revoked on gateway 2, gateway 1 refuses it from then on', async () => {
    const made = await status(one, OPERATOR, 'POST', '/api/keys', { account: 'acme', label: 'cluster spec' });
    assert.equal(made.status, 201, JSON.stringify(made.json));
    const { key, keyId } = made.json;
    await waitFor('gateway 2 hears of the new key', () => two.heard.some((r) => r.keyId === keyId && !r.revokedAt));
    // An account key: authenticated (not 401), and refused the operator's cluster view (403).
    assert.equal((await status(two, key)).status, 403);

    const t0 = performance.now();
    const revoked = await status(two, OPERATOR, 'DELETE', `/api/keys/${keyId}`);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.json));
    assert.equal((await status(two, key)).status, 401, 'the revoking gateway refuses it at once');
    await waitFor('gateway 1 hears of the revocation', () => one.heard.some((r) => r.keyId === keyId && r.revokedAt));
    // The gateway took the broadcast in as the listener beside it did (same delivery): no reload involved.
    assert.equal((await status(one, key)).status, 401);
    console.log(`# revoked on gateway 2, refused on gateway 1 after ${(performance.now() - t0).toFixed(1)} ms`);
  });

  it('the reporting DB gets the account and the key (never the key itself), revoked', async () => {
    const made = await status(one, OPERATOR, 'POST', '/api/keys', { account: 'globex' });
    const { keyId, key } = made.json;
    await status(one, OPERATOR, 'DELETE', `/api/keys/${keyId}`);
    const row = await waitFor('api_keys row revoked', async () => {
      const rows = await db.query<{ account: string; revoked_at: Date | null }>('SELECT account, revoked_at FROM api_keys WHERE key_id = $1', [keyId]);
      return rows[0]?.revoked_at ? rows[0] : undefined;
    });
    assert.equal(row.account, 'globex');
    const acc = await db.query('SELECT 1 FROM accounts WHERE account = $1', ['globex']);
    assert.equal(acc.length, 1);
    const [whole] = await db.query<{ row: string }>('SELECT row_to_json(k)::text AS row FROM api_keys k WHERE key_id = $1', [keyId]);
    assert.ok(!whole!.row.includes(key.slice(16)), `the row holds no part of the secret: ${whole!.row}`);
  });
});
