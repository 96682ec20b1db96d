/**
 * The gateway over HTTPS (issue 5 item 2): with `tlsCert`/`tlsKey` the same port speaks TLS; the
 * XML API works through it and hostile XML is refused through it (entity expansion, external
 * entities, deep nesting, too many elements, huge bodies). The certificate is a fresh self-signed
 * P-256 one made by openssl for each run, trusted here as the CA (no `rejectUnauthorized: false`).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context, ServiceBroker } from 'moleculer';
import { loadConfig } from '../../cluster.config.ts';
import type { EventInfo } from '../../runtime/contracts.ts';
import { ConfigError, NotFoundError } from '../../runtime/errors.ts';
import { parseXml } from '../../runtime/http-body.ts';
import { testConfig } from '../support/config.ts';
import { fakeContentStorage, fakeEventService, startGatewayBroker } from '../support/gateway-fakes.ts';
import { httpRequest, type HttpOptions } from '../support/http.ts';

const PORT = 18611;
const KEY = 'spec-api-key-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'jitcast-tls-'));
const certFile = join(dir, 'cert.pem');
const keyFile = join(dir, 'key.pem');
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost',
  '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
], { stdio: 'ignore' });
const ca = readFileSync(certFile);

/** One HTTPS request to the gateway, trusting only the spec's certificate. */
const request = (method: string, path: string, o: HttpOptions = {}) =>
  httpRequest(method, `https://127.0.0.1:${PORT}${path}`, { ...o, ca, servername: 'localhost' });

const xmlHeaders = { authorization: `Bearer ${KEY}`, 'content-type': 'application/xml' };

const events = new Map<string, EventInfo>();
const fakeEvent = fakeEventService(events, () => ({ streams: [], callers: 0 }), {
  update(ctx: Context<{ eventId: string; patch: Partial<EventInfo> }>) {
    const e = events.get(ctx.params.eventId);
    if (!e) throw new NotFoundError(`no event ${ctx.params.eventId}`);
    const next = { ...e, ...ctx.params.patch };
    events.set(e.eventId, next);
    return next;
  },
  cancel(ctx: Context<{ eventId: string }>) {
    const e = events.get(ctx.params.eventId);
    if (!e) throw new NotFoundError(`no event ${ctx.params.eventId}`);
    const next = { ...e, status: 'cancelled' as const };
    events.set(e.eventId, next);
    return next;
  },
});

describe('cluster.config TLS settings', () => {
  const base = { secret: 'spec-secret-0123456789abcdefghijklmnopqrstuvwxyz', apiKeys: KEY };
  const dataDir = () => mkdtempSync(join(tmpdir(), 'jitcast-tls-cfg-'));

  it('loadConfig() with tlsCert and tlsKey defaults publicUrl to https://host:port', () => {
    const c = loadConfig({ ...base, dataDir: dataDir(), httpPort: '8443' }, { JITCAST_TLS_CERT: certFile, JITCAST_TLS_KEY: keyFile });
    assert.equal(c.publicUrl, 'https://127.0.0.1:8443');
    assert.equal(c.tlsCert, certFile);
  });

  it('loadConfig() without TLS keeps publicUrl http://', () => {
    assert.equal(loadConfig({ ...base, dataDir: dataDir(), httpPort: '8080' }, {}).publicUrl, 'http://127.0.0.1:8080');
  });

  it('loadConfig() with tlsCert alone throws ConfigError naming both keys', () => {
    assert.throws(() => loadConfig({ ...base, dataDir: dataDir(), tlsCert: certFile }, {}), (e: Error) => e instanceof ConfigError && /'tlsCert' and 'tlsKey' must be given together/.test(e.message));
  });

  it('loadConfig() with JITCAST_TLS_KEY alone throws ConfigError', () => {
    assert.throws(() => loadConfig({ ...base, dataDir: dataDir() }, { JITCAST_TLS_KEY: keyFile }), (e: Error) => e instanceof ConfigError && /got only 'tlsKey'/.test(e.message));
  });

  it('loadConfig() with a missing certificate file throws ConfigError naming tlsCert and ENOENT', () => {
    assert.throws(() => loadConfig({ ...base, dataDir: dataDir(), tlsCert: join(dir, 'nope.pem'), tlsKey: keyFile }, {}), (e: Error) => e instanceof ConfigError && /'tlsCert' must name a readable PEM file.*ENOENT/.test(e.message));
  });

  it('loadConfig() with a directory as key throws ConfigError naming tlsKey', () => {
    assert.throws(() => loadConfig({ ...base, dataDir: dataDir(), tlsCert: certFile, tlsKey: dir }, {}), (e: Error) => e instanceof ConfigError && /'tlsKey' must name a readable PEM file/.test(e.message));
  });

  it('loadConfig() with a key that does not match the certificate throws ConfigError', () => {
    const other = join(dir, 'other-key.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', other], { stdio: 'ignore' });
    assert.throws(() => loadConfig({ ...base, dataDir: dataDir(), tlsCert: certFile, tlsKey: other }, {}), (e: Error) => e instanceof ConfigError && /do not make a usable TLS identity/.test(e.message));
  });

  it('loadConfig() with a file that is not PEM throws ConfigError', () => {
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    assert.throws(() => loadConfig({ ...base, dataDir: dataDir(), tlsCert: junk, tlsKey: keyFile }, {}), (e: Error) => e instanceof ConfigError && /TLS identity/.test(e.message));
  });
});

