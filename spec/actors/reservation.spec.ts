import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceBroker, ServiceSchema, Context } from 'moleculer';
import { testConfig } from '../support/config.ts';
import { startGatewayBroker } from '../support/gateway-fakes.ts';
import { apiRequest } from '../support/http.ts';
import { isValidEventId } from '../../codecs/ids.ts';
import { pinFor } from '../../codecs/pin.ts';
import { passwordProof, verifyToken } from '../../codecs/token.ts';
import type { EventInfo, EventView } from '../../runtime/contracts.ts';
import { NotFoundError, StateConflictError } from '../../runtime/errors.ts';

const PORT = 18081;
const BASE = `http://127.0.0.1:${PORT}`;
const KEY = 'spec-api-key-0123456789';
const config = testConfig({ httpPort: String(PORT) });

/** Everything the fakes saw, in order. */
const calls: Array<{ action: string; params: any; apiKey?: unknown }> = [];
const events = new Map<string, EventInfo>();
/** How many of the next new event IDs content storage answers as taken (to force a new draw). */
let takenClaims = 0;

function record(action: string, ctx: Context<any, any>) {
  calls.push({ action, params: ctx.params, apiKey: ctx.meta.apiKey });
}

const fakeContentStorage: ServiceSchema = {
  name: 'content-storage',
  actions: {
    createEventInfo(ctx: Context<{ info: EventInfo }>) {
      record('content-storage.createEventInfo', ctx);
      if (takenClaims > 0) {
        takenClaims--;
        throw new StateConflictError(`event ID ${ctx.params.info.eventId} is taken`, { eventId: 'taken' });
      }
      return { ok: true };
    },
  },
};

function need(eventId: string): EventInfo {
  const e = events.get(eventId);
  if (!e) throw new NotFoundError(`no event ${eventId}`);
  return e;
}

const fakeEvent: ServiceSchema = {
  name: 'event',
  actions: {
    register(ctx: Context<{ info: EventInfo }>) {
      record('event.register', ctx);
      events.set(ctx.params.info.eventId, { ...ctx.params.info });
      return ctx.params.info;
    },
    get(ctx: Context<{ eventId: string }>): EventView {
      record('event.get', ctx);
      return { ...need(ctx.params.eventId), streams: [], callers: 0 };
    },
    list(ctx: Context) {
      record('event.list', ctx);
      return [...events.values()].map((e) => ({ ...e, streams: [], callers: 0 }));
    },
    update(ctx: Context<{ eventId: string; patch: Partial<EventInfo> }>) {
      record('event.update', ctx);
      const e = need(ctx.params.eventId);
      if (e.status !== 'reserved' && e.status !== 'live') throw new StateConflictError(`event ${e.eventId} is ${e.status}`);
      Object.assign(e, ctx.params.patch, { updatedAt: new Date().toISOString() });
      return e;
    },
    cancel(ctx: Context<{ eventId: string }>) {
      record('event.cancel', ctx);
      const e = need(ctx.params.eventId);
      if (e.status !== 'reserved') throw new StateConflictError(`event ${e.eventId} is ${e.status}`);
      e.status = 'cancelled';
      return e;
    },
    end(ctx: Context<{ eventId: string; reason: string }>) {
      record('event.end', ctx);
      const e = need(ctx.params.eventId);
      if (e.status !== 'live') throw new StateConflictError(`event ${e.eventId} is ${e.status}`);
      e.status = 'ended';
      return e;
    },
    retryArchive(ctx: Context<{ eventId: string }>) {
      record('event.retryArchive', ctx);
      const e = need(ctx.params.eventId);
      if (e.status !== 'archive-error') throw new StateConflictError(`event ${e.eventId} is ${e.status}`, { status: e.status });
      e.status = 'archiving';
      delete e.archiveError;
      return e;
    },
  },
};

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => apiRequest(BASE, KEY, method, path, body, { headers });

const future = () => new Date(Date.now() + 86_400_000).toISOString();

