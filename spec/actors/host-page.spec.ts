/**
 * The host link (issue 5 item 3): `GET /e/<hostToken>` is the host page, `GET …/info` and
 * `POST …/end` act with the host token alone and refuse attendee, forged and expired tokens. Also
 * the event manager's page and its "recent errors" (a warning logged on the node shows in
 * `GET /api/cluster`). Gateway, attendee access and the recent-errors appender are real; the event
 * actor is a fake that records what it was asked.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import { createAttendeeAccessService } from '../../actors/attendee-access.service.ts';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { makeEventId } from '../../codecs/ids.ts';
import { pinFor } from '../../codecs/pin.ts';
import { signToken } from '../../codecs/token.ts';
import { createBroker } from '../../runtime/broker.ts';
import type { EventView } from '../../runtime/contracts.ts';
import { NotFoundError, StateConflictError } from '../../runtime/errors.ts';
import { testConfig } from '../support/config.ts';
import { waitFor } from '../support/node-process.ts';
import { httpRequest } from '../support/http.ts';

const PORT = 18612;
const BASE = `http://127.0.0.1:${PORT}`;
const KEY = 'spec-api-key-0123456789';
const config = testConfig({ httpPort: String(PORT) });
const EVENT = makeEventId('4242420');
const host = signToken(config.secret, { e: EVENT, r: 'host' });
const attendee = signToken(config.secret, { e: EVENT, r: 'attendee' });

let view: EventView;
const endCalls: unknown[] = [];

function freshView(): EventView {
  const now = new Date().toISOString();
  return {
    eventId: EVENT, title: 'Quarterly call <b>', format: 'hls', createdAt: now, updatedAt: now, archiveDays: 30, hasPassword: false,
    attendeeUrl: `${BASE}/e/${attendee}`, hostUrl: `${BASE}/e/${host}`, status: 'live', liveAt: now,
    streams: [{ streamId: `${EVENT}-n1-10000-abc`, nodeId: 'n1', dataCenter: 'dc1', port: 10000, format: 'hls', url: '/s/x/index.m3u8', startedAt: now }],
    callers: 2,
  };
}

const fakeEvent: ServiceSchema = {
  name: 'event',
  actions: {
    get(ctx: Context<{ eventId: string }>) {
      if (ctx.params.eventId !== EVENT) throw new NotFoundError(`no event ${ctx.params.eventId}`);
      return view;
    },
    end(ctx: Context<{ eventId: string; reason: string }>) {
      endCalls.push({ ...ctx.params });
      if (view.status !== 'live') throw new StateConflictError(`event ${EVENT} is ${view.status}, not live`);
      view = { ...view, status: 'ended', endedAt: new Date().toISOString(), streams: [], callers: 0 };
      return view;
    },
    list: () => [view],
  },
};

let usageAnswers = true;
const fakeUsage: ServiceSchema = {
  name: 'usage',
  actions: {
    report(ctx: Context<{ eventId: string }>) {
      if (!usageAnswers) throw new Error('usage store not open');
      return { eventId: ctx.params.eventId, listeners: { peak: 7, total: 11, current: 4 } };
    },
  },
};

const call = (method: string, path: string, headers: Record<string, string> = {}) => httpRequest(method, BASE + path, { headers });

describe('host page and host-only routes', () => {
  let broker: ServiceBroker;
  before(async () => {
    broker = createBroker(config);
    broker.createService(fakeEvent);
    broker.createService(fakeUsage);
    broker.createService(createAttendeeAccessService(config, { eventTimeoutMs: 200 }));
    broker.createService(createGatewayService(config));
    await broker.start();
  });
  after(() => broker.stop());
  beforeEach(() => {
    view = freshView();
    endCalls.length = 0;
    usageAnswers = true;
  });

  it('GET /e/<hostToken>/info answers the event with its PIN, callers, streams and attendee link', async () => {
    const r = await call('GET', `/e/${host}/info`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.json.eventId, EVENT);
    assert.equal(r.json.pin, pinFor(config.secret, EVENT));
    assert.equal(r.json.status, 'live');
    assert.equal(r.json.live, true);
    assert.equal(r.json.callers, 2);
    assert.equal(r.json.streams, 1);
    assert.equal(r.json.attendeeUrl, view.attendeeUrl);
    assert.equal(r.json.archiveUrl, null);
    assert.deepEqual(r.json.listeners, { peak: 7, total: 11, current: 4 });
  });

  it('GET /e/<hostToken>/info still answers, listeners null, when the usage report fails', async () => {
    usageAnswers = false;
    const r = await call('GET', `/e/${host}/info`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.listeners, null);
    assert.equal(r.json.status, 'live');
  });

  it('POST /e/<hostToken>/end ends the event through event.end and answers it ended', async () => {
    const r = await call('POST', `/e/${host}/end`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'ended');
    assert.deepEqual(endCalls, [{ eventId: EVENT, reason: 'host' }]);
  });

  it('POST /e/<hostToken>/end on an event that is no longer live answers 409 STATE_CONFLICT', async () => {
    view = { ...view, status: 'archived' };
    const r = await call('POST', `/e/${host}/end`);
    assert.equal(r.status, 409);
    assert.equal(r.json.error.code, 'STATE_CONFLICT');
  });

  it('POST /e/<attendeeToken>/end answers 403 and never calls event.end', async () => {
    const r = await call('POST', `/e/${attendee}/end`);
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'FORBIDDEN');
    assert.match(r.json.error.message, /attendee link/);
    assert.deepEqual(endCalls, []);
    assert.equal(view.status, 'live');
  });

  it('GET /e/<attendeeToken>/info answers 403 (the PIN is for the host only)', async () => {
    const r = await call('GET', `/e/${attendee}/info`);
    assert.equal(r.status, 403);
    assert.doesNotMatch(r.text, new RegExp(pinFor(config.secret, EVENT)));
  });

  it('POST /e/<host token signed with another secret>/end answers 403 naming a bad signature', async () => {
    const forged = signToken('another-secret-0123456789abcdefghijklmnop', { e: EVENT, r: 'host' });
    const r = await call('POST', `/e/${forged}/end`);
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /TOKEN_BAD_SIGNATURE/);
    assert.deepEqual(endCalls, []);
  });

  it("POST /e/<attendee token with its role rewritten to host>/end answers 403", async () => {
    const [, sig] = attendee.split('.');
    const payload = Buffer.from(JSON.stringify({ e: EVENT, r: 'host' })).toString('base64url');
    const r = await call('POST', `/e/${payload}.${sig}/end`);
    assert.equal(r.status, 403);
    assert.deepEqual(endCalls, []);
  });

  it('POST /e/<expired host token>/end answers 403 TOKEN_EXPIRED', async () => {
    const expired = signToken(config.secret, { e: EVENT, r: 'host', x: Math.floor(Date.now() / 1000) - 60 });
    const r = await call('POST', `/e/${expired}/end`);
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /TOKEN_EXPIRED/);
    assert.deepEqual(endCalls, []);
  });

  it('POST /e/<garbage>/end answers 403 TOKEN_MALFORMED', async () => {
    const r = await call('POST', '/e/not-a-token/end');
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /TOKEN_MALFORMED/);
  });

  it('GET /e/<hostToken>/info of an archived event gives the archive link', async () => {
    view = { ...view, status: 'archived', streams: [], archive: [{ streamId: `${EVENT}-n1-10000-abc`, start: 0, end: 12 }] };
    const r = await call('GET', `/e/${host}/info`);
    assert.equal(r.json.archiveReady, true);
    assert.equal(r.json.archiveUrl, view.attendeeUrl);
    assert.equal(r.json.archivePlaylistUrl, `${view.attendeeUrl}/archive.m3u8`);
  });

  it('GET /e/<hostToken> is the host page: End button, info polling, nonce CSP, no API key', async () => {
    const r = await call('GET', `/e/${host}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(r.text, /data-role="host"/);
    assert.match(r.text, /<button id="end"[^>]*>End event<\/button>/);
    assert.match(r.text, /base \+ '\/info'/);
    const nonce = /<script nonce="([^"]+)">/.exec(r.text)?.[1];
    assert.ok(nonce);
    assert.match(r.headers.get('content-security-policy') ?? '', new RegExp(`script-src 'self' 'nonce-${nonce!.replace(/[+/]/g, '\\$&')}'`));
  });

  it('GET /e/<attendeeToken> stays the attendee player page', async () => {
    const r = await call('GET', `/e/${attendee}`);
    assert.equal(r.status, 200);
    assert.doesNotMatch(r.text, /data-role="host"/);
    assert.match(r.text, /Quarterly call &#60;b&#62;/);
  });

  it('GET /dashboard answers the event manager page without an API key, its script under a nonce CSP', async () => {
    const r = await call('GET', '/dashboard');
    assert.equal(r.status, 200);
    assert.match(r.text, /event manager/);
    assert.match(r.text, /id="login-form"/);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    const nonce = /<script nonce="([^"]+)">/.exec(r.text)?.[1];
    assert.ok(nonce && csp.includes(`'nonce-${nonce}'`));
    assert.notEqual(nonce, /<script nonce="([^"]+)">/.exec((await call('GET', '/dashboard')).text)?.[1], 'a fresh nonce per answer');
  });

  it('GET /api/cluster lists a warning logged on the node under recentErrors, repeats counted', async () => {
    const logger = broker.getLogger('spec-module');
    const marker = `spec warning ${Date.now()} [event:${EVENT}]`;
    logger.warn(marker);
    logger.warn(marker);
    logger.error('spec failure', new Error('disk on fire'));
    const status = await waitFor('the warning in /api/cluster', async () => {
      const r = await call('GET', '/api/cluster', { authorization: `Bearer ${KEY}` });
      return r.json?.recentErrors?.some((e: any) => e.message === 'spec failure disk on fire') ? r.json : undefined;
    }, 5000, 100);
    const warn = status.recentErrors.find((e: any) => e.message === marker);
    assert.ok(warn, JSON.stringify(status.recentErrors));
    assert.equal(warn.level, 'warn');
    assert.equal(warn.nodeId, config.nodeId);
    assert.equal(warn.count, 2);
    assert.equal(status.recentErrors[0].message, 'spec failure disk on fire', 'newest first');
    assert.equal(status.recentErrors[0].level, 'error');
  });
});
