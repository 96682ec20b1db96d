import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import { createBroker } from '../../runtime/broker.ts';
import { testConfig } from '../support/config.ts';
import { createGatewayService } from '../../actors/gateway.service.ts';
import type { EventInfo } from '../../runtime/contracts.ts';
import { ForbiddenError } from '../../runtime/errors.ts';
import { parseXml } from '../../runtime/http-body.ts';
import { fakeContentStorage, fakeEventService, startGatewayBroker } from '../support/gateway-fakes.ts';
import { httpRequest, type HttpOptions } from '../support/http.ts';

const PORT = 18082;
const BASE = `http://127.0.0.1:${PORT}`;
const KEY = 'spec-api-key-0123456789';
const AUTH = { authorization: `Bearer ${KEY}` };
const config = testConfig({ httpPort: String(PORT) });

const events = new Map<string, EventInfo>();
let listFails = false;
const attendeeCalls: Array<{ action: string; params: any; eventPassword?: unknown }> = [];

const fakeEvent = fakeEventService(
  events,
  (e) => ({ streams: [{ streamId: `${e.eventId}-n1-10000-abc`, nodeId: 'n1', dataCenter: 'dc1', port: 10000, format: 'hls', url: '/s/x/index.m3u8', startedAt: e.createdAt }], callers: 1 }),
  {
    list() {
      if (listFails) throw new Error('connect ECONNREFUSED postgres://admin:hunter2@db');
      return [...events.values()];
    },
  },
);

/** Stands in for attendee-access: echoes what it was called with, sets meta as the real one does. */
function attendeeAction(action: string, type: string) {
  return (ctx: Context<any, any>) => {
    attendeeCalls.push({ action, params: { ...ctx.params }, eventPassword: ctx.meta.eventPassword });
    if (ctx.params.token === 'forbidden') throw new ForbiddenError('this attendee link is not valid');
    ctx.meta.$responseType = type;
    ctx.meta.$responseHeaders = { 'Cache-Control': 'no-cache' };
    return `${action} ${JSON.stringify(ctx.params)}`;
  };
}

const fakeAttendeeAccess: ServiceSchema = {
  name: 'attendee-access',
  actions: {
    page: attendeeAction('page', 'text/html; charset=utf-8'),
    status: attendeeAction('status', 'application/json; charset=utf-8'),
    live: attendeeAction('live', 'application/vnd.apple.mpegurl'),
    archive: attendeeAction('archive', 'application/vnd.apple.mpegurl'),
    liveFile: attendeeAction('liveFile', 'video/mp2t'),
    archiveFile: attendeeAction('archiveFile', 'video/mp2t'),
  },
};

const call = (method: string, path: string, init: HttpOptions = {}) => httpRequest(method, BASE + path, init);

const postJson = (body: string | Buffer, headers: Record<string, string> = {}) =>
  call('POST', '/api/events', { body, headers: { ...AUTH, 'content-type': 'application/json', ...headers } });
const postXml = (body: string, headers: Record<string, string> = {}) =>
  call('POST', '/api/events', { body, headers: { ...AUTH, 'content-type': 'application/xml', ...headers } });