describe('actors/reservation', () => {
  let broker: ServiceBroker;
  before(async () => {
    broker = await startGatewayBroker(config, [fakeContentStorage, fakeEvent]);
  });
  after(() => broker.stop());
  beforeEach(() => {
    calls.length = 0;
    takenClaims = 0;
  });

  async function reserve(body: Record<string, unknown> = { title: 'Town hall' }): Promise<EventView & { pin: string }> {
    const r = await api('POST', '/api/events', body);
    assert.equal(r.status, 201, r.text);
    return r.json;
  }

  describe('POST /api/events (create)', () => {
    it('POST /api/events answers 201 with an 8-digit Luhn ID, the PIN of pinFor() and signed attendee and host URLs', async () => {
      const r = await api('POST', '/api/events', { title: '  Town hall  ', startsAt: future(), password: 'open sesame' });
      assert.equal(r.status, 201, r.text);
      const v = r.json;
      assert.ok(isValidEventId(v.eventId), `event ID ${v.eventId}`);
      assert.match(v.pin, /^\d{6}$/);
      assert.equal(v.pin, pinFor(config.secret, v.eventId));
      assert.equal(v.title, 'Town hall');
      assert.equal(v.status, 'reserved');
      assert.equal(v.format, 'hls');
      assert.equal(v.archiveDays, 30);
      assert.equal(v.hasPassword, true);
      assert.deepEqual(v.streams, []);
      assert.equal(r.headers.get('location'), `/api/events/${v.eventId}`);
      const prefix = `${config.publicUrl}/e/`;
      assert.ok(v.attendeeUrl.startsWith(prefix));
      const attendee = verifyToken(config.secret, v.attendeeUrl.slice(prefix.length), Date.now() / 1000);
      assert.equal(attendee.e, v.eventId);
      assert.equal(attendee.r, 'attendee');
      assert.equal(attendee.p, passwordProof(config.secret, v.eventId, 'open sesame'));
      const host = verifyToken(config.secret, v.hostUrl.slice(prefix.length), Date.now() / 1000);
      assert.deepEqual([host.e, host.r, host.p], [v.eventId, 'host', undefined]);
    });

    it('create stores event-info in content storage before it registers with the event actor', async () => {
      const v = await reserve();
      const order = calls.map((c) => c.action);
      assert.deepEqual(order, ['content-storage.createEventInfo', 'event.register'], 'one storage call: no lookup before the write');
      const put = calls.find((c) => c.action === 'content-storage.createEventInfo')!;
      assert.equal(put.params.info.eventId, v.eventId);
      assert.equal(put.params.info.pin, undefined, 'the PIN is never stored');
      const reg = calls.find((c) => c.action === 'event.register')!;
      assert.deepEqual(reg.params.info, put.params.info);
    });

    it('create passes the API key fingerprint on as ctx.meta.apiKey, never the key itself', async () => {
      await reserve();
      const reg = calls.find((c) => c.action === 'event.register')!;
      assert.equal(typeof reg.apiKey, 'string');
      assert.notEqual(reg.apiKey, KEY);
    });

    it('create draws another event ID while content storage answers that the drawn one is taken (409)', async () => {
      takenClaims = 2;
      const v = await reserve();
      const claims = calls.filter((c) => c.action === 'content-storage.createEventInfo');
      assert.equal(claims.length, 3);
      assert.equal(new Set(claims.map((c) => c.params.info.eventId)).size, 3, 'a new ID each time');
      assert.equal(claims[2]!.params.info.eventId, v.eventId);
      const reg = calls.find((c) => c.action === 'event.register')!;
      assert.equal(reg.params.info.eventId, v.eventId);
      assert.equal(verifyToken(config.secret, v.attendeeUrl.split('/e/')[1]!, Date.now() / 1000).e, v.eventId, 'the links are signed for the ID that was stored');
      assert.equal(verifyToken(config.secret, v.hostUrl.split('/e/')[1]!, Date.now() / 1000).e, v.eventId);
    });

    it('create answers 503 after ten taken IDs in a row, and registers nothing', async () => {
      takenClaims = 10;
      const r = await api('POST', '/api/events', { title: 'Unlucky' });
      assert.equal(r.status, 503);
      assert.equal(calls.filter((c) => c.action === 'event.register').length, 0);
    });

    it('create without a password gives an attendee token without a password proof', async () => {
      const v = await reserve({ title: 'Open' });
      assert.equal(v.hasPassword, false);
      const claims = verifyToken(config.secret, v.attendeeUrl.split('/e/')[1]!, Date.now() / 1000);
      assert.equal(claims.p, undefined);
    });

    it('create from an XML body answers 201 with archiveDays as a number', async () => {
      const r = await api('POST', '/api/events', `<event><title>XML call</title><archiveDays>7</archiveDays><format>hls</format></event>`, { 'content-type': 'application/xml', accept: 'application/json' });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.title, 'XML call');
      assert.equal(r.json.archiveDays, 7);
      assert.equal(r.json.pin, pinFor(config.secret, r.json.eventId));
    });

    it('create accepts startsAt two minutes in the past (clock skew)', async () => {
      await reserve({ title: 'Skew', startsAt: new Date(Date.now() - 120_000).toISOString() });
    });

    const invalid: Array<[string, Record<string, unknown>, string]> = [
      ['a missing title', {}, 'title'],
      ['an empty title', { title: '   ' }, 'title'],
      ['a 201-character title', { title: 'x'.repeat(201) }, 'title'],
      ['a numeric title', { title: 42 }, 'title'],
      ['startsAt in the past', { title: 't', startsAt: '2001-01-01T00:00:00Z' }, 'startsAt'],
      ['startsAt that is not a date', { title: 't', startsAt: 'tomorrow' }, 'startsAt'],
      ['startsAt without a time', { title: 't', startsAt: '2099-01-01' }, 'startsAt'],
      ['startsAt on February 30th', { title: 't', startsAt: '2099-02-30T10:00:00Z' }, 'startsAt'],
      ['format dash', { title: 't', format: 'dash' }, 'format'],
      ['archiveDays 0', { title: 't', archiveDays: 0 }, 'archiveDays'],
      ['archiveDays 3651', { title: 't', archiveDays: 3651 }, 'archiveDays'],
      ['archiveDays 1.5', { title: 't', archiveDays: 1.5 }, 'archiveDays'],
      ['archiveDays "30" as a string', { title: 't', archiveDays: '30' }, 'archiveDays'],
      ['a 3-character password', { title: 't', password: 'abc' }, 'password'],
      ['a 129-character password', { title: 't', password: 'p'.repeat(129) }, 'password'],
      ['an unknown field', { title: 't', color: 'blue' }, 'color'],
    ];
    for (const [what, body, field] of invalid) {
      it(`POST /api/events with ${what} answers 400 naming ${field}`, async () => {
        const r = await api('POST', '/api/events', body);
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.error.code, 'VALIDATION_FAILED');
        assert.ok(r.json.error.fields[field], `fields names ${field}: ${r.text}`);
        assert.match(r.json.error.message, new RegExp(field));
        assert.equal(calls.filter((c) => c.action === 'content-storage.createEventInfo').length, 0, 'nothing is stored');
      });
    }

    it('POST /api/events with several bad fields answers 400 naming each of them', async () => {
      const r = await api('POST', '/api/events', { title: '', archiveDays: -1, format: 'mp3' });
      assert.equal(r.status, 400);
      assert.deepEqual(Object.keys(r.json.error.fields).sort(), ['archiveDays', 'format', 'title']);
    });

    it('POST /api/events?title=x without a body answers 400: query parameters are not fields', async () => {
      const r = await api('POST', '/api/events?title=x');
      assert.equal(r.status, 400);
      assert.ok(r.json.error.fields.title);
    });
  });

  describe('reads and state changes', () => {
    it('GET /api/events/:eventId answers the event with its PIN', async () => {
      const v = await reserve();
      const r = await api('GET', `/api/events/${v.eventId}`);
      assert.equal(r.status, 200);
      assert.equal(r.json.eventId, v.eventId);
      assert.equal(r.json.pin, v.pin);
      assert.equal(r.json.status, 'reserved');
    });

    it('GET /api/events/:eventId for an unknown event answers 404', async () => {
      const r = await api('GET', '/api/events/12345674');
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'NOT_FOUND');
    });

    for (const bad of ['12345675', '1234567', 'abcdefgh']) {
      it(`GET /api/events/${bad} answers 400 naming eventId and never reaches a lookup`, async () => {
        const r = await api('GET', `/api/events/${bad}`);
        assert.equal(r.status, 400);
        assert.ok(r.json.error.fields.eventId);
        assert.equal(calls.length, 0);
      });
    }

    it('GET /api/events answers the list from event.list', async () => {
      const v = await reserve();
      const r = await api('GET', '/api/events');
      assert.equal(r.status, 200);
      assert.ok(Array.isArray(r.json));
      assert.ok(r.json.some((e: EventView) => e.eventId === v.eventId));
      assert.ok(calls.some((c) => c.action === 'event.list'));
    });

    it('PATCH /api/events/:eventId delegates the patch to event.update', async () => {
      const v = await reserve();
      const startsAt = future();
      const r = await api('PATCH', `/api/events/${v.eventId}`, { title: 'Renamed', archiveDays: 90, startsAt });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.title, 'Renamed');
      const up = calls.find((c) => c.action === 'event.update')!;
      assert.deepEqual(up.params, { eventId: v.eventId, patch: { title: 'Renamed', archiveDays: 90, startsAt } });
    });

    it('PATCH with an unknown field answers 400 naming it', async () => {
      const v = await reserve();
      const r = await api('PATCH', `/api/events/${v.eventId}`, { format: 'hls' });
      assert.equal(r.status, 400);
      assert.ok(r.json.error.fields.format);
    });

    it('PATCH with an empty body answers 400', async () => {
      const v = await reserve();
      const r = await api('PATCH', `/api/events/${v.eventId}`, {});
      assert.equal(r.status, 400);
      assert.equal(calls.filter((c) => c.action === 'event.update').length, 0);
    });

    it('PATCH on a cancelled event answers 409', async () => {
      const v = await reserve();
      assert.equal((await api('DELETE', `/api/events/${v.eventId}`)).status, 200);
      const r = await api('PATCH', `/api/events/${v.eventId}`, { title: 'late' });
      assert.equal(r.status, 409);
      assert.equal(r.json.error.code, 'STATE_CONFLICT');
    });

    it('DELETE /api/events/:eventId cancels through event.cancel; a second DELETE answers 409', async () => {
      const v = await reserve();
      const r = await api('DELETE', `/api/events/${v.eventId}`);
      assert.equal(r.status, 200);
      assert.equal(r.json.status, 'cancelled');
      assert.deepEqual(calls.filter((c) => c.action === 'event.cancel').map((c) => c.params), [{ eventId: v.eventId }]);
      assert.equal((await api('DELETE', `/api/events/${v.eventId}`)).status, 409);
    });

    it("POST /api/events/:eventId/end calls event.end with reason 'api'", async () => {
      const v = await reserve();
      events.get(v.eventId)!.status = 'live';
      const r = await api('POST', `/api/events/${v.eventId}/end`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.status, 'ended');
      assert.deepEqual(calls.filter((c) => c.action === 'event.end').map((c) => c.params), [{ eventId: v.eventId, reason: 'api' }]);
    });

    it('POST /api/events/:eventId/end on a reserved event answers 409', async () => {
      const v = await reserve();
      const r = await api('POST', `/api/events/${v.eventId}/end`);
      assert.equal(r.status, 409);
    });

    it('POST /api/events/:eventId/archive/retry on an archive-error event calls event.retryArchive and answers it archiving', async () => {
      const v = await reserve();
      Object.assign(events.get(v.eventId)!, { status: 'archive-error', archiveError: 'no recorded stream' });
      const r = await api('POST', `/api/events/${v.eventId}/archive/retry`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.status, 'archiving');
      assert.equal(r.json.archiveError, undefined);
      assert.deepEqual(calls.filter((c) => c.action === 'event.retryArchive').map((c) => c.params), [{ eventId: v.eventId }]);
    });

    it('POST /api/events/:eventId/archive/retry answers 409 unless the event is archive-error, and changes nothing', async () => {
      const v = await reserve();
      events.get(v.eventId)!.status = 'archived';
      const r = await api('POST', `/api/events/${v.eventId}/archive/retry`);
      assert.equal(r.status, 409, r.text);
      assert.equal(typeof r.json.error.code, 'string');
      assert.equal(events.get(v.eventId)!.status, 'archived');
    });

    it('POST /api/events/:eventId/archive/retry answers 404 for an unknown event and 400 for a malformed ID', async () => {
      assert.equal((await api('POST', '/api/events/12345674/archive/retry')).status, 404);
      const bad = await api('POST', '/api/events/12345675/archive/retry');
      assert.equal(bad.status, 400);
      assert.ok(bad.json.error.fields.eventId);
      assert.equal(calls.filter((c) => c.action === 'event.retryArchive').length, 1);
    });

    it('POST /api/events/:eventId/archive/retry without the API key answers 401 and never reaches the event actor', async () => {
      const v = await reserve();
      Object.assign(events.get(v.eventId)!, { status: 'archive-error', archiveError: 'x' });
      const res = await fetch(`${BASE}/api/events/${v.eventId}/archive/retry`, { method: 'POST' });
      assert.equal(res.status, 401);
      assert.equal(events.get(v.eventId)!.status, 'archive-error');
      assert.equal(calls.filter((c) => c.action === 'event.retryArchive').length, 0);
    });

    it('reservation.cancel called over the broker with a malformed ID throws a 400 naming eventId', async () => {
      await assert.rejects(broker.call('reservation.cancel', { eventId: '00000001' }), (e: any) => e.code === 400 && typeof e.data.fields.eventId === 'string');
    });
  });
});