describe('actors/gateway over HTTPS', () => {
  let broker: ServiceBroker;
  const config = testConfig({ httpPort: String(PORT), tlsCert: certFile, tlsKey: keyFile });

  before(async () => {
    broker = await startGatewayBroker(config, [fakeContentStorage, fakeEvent]);
  });
  after(() => broker.stop());

  it('POST /api/events with an XML body over TLS answers 201 in XML with https attendee and host links', async () => {
    const r = await request('POST', '/api/events', { body: '<event><title>Over TLS</title><archiveDays>7</archiveDays></event>', headers: xmlHeaders });
    assert.equal(r.tls, true);
    assert.equal(r.status, 201, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^application\/xml/);
    const v = parseXml(r.text) as Record<string, unknown>;
    assert.equal(v.title, 'Over TLS');
    assert.equal(v.archiveDays, 7);
    assert.match(String(v.attendeeUrl), /^https:\/\/127\.0\.0\.1:18611\/e\//);
    assert.match(String(v.hostUrl), /^https:\/\//);
  });

  it('modify, get and cancel with XML bodies over TLS', async () => {
    const created = parseXml((await request('POST', '/api/events', { body: '<event><title>To change</title></event>', headers: xmlHeaders })).text) as Record<string, unknown>;
    const id = String(created.eventId);
    const patched = await request('PATCH', `/api/events/${id}`, { body: '<event><title>Changed</title></event>', headers: xmlHeaders });
    assert.equal(patched.status, 200, patched.text);
    assert.equal((parseXml(patched.text) as Record<string, unknown>).title, 'Changed');
    const got = await request('GET', `/api/events/${id}`, { headers: { authorization: `Bearer ${KEY}`, accept: 'application/xml' } });
    assert.equal(got.status, 200);
    assert.match(got.text, /<title>Changed<\/title>/);
    const cancelled = await request('DELETE', `/api/events/${id}`, { headers: { authorization: `Bearer ${KEY}`, accept: 'application/xml' } });
    assert.equal(cancelled.status, 200, cancelled.text);
    assert.match(cancelled.text, /<status>cancelled<\/status>/);
  });

  it('a plain-HTTP request to the TLS port gets no API answer', async () => {
    const res = await fetch(`http://127.0.0.1:${PORT}/healthz`).then((r) => r.status, (err: Error) => err.message);
    assert.notEqual(res, 200);
  });

  it('GET /api/openapi.json over TLS needs no API key and names the https server', async () => {
    const r = await request('GET', '/api/openapi.json');
    assert.equal(r.status, 200);
    assert.equal(r.json.openapi, '3.1.0');
    assert.deepEqual(r.json.servers, [{ url: `https://127.0.0.1:${PORT}` }]);
  });

  describe('hostile XML over TLS', () => {
    const hostile: Array<[string, string, RegExp]> = [
      [
        'an entity-expansion bomb (billion laughs)',
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><event><title>&lol2;</title></event>',
        /DOCTYPE> declarations are not accepted/,
      ],
      ['an external entity (XXE)', '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><event><title>&x;</title></event>', /DOCTYPE> declarations are not accepted/],
      ['an external parameter entity', '<!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><event><title>t</title></event>', /DOCTYPE> declarations are not accepted/],
      ['an entity declared without a DOCTYPE', '<event><!ENTITY x "y"><title>t</title></event>', /<!ENTITY>/],
      ['nesting 40 deep', `<event>${'<a>'.repeat(40)}x${'</a>'.repeat(40)}</event>`, /nests deeper than 32/],
      ['5,000 nested elements', `<event>${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}</event>`, /nests deeper than 32|more than 1000 elements/],
      ['2,000 sibling elements', `<event>${'<t>x</t>'.repeat(2000)}</event>`, /more than 1000 elements/],
    ];
    for (const [what, body, message] of hostile) {
      it(`POST /api/events with ${what} answers 400 MALFORMED_BODY`, async () => {
        const r = await request('POST', '/api/events', { body, headers: { ...xmlHeaders, accept: 'application/json' } });
        assert.equal(r.status, 400, r.text.slice(0, 300));
        assert.equal(r.json.error.code, 'MALFORMED_BODY');
        assert.match(r.json.error.message, message);
        assert.doesNotMatch(r.text, /root:/);
      });
    }

    it('POST /api/events with a 2 MB XML body answers 413 and the server still answers', async () => {
      const r = await request('POST', '/api/events', { body: `<event><title>${'x'.repeat(2 * 1024 * 1024)}</title></event>`, headers: { ...xmlHeaders, accept: 'application/json' } });
      assert.equal(r.status, 413);
      assert.equal(r.json.error.code, 'PAYLOAD_TOO_LARGE');
      assert.equal((await request('GET', '/healthz')).status, 200);
    });

    it('hostile XML answers in XML when the client asks for XML', async () => {
      const r = await request('POST', '/api/events', { body: `<event>${'<a>'.repeat(40)}${'</a>'.repeat(40)}</event>`, headers: xmlHeaders });
      assert.equal(r.status, 400);
      assert.match(r.text, /<error>\n {2}<code>MALFORMED_BODY<\/code>/);
    });
  });
});