describe('actors/gateway', () => {
  let broker: ServiceBroker;
  before(async () => {
    broker = await startGatewayBroker(config, [fakeContentStorage, fakeEvent, fakeAttendeeAccess]);
  });
  after(() => broker.stop());
  beforeEach(() => {
    attendeeCalls.length = 0;
    listFails = false;
  });

  describe('/api authentication', () => {
    it('GET /api/events without Authorization answers 401 with WWW-Authenticate: Bearer', async () => {
      const r = await call('GET', '/api/events');
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal(r.json.error.code, 'UNAUTHORIZED');
    });

    it('GET /api/events with a wrong key answers 401', async () => {
      const r = await call('GET', '/api/events', { headers: { authorization: 'Bearer spec-api-key-0123456780' } });
      assert.equal(r.status, 401);
    });

    it('GET /api/events with the key in Basic auth answers 401', async () => {
      const r = await call('GET', '/api/events', { headers: { authorization: `Basic ${Buffer.from(KEY).toString('base64')}` } });
      assert.equal(r.status, 401);
    });

    it('POST /api/events without a key answers 401 before looking at the body', async () => {
      const r = await call('POST', '/api/events', { body: 'not json', headers: { 'content-type': 'text/plain' } });
      assert.equal(r.status, 401);
    });

    it('GET /api/nothing-here with the key answers 404 JSON', async () => {
      const r = await call('GET', '/api/nothing-here', { headers: AUTH });
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'NOT_FOUND');
    });
  });

  describe('/api bodies', () => {
    it('POST /api/events with malformed JSON answers 400 MALFORMED_BODY naming the line', async () => {
      const r = await postJson('{"title": "x",\n oops}');
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, 'MALFORMED_BODY');
      assert.match(r.json.error.message, /JSON.*line 2/);
    });

    it('POST /api/events with malformed XML answers 400 MALFORMED_BODY with the position', async () => {
      const r = await postXml('<event><title>x</event>', { accept: 'application/json' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, 'MALFORMED_BODY');
      assert.match(r.json.error.message, /XML.*line 1/);
    });

    it('POST /api/events with a DOCTYPE entity bomb answers 400 saying DOCTYPE is not accepted', async () => {
      const bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><event><title>&lol2;</title></event>';
      const r = await postXml(bomb, { accept: 'application/json' });
      assert.equal(r.status, 400);
      assert.match(r.json.error.message, /DOCTYPE> declarations are not accepted/);
    });

    it('POST /api/events with an external entity answers 400', async () => {
      const xxe = '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><event><title>&x;</title></event>';
      const r = await postXml(xxe, { accept: 'application/json' });
      assert.equal(r.status, 400);
      assert.doesNotMatch(r.text, /root:/);
    });

    it('POST /api/events answers 413 for a 2 MB body and stays up', async () => {
      const big = Buffer.alloc(2 * 1024 * 1024, 0x20);
      const r = await postJson(big);
      assert.equal(r.status, 413);
      assert.equal(r.json.error.code, 'PAYLOAD_TOO_LARGE');
      const next = await postJson(JSON.stringify({ title: 'after the big one' }));
      assert.equal(next.status, 201, next.text);
    });

    it('POST /api/events answers 413 for a 2 MB chunked body without Content-Length', async () => {
      const body = new ReadableStream({
        start(c) {
          for (let i = 0; i < 32; i++) c.enqueue(new Uint8Array(65536).fill(0x20));
          c.close();
        },
      });
      const res = await fetch(BASE + '/api/events', { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit);
      assert.equal(res.status, 413);
      await res.text();
      assert.equal((await call('GET', '/healthz')).status, 200);
    });

    it('POST /api/events with text/plain answers 415', async () => {
      const r = await call('POST', '/api/events', { body: 'title=x', headers: { ...AUTH, 'content-type': 'text/plain' } });
      assert.equal(r.status, 415);
      assert.equal(r.json.error.code, 'UNSUPPORTED_MEDIA_TYPE');
    });

    it('POST /api/events with a JSON array answers 400', async () => {
      const r = await postJson('[{"title":"x"}]');
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, 'VALIDATION_FAILED');
    });
  });

  describe('/api answers', () => {
    it('POST /api/events with XML in and no Accept answers 201 in XML', async () => {
      const r = await postXml('<event><title>XML in</title><archiveDays>12</archiveDays></event>');
      assert.equal(r.status, 201, r.text);
      assert.match(r.headers.get('content-type') ?? '', /^application\/xml/);
      const v = parseXml(r.text) as Record<string, unknown>;
      assert.equal(v.title, 'XML in');
      assert.equal(v.status, 'reserved');
      assert.match(String(v.pin), /^\d{6}$/);
    });

    it('GET /api/events/:eventId with Accept: application/xml answers XML with <streams><stream>', async () => {
      const created = await postJson(JSON.stringify({ title: 'for XML' }));
      const r = await call('GET', `/api/events/${created.json.eventId}`, { headers: { ...AUTH, accept: 'application/xml' } });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^application\/xml/);
      assert.match(r.text, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<event>\n  <eventId>\d{8}<\/eventId>/);
      assert.match(r.text, /<streams>\n\s+<stream>\n\s+<streamId>/);
    });

    it('GET /api/events with Accept: application/xml answers <events><event>…', async () => {
      await postJson(JSON.stringify({ title: 'listed' }));
      const r = await call('GET', '/api/events', { headers: { ...AUTH, accept: 'application/xml' } });
      assert.equal(r.status, 200);
      assert.match(r.text, /<events>\n  <event>/);
    });

    it('POST /api/events invalid with Accept: application/xml answers an XML error with <field name>', async () => {
      const r = await postJson(JSON.stringify({ title: '' }), { accept: 'application/xml' });
      assert.equal(r.status, 400);
      assert.match(r.text, /<error>\n  <code>VALIDATION_FAILED<\/code>/);
      assert.match(r.text, /<field name="title">/);
    });

    it('GET /api/events/:eventId with a malformed ID answers 400 naming eventId', async () => {
      const r = await call('GET', '/api/events/12345670', { headers: AUTH });
      assert.equal(r.status, 400);
      assert.ok(r.json.error.fields.eventId);
    });

    it('GET /api/events/:eventId for an unknown event answers 404', async () => {
      const r = await call('GET', '/api/events/12345674', { headers: AUTH });
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'NOT_FOUND');
    });

    it('GET /api/events when an actor fails unexpectedly answers 500 with a generic message', async () => {
      listFails = true;
      const r = await call('GET', '/api/events', { headers: AUTH });
      assert.equal(r.status, 500);
      assert.deepEqual(r.json, { error: { code: 'INTERNAL_ERROR', message: 'internal error' } });
      assert.doesNotMatch(r.text, /hunter2/);
    });

    it('API answers carry Cache-Control: no-store (they hold PINs)', async () => {
      const r = await postJson(JSON.stringify({ title: 'cache' }));
      assert.equal(r.headers.get('cache-control'), 'no-store');
    });

    it('GET /api/cluster answers the cluster status with this node in it', async () => {
      const r = await call('GET', '/api/cluster', { headers: AUTH });
      assert.equal(r.status, 200);
      assert.ok(r.json.nodes.some((n: { id: string }) => n.id === config.nodeId));
      assert.ok(Array.isArray(r.json.voiceServers) && Array.isArray(r.json.streams));
    });
  });

  describe('attendee routes, static files, health', () => {
    const routes: Array<[string, string, Record<string, string>]> = [
      ['/e/tok123', 'page', { token: 'tok123' }],
      ['/e/tok123/status.json', 'status', { token: 'tok123' }],
      ['/e/tok123/live.m3u8', 'live', { token: 'tok123' }],
      ['/e/tok123/archive.m3u8', 'archive', { token: 'tok123' }],
      ['/s/12345674-n1-10000-abc/seg_00001.ts?a=code1', 'liveFile', { streamId: '12345674-n1-10000-abc', file: 'seg_00001.ts', a: 'code1' }],
      ['/a/12345674-n1-10000-abc/index.m3u8?a=code2', 'archiveFile', { streamId: '12345674-n1-10000-abc', file: 'index.m3u8', a: 'code2' }],
    ];
    for (const [path, action, params] of routes) {
      it(`GET ${path} calls attendee-access.${action} with ${Object.keys(params).join(', ')} and no API key`, async () => {
        const r = await call('GET', path + (path.includes('?') ? '&' : '?') + 'junk=1');
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(attendeeCalls.map((c) => [c.action, c.params]), [[action, params]]);
        assert.ok(r.text.startsWith(`${action} `), r.text);
        assert.deepEqual(JSON.parse(r.text.slice(action.length + 1)), params);
      });
    }

    it('GET /e/:token answers with the Content-Type and headers the attendee action set', async () => {
      const r = await call('GET', '/e/tok123');
      assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.equal(r.headers.get('cache-control'), 'no-cache');
    });

    it('GET /e/:token/status.json passes X-Event-Password on as ctx.meta.eventPassword', async () => {
      await call('GET', '/e/tok123/status.json', { headers: { 'x-event-password': 'open sesame' } });
      assert.equal(attendeeCalls[0]!.eventPassword, 'open sesame');
    });

    it('GET /e/:token answers 403 JSON when the attendee action refuses the token', async () => {
      const r = await call('GET', '/e/forbidden/live.m3u8');
      assert.equal(r.status, 403);
      assert.equal(r.json.error.code, 'FORBIDDEN');
    });

    it('GET /vendor/hls.min.js answers the hls.js build with a long cache lifetime', async () => {
      const r = await fetch(BASE + '/vendor/hls.min.js');
      assert.equal(r.status, 200);
      assert.match(r.headers.get('cache-control') ?? '', /max-age=31536000/);
      assert.match(r.headers.get('content-type') ?? '', /javascript/);
      const file = readFileSync(createRequire(import.meta.url).resolve('hls.js/dist/hls.min.js'));
      assert.ok(Buffer.from(await r.arrayBuffer()).equals(file));
    });

    it('GET /healthz answers {ok: true, nodeId}', async () => {
      const r = await call('GET', '/healthz');
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { ok: true, nodeId: config.nodeId });
    });

    it('GET /no/such/page answers 404 JSON', async () => {
      const r = await call('GET', '/no/such/page');
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'NOT_FOUND');
    });
  });

  it('a second gateway on a port in use fails its start instead of exiting the process', async () => {
    const other = createBroker(testConfig({ httpPort: String(PORT), nodeId: 'spec-node-2' }));
    other.createService(createGatewayService(testConfig({ httpPort: String(PORT) })));
    await assert.rejects(other.start(), /cannot listen.*EADDRINUSE/);
    await other.stop().catch(() => undefined);
  });
});
