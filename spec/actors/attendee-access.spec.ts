import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import { createBroker } from '../../runtime/broker.ts';
import { createAttendeeAccessService } from '../../actors/attendee-access.service.ts';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { passwordProof, signAuthCode, signToken, verifyAuthCode } from '../../codecs/token.ts';
import type { SteeringManifest } from '../../codecs/hls.ts';
import { NotFoundError } from '../../runtime/errors.ts';
import type { EventInfo, EventView, StreamDataset } from '../../runtime/contracts.ts';
import type { JitcastConfig } from '../../cluster.config.ts';
import { testConfig } from '../support/config.ts';

const SECRET = 'spec-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const EVENT = '12345674';
const STREAM_A = '12345674-spec-node-10002-lq0abc';
const STREAM_B = '12345674-spec-node-10052-lq0abd';
/** A stream of another event (Luhn-valid 8 digits). */
const OTHER_EVENT_STREAM = '12345682-spec-node-10004-lq0abe';
/** The fixed clock of every spec, in unix seconds. */
const NOW = 1_800_000_000;

const FFMPEG_PLAYLIST = [
  '#EXTM3U',
  '#EXT-X-VERSION:3',
  '#EXT-X-TARGETDURATION:2',
  '#EXT-X-MEDIA-SEQUENCE:0',
  '#EXT-X-PLAYLIST-TYPE:EVENT',
  '#EXTINF:2.000000,',
  'seg00000.ts',
  '#EXTINF:2.000000,',
  'seg00001.ts',
  '#EXTINF:2.000000,',
  'seg00002.ts',
  '#EXT-X-ENDLIST',
  '',
].join('\n');
const SEG0 = Buffer.from([0x47, 0x40, 0x11, 0x10, 0x00, 0x01]);
const SEG1 = Buffer.from([0x47, 0x40, 0x11, 0x11, 0x00, 0x02]);

const attendeeToken = (claims: { x?: number; p?: string } = {}): string => signToken(SECRET, { e: EVENT, r: 'attendee', ...claims });
const codeFor = (streamId: string, expiresAtS = NOW + 60): string => signAuthCode(SECRET, EVENT, streamId, expiresAtS);

/** What the fake actors answer; each spec sets what it needs. */
interface World {
  alive: Set<string>;
  /** Every monitoring lookup (activeStreams by event, isAlive by stream). */
  lookups: string[];
  view: EventView | 'hang' | 'missing';
  info: EventInfo;
  storedFiles: Map<string, Buffer>;
}

function baseInfo(): EventInfo {
  return {
    eventId: EVENT,
    title: 'Quarterly call',
    format: 'hls',
    startsAt: '2027-01-15T10:00:00.000Z',
    createdAt: '2027-01-01T10:00:00.000Z',
    updatedAt: '2027-01-01T10:00:00.000Z',
    archiveDays: 30,
    hasPassword: false,
    attendeeUrl: `http://127.0.0.1/e/${attendeeToken()}`,
    hostUrl: 'http://127.0.0.1/h/x',
    status: 'reserved',
  };
}

function freshWorld(): World {
  return {
    alive: new Set([STREAM_A, STREAM_B]),
    lookups: [],
    view: { ...baseInfo(), streams: [], callers: 0 },
    info: baseInfo(),
    storedFiles: new Map(),
  };
}

function fakes(world: () => World, withEvent: boolean): ServiceSchema[] {
  const monitoring: ServiceSchema = {
    name: 'monitoring',
    actions: {
      activeStreams(ctx): StreamDataset[] {
        const { eventId } = ctx.params as { eventId?: string };
        world().lookups.push(eventId ?? '*');
        return [...world().alive]
          .filter((id) => !eventId || id.startsWith(eventId))
          .map((streamId, i) => ({
            streamId,
            eventId: streamId.slice(0, 8),
            format: 'hls',
            port: 10002 + i,
            nodeId: 'spec-node',
            dataCenter: 'dc1',
            url: `/s/${streamId}/index.m3u8`,
            startedAt: '2027-01-15T10:00:00.000Z',
            lastSeenAt: '2027-01-15T10:00:01.000Z',
          }));
      },
      isAlive(ctx): boolean {
        const { streamId } = ctx.params as { streamId: string };
        world().lookups.push(streamId);
        return world().alive.has(streamId);
      },
    },
  };
  const event: ServiceSchema = {
    name: 'event',
    actions: {
      async get(ctx): Promise<EventView> {
        const v = world().view;
        if (v === 'missing') throw new NotFoundError(`event ${(ctx.params as { eventId: string }).eventId} not found`);
        if (v === 'hang') return new Promise(() => {});
        return v;
      },
    },
  };
  const storage: ServiceSchema = {
    name: 'content-storage',
    actions: {
      getEventInfo(): EventInfo {
        return world().info;
      },
      readStreamFile(ctx): Buffer {
        const { eventId, streamId, file } = ctx.params as { eventId: string; streamId: string; file: string };
        const b = world().storedFiles.get(`${eventId}/${streamId}/${file}`);
        if (!b) throw new NotFoundError(`no ${file} in stream ${streamId}`);
        return b;
      },
    },
  };
  return withEvent ? [monitoring, event, storage] : [monitoring, storage];
}

interface Rig {
  broker: ServiceBroker;
  config: JitcastConfig;
}

async function startRig(world: () => World, opts: { withEvent?: boolean; eventTimeoutMs?: number; httpPort?: string; hotCacheMs?: number } = {}): Promise<Rig> {
  const config = testConfig(opts.httpPort ? { httpPort: opts.httpPort } : {});
  // With an HTTP port the real gateway fronts the actor, routing as in production.
  const gateway = opts.httpPort ? [createGatewayService(config)] : [];
  const liveDir = join(config.dataDir, 'live', STREAM_A);
  mkdirSync(liveDir, { recursive: true });
  writeFileSync(join(liveDir, 'index.m3u8'), FFMPEG_PLAYLIST);
  writeFileSync(join(liveDir, 'seg00000.ts'), SEG0);
  writeFileSync(join(liveDir, 'seg00001.ts'), SEG1);
  // Bait outside every stream directory: no request may ever reach it.
  writeFileSync(join(config.dataDir, 'live', 'seg00000.ts'), Buffer.from('OUTSIDE'));
  writeFileSync(join(config.dataDir, 'secret.ts'), Buffer.from('OUTSIDE'));
  const broker = createBroker(config);
  // hotCacheMs 0 unless asked: each spec changes what monitoring and the disk hold and expects the next request to see it.
  broker.createService(createAttendeeAccessService(config, { nowS: () => NOW, eventTimeoutMs: opts.eventTimeoutMs ?? 100, hotCacheMs: opts.hotCacheMs ?? 0 }));
  for (const s of [...fakes(world, opts.withEvent ?? true), ...gateway]) broker.createService(s);
  await broker.start();
  return { broker, config };
}

/** Calls an action and returns its answer with the response meta it set. */
async function callWithMeta<T>(broker: ServiceBroker, action: string, params: object, meta: Record<string, unknown> = {}): Promise<{ data: T; meta: Record<string, any> }> {
  const m: Record<string, any> = { ...meta };
  const data = await broker.call<T, object>(action, params, { meta: m });
  return { data, meta: m };
}

const forbidden = { code: 403 } as const;
const notFound = { code: 404 } as const;

describe('attendee-access', () => {
  let world: World;
  let rig: Rig;

  before(async () => {
    rig = await startRig(() => world);
  });
  after(async () => {
    await rig.broker.stop();
  });
  beforeEach(() => {
    world = freshWorld();
  });

  describe('live', () => {
    it('live() lists each alive stream once with identical attributes and an auth code valid for that stream only', async () => {
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.live', { token: attendeeToken() });
      assert.equal(meta.$responseType, 'application/vnd.apple.mpegurl');
      const lines = data.trim().split('\n');
      assert.equal(lines[0], '#EXTM3U');
      const infs = lines.filter((l) => l.startsWith('#EXT-X-STREAM-INF:'));
      assert.equal(infs.length, 2);
      assert.equal(infs[0], infs[1]);
      const uris = lines.filter((l) => !l.startsWith('#'));
      assert.equal(uris.length, 2);
      for (const [uri, streamId, other] of [
        [uris[0]!, STREAM_A, STREAM_B],
        [uris[1]!, STREAM_B, STREAM_A],
      ] as const) {
        // The player session's listener ID rides along for usage reports (core/usage.ts).
        const m = /^\/s\/([^/]+)\/index\.m3u8\?a=([^&]+)&l=[A-Za-z0-9_-]{12}$/.exec(uri);
        assert.ok(m, uri);
        assert.equal(m[1], streamId);
        const code = m[2]!;
        assert.equal(code.split('.')[0], String(NOW + rig.config.authCodeTimeoutS));
        assert.equal(verifyAuthCode(SECRET, code, EVENT, streamId, NOW), true);
        assert.equal(verifyAuthCode(SECRET, code, EVENT, other, NOW), false);
      }
    });

    it('live() answers 404 "not live" when monitoring sees no live stream of the event', async () => {
      world.alive.clear();
      await assert.rejects(rig.broker.call('attendee-access.live', { token: attendeeToken() }), { code: 404, message: /is not live/ });
    });

    it('live() answers 403 for a forged, a tampered, an expired and a malformed token', async () => {
      const good = attendeeToken();
      const forged = signToken('another-secret-0123456789abcdefghijklmnop', { e: EVENT, r: 'attendee' });
      const [payload, mac] = good.split('.') as [string, string];
      const tamperedPayload = Buffer.from(JSON.stringify({ e: '12345682', r: 'attendee' })).toString('base64url');
      const cases: Array<[string, RegExp]> = [
        [forged, /signature/],
        [`${tamperedPayload}.${mac}`, /signature/],
        [`${payload}.${mac.slice(0, -2)}${mac.endsWith('AA') ? 'BB' : 'AA'}`, /signature/],
        [attendeeToken({ x: NOW - 1 }), /expired/],
        ['not-a-token', /malformed/],
        ['', /malformed/],
      ];
      for (const [token, message] of cases) {
        await assert.rejects(rig.broker.call('attendee-access.live', { token }), { code: 403, message }, token);
      }
    });

    it('live() accepts a token whose expiry is still ahead', async () => {
      const text = await rig.broker.call<string, object>('attendee-access.live', { token: attendeeToken({ x: NOW + 3600 }) });
      assert.match(text, /#EXT-X-STREAM-INF/);
    });
  });

  describe('steering (streams that start after the player loaded live.m3u8)', () => {
    const steer = (params: Record<string, unknown>) => callWithMeta<SteeringManifest>(rig.broker, 'attendee-access.steering', { token: attendeeToken(), ...params });

    it('live() names a steering manifest listing its streams in order, relative to live.m3u8', async () => {
      const data = await rig.broker.call<string, object>('attendee-access.live', { token: attendeeToken() });
      assert.match(data, new RegExp(`^#EXT-X-CONTENT-STEERING:SERVER-URI="steering\\.json\\?s=${STREAM_A},${STREAM_B}(&l=[A-Za-z0-9_-]+)?",PATHWAY-ID="\\."$`, 'm'));
    });

    it('steering() clones a stream started since the master was loaded, with a fresh auth code, and keeps the player on its own Pathway', async () => {
      const { data, meta } = await steer({ s: STREAM_A, _HLS_pathway: '.' });
      assert.equal(meta.$responseType, 'application/json');
      assert.deepEqual(data['PATHWAY-PRIORITY'], ['.', STREAM_B]);
      const clone = data['PATHWAY-CLONES']!;
      assert.equal(clone.length, 1);
      assert.equal(clone[0]!.ID, STREAM_B);
      assert.equal(clone[0]!['BASE-ID'], '.');
      const uri = clone[0]!['URI-REPLACEMENT']['PER-VARIANT-URIS'].live!;
      const m = new RegExp(`^/s/${STREAM_B}/index\\.m3u8\\?a=([^&]+)`).exec(uri);
      assert.ok(m, uri);
      assert.equal(verifyAuthCode(SECRET, m[1]!, EVENT, STREAM_B, NOW), true);
      assert.ok(data.TTL > 0 && data.TTL <= 10, `TTL ${data.TTL}`);
    });

    it('steering() leaves out a stream that died, so its player moves to the other before a request fails', async () => {
      world.alive.delete(STREAM_A);
      const { data } = await steer({ s: `${STREAM_A},${STREAM_B}`, _HLS_pathway: '.' });
      assert.deepEqual(data['PATHWAY-PRIORITY'], ['..']);
      assert.equal(data['PATHWAY-CLONES'], undefined);
    });

    it('steering() refuses stream IDs of another event or malformed ones (400) and a bad token (403); ignores a bad _HLS_pathway', async () => {
      await assert.rejects(steer({ s: OTHER_EVENT_STREAM }), { code: 400 });
      await assert.rejects(steer({ s: '../../etc' }), { code: 400 });
      await assert.rejects(rig.broker.call('attendee-access.steering', { token: 'not-a-token', s: STREAM_A }), { code: 403 });
      const { data } = await steer({ s: STREAM_A, _HLS_pathway: '<script>' });
      assert.deepEqual(data['PATHWAY-PRIORITY'], ['.', STREAM_B]);
    });
  });

  describe('liveFile', () => {
    it('liveFile() rewrites index.m3u8 with the auth code on each segment and without ENDLIST', async () => {
      const a = codeFor(STREAM_A);
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.liveFile', { streamId: STREAM_A, file: 'index.m3u8', a });
      assert.equal(meta.$responseType, 'application/vnd.apple.mpegurl');
      assert.equal(meta.$responseHeaders['Cache-Control'], 'no-cache');
      assert.doesNotMatch(data, /#EXT-X-ENDLIST/);
      // A live window: it may drop old segments, so it is no EVENT playlist.
      assert.doesNotMatch(data, /#EXT-X-PLAYLIST-TYPE/);
      const uris = data.split('\n').filter((l) => l && !l.startsWith('#'));
      assert.deepEqual(uris, [`seg00000.ts?a=${a}`, `seg00001.ts?a=${a}`, `seg00002.ts?a=${a}`]);
    });

    it('liveFile() answers a segment as video/mp2t with its exact bytes', async () => {
      const { data, meta } = await callWithMeta<Buffer>(rig.broker, 'attendee-access.liveFile', { streamId: STREAM_A, file: 'seg00001.ts', a: codeFor(STREAM_A) });
      assert.equal(meta.$responseType, 'video/mp2t');
      assert.deepEqual(Buffer.from(data), SEG1);
    });

    it('liveFile() answers 403 for a missing, wrong, expired or other-stream auth code', async () => {
      const good = codeFor(STREAM_A);
      const codes = [
        undefined,
        '',
        `${good.slice(0, -1)}${good.endsWith('A') ? 'B' : 'A'}`,
        codeFor(STREAM_A, NOW),
        codeFor(STREAM_A, NOW - 10),
        codeFor(STREAM_B),
        signAuthCode('another-secret-0123456789abcdefghijklmnop', EVENT, STREAM_A, NOW + 60),
      ];
      for (const a of codes) {
        await assert.rejects(rig.broker.call('attendee-access.liveFile', { streamId: STREAM_A, file: 'seg00000.ts', a }), forbidden, String(a));
      }
      assert.deepEqual(world.lookups, [], 'no code check may fall through to monitoring');
    });

    it('liveFile() answers 403 for a code of another event on a stream of that event', async () => {
      const a = signAuthCode(SECRET, '12345682', OTHER_EVENT_STREAM, NOW + 60);
      await assert.rejects(rig.broker.call('attendee-access.liveFile', { streamId: STREAM_A, file: 'index.m3u8', a }), forbidden);
    });

    it('liveFile() answers 404 for a stream monitoring no longer sees alive, even with a valid code', async () => {
      world.alive.delete(STREAM_A);
      await assert.rejects(rig.broker.call('attendee-access.liveFile', { streamId: STREAM_A, file: 'index.m3u8', a: codeFor(STREAM_A) }), notFound);
      await assert.rejects(rig.broker.call('attendee-access.liveFile', { streamId: STREAM_A, file: 'seg00000.ts', a: codeFor(STREAM_A) }), notFound);
    });

    it('liveFile() answers 404 for an alive stream whose file ffmpeg has not written yet', async () => {
      await assert.rejects(rig.broker.call('attendee-access.liveFile', { streamId: STREAM_B, file: 'index.m3u8', a: codeFor(STREAM_B) }), notFound);
    });

    it('liveFile() answers 404 for path traversal in the stream ID or file name without reading outside', async () => {
      const a = codeFor(STREAM_A);
      const attempts: Array<{ streamId: unknown; file: unknown }> = [
        { streamId: STREAM_A, file: '../seg00000.ts' },
        { streamId: STREAM_A, file: '../../secret.ts' },
        { streamId: STREAM_A, file: '%2e%2e/seg00000.ts' },
        { streamId: STREAM_A, file: '..%2fseg00000.ts' },
        { streamId: STREAM_A, file: '/etc/passwd' },
        { streamId: STREAM_A, file: 'seg00000.ts/../../secret.ts' },
        { streamId: STREAM_A, file: 'seg0000.ts' },
        { streamId: STREAM_A, file: 'index.m3u8\u0000' },
        { streamId: STREAM_A, file: ['seg00000.ts'] },
        { streamId: '..', file: 'seg00000.ts' },
        { streamId: `${STREAM_A}/..`, file: 'seg00000.ts' },
        { streamId: '%2e%2e', file: 'secret.ts' },
        { streamId: '/etc', file: 'passwd' },
        { streamId: '12345674-spec..node-10002-lq0abc', file: 'seg00000.ts' },
        { streamId: undefined, file: 'seg00000.ts' },
      ];
      for (const p of attempts) {
        const err = await rig.broker.call('attendee-access.liveFile', { ...p, a }).then(
          (d) => assert.fail(`answered ${String(d)} for ${JSON.stringify(p)}`),
          (e: { code: number }) => e,
        );
        assert.ok(err.code === 404 || err.code === 400, `${JSON.stringify(p)} → ${err.code}`);
      }
      assert.deepEqual(world.lookups, [], 'rejected before any lookup or file access');
    });
  });

  describe('archive', () => {
    function archivedWorld(): void {
      world.info = {
        ...baseInfo(),
        status: 'archived',
        archive: [
          { streamId: STREAM_A, start: 0, end: 4 },
          { streamId: STREAM_B, start: 2.5, end: 6 },
        ],
      };
      for (const s of [STREAM_A, STREAM_B]) world.storedFiles.set(`${EVENT}/${s}/index.m3u8`, Buffer.from(FFMPEG_PLAYLIST));
      world.storedFiles.set(`${EVENT}/${STREAM_B}/seg00002.ts`, SEG0);
    }

    it('archive() joins two fragments with one DISCONTINUITY and only their sliced segments, each behind a code', async () => {
      archivedWorld();
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.archive', { token: attendeeToken() });
      assert.equal(meta.$responseType, 'application/vnd.apple.mpegurl');
      const lines = data.trim().split('\n');
      assert.equal(lines.filter((l) => l === '#EXT-X-DISCONTINUITY').length, 1);
      assert.match(data, /#EXT-X-PLAYLIST-TYPE:VOD/);
      assert.equal(lines.at(-1), '#EXT-X-ENDLIST');
      const uris = lines.filter((l) => !l.startsWith('#'));
      const parsed = uris.map((u) => /^\/a\/([^/]+)\/([^?]+)\?a=(.+)$/.exec(u));
      assert.deepEqual(
        parsed.map((m) => `${m?.[1]}/${m?.[2]}`),
        [`${STREAM_A}/seg00000.ts`, `${STREAM_A}/seg00001.ts`, `${STREAM_B}/seg00001.ts`, `${STREAM_B}/seg00002.ts`],
      );
      for (const m of parsed) assert.equal(verifyAuthCode(SECRET, m![3]!, EVENT, m![1]!, NOW), true);
      // The discontinuity sits right before the second fragment's first segment.
      const disc = lines.indexOf('#EXT-X-DISCONTINUITY');
      assert.equal(lines[disc + 2], uris[2]);
    });

    it('archive() answers 404 stating the status while the event has no archive yet', async () => {
      world.info = { ...baseInfo(), status: 'archiving' };
      await assert.rejects(rig.broker.call('attendee-access.archive', { token: attendeeToken() }), { code: 404, message: /status: archiving/ });
    });

    it('archive() answers 403 for an expired token', async () => {
      archivedWorld();
      await assert.rejects(rig.broker.call('attendee-access.archive', { token: attendeeToken({ x: NOW }) }), { code: 403, message: /expired/ });
    });

    it('archiveFile() answers the stored segment for a valid code', async () => {
      archivedWorld();
      const { data, meta } = await callWithMeta<Buffer>(rig.broker, 'attendee-access.archiveFile', { streamId: STREAM_B, file: 'seg00002.ts', a: codeFor(STREAM_B) });
      assert.equal(meta.$responseType, 'video/mp2t');
      assert.deepEqual(Buffer.from(data), SEG0);
    });

    it('archiveFile() answers 403 for an expired or other-stream code and 404 for the raw playlist or a traversal', async () => {
      archivedWorld();
      await assert.rejects(rig.broker.call('attendee-access.archiveFile', { streamId: STREAM_B, file: 'seg00002.ts', a: codeFor(STREAM_B, NOW - 1) }), forbidden);
      await assert.rejects(rig.broker.call('attendee-access.archiveFile', { streamId: STREAM_B, file: 'seg00002.ts', a: codeFor(STREAM_A) }), forbidden);
      await assert.rejects(rig.broker.call('attendee-access.archiveFile', { streamId: STREAM_B, file: 'index.m3u8', a: codeFor(STREAM_B) }), notFound);
      await assert.rejects(rig.broker.call('attendee-access.archiveFile', { streamId: STREAM_B, file: '../event-info.xml', a: codeFor(STREAM_B) }), notFound);
    });
  });

  describe('status', () => {
    it('status() answers title, status, startsAt, live, archiveReady and role from event.get', async () => {
      world.view = { ...baseInfo(), status: 'live', streams: [{ streamId: STREAM_A, nodeId: 'spec-node', dataCenter: 'dc1', port: 10002, format: 'hls', url: '', startedAt: '' }], callers: 1 };
      const { data, meta } = await callWithMeta<Record<string, unknown>>(rig.broker, 'attendee-access.status', { token: attendeeToken() });
      assert.match(meta.$responseType, /^application\/json/);
      assert.deepEqual(data, {
        eventId: EVENT,
        title: 'Quarterly call',
        status: 'live',
        startsAt: '2027-01-15T10:00:00.000Z',
        live: true,
        archiveReady: false,
        role: 'attendee',
      });
    });

    it('status() reports archiveReady once the event is archived with fragments', async () => {
      world.view = { ...baseInfo(), status: 'archived', archive: [{ streamId: STREAM_A, start: 0, end: 4 }], streams: [], callers: 0 };
      const data = await rig.broker.call<Record<string, unknown>, object>('attendee-access.status', { token: attendeeToken() });
      assert.equal(data.archiveReady, true);
      assert.equal(data.live, false);
    });

    it('status() answers from the token with status "unknown" when the event actor does not answer in time', async () => {
      world.view = 'hang';
      const data = await rig.broker.call<Record<string, unknown>, object>('attendee-access.status', { token: attendeeToken() });
      assert.deepEqual(data, { eventId: EVENT, title: null, status: 'unknown', startsAt: null, live: false, archiveReady: false, role: 'attendee' });
    });

    it('status() answers 403 for a tampered token', async () => {
      const t = attendeeToken();
      await assert.rejects(rig.broker.call('attendee-access.status', { token: 'x' + t.slice(1) }), forbidden);
    });
  });

  describe('password', () => {
    const proof = passwordProof(SECRET, EVENT, 'hunter2');

    it('status(), live() and archive() answer 403 PASSWORD_REQUIRED without the password or with a wrong one', async () => {
      const token = attendeeToken({ p: proof });
      for (const action of ['status', 'live', 'archive']) {
        for (const meta of [{}, { headers: { 'x-event-password': 'hunter3' } }, { headers: { 'x-event-password': '' } }]) {
          await assert.rejects(rig.broker.call(`attendee-access.${action}`, { token }, { meta }), { code: 403, type: 'PASSWORD_REQUIRED' }, `${action} ${JSON.stringify(meta)}`);
        }
      }
    });

    it('status() and live() answer when X-Event-Password matches the token proof', async () => {
      const token = attendeeToken({ p: proof });
      const meta = { headers: { 'x-event-password': 'hunter2' } };
      const status = await rig.broker.call<Record<string, unknown>, object>('attendee-access.status', { token }, { meta: { ...meta } });
      assert.equal(status.title, 'Quarterly call');
      const master = await rig.broker.call<string, object>('attendee-access.live', { token }, { meta: { ...meta } });
      assert.match(master, /\/s\/12345674-spec-node-10002-lq0abc\/index\.m3u8\?a=/);
    });

    it('page() for a password token asks for the password and does not reveal the title', async () => {
      const { data } = await callWithMeta<string>(rig.broker, 'attendee-access.page', { token: attendeeToken({ p: proof }) });
      assert.match(data, /data-password="1"/);
      assert.doesNotMatch(data, /Quarterly call/);
    });
  });

  describe('page', () => {
    it('page() escapes a title holding <script> and runs only its nonce script under a strict CSP', async () => {
      world.view = { ...baseInfo(), title: '</h1><script>alert("x")</script> & co', streams: [], callers: 0 };
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.page', { token: attendeeToken() });
      assert.match(meta.$responseType, /^text\/html/);
      assert.equal(meta.$statusCode, undefined);
      assert.doesNotMatch(data, /<script>alert/);
      assert.match(data, /&#60;\/h1&#62;&#60;script&#62;alert\(&#34;x&#34;\)&#60;\/script&#62; &#38; co/);
      const csp: string = meta.$responseHeaders['Content-Security-Policy'];
      assert.match(csp, /default-src 'self'/);
      assert.match(csp, /media-src 'self' blob:/);
      const nonce = /script-src 'self' 'nonce-([^']+)'/.exec(csp)?.[1];
      assert.ok(nonce);
      const scripts = [...data.matchAll(/<script([^>]*)>/g)].map((m) => m[1]!.trim());
      assert.deepEqual(scripts, ['src="/vendor/hls.min.js"', `nonce="${nonce}"`]);
      assert.match(data, /<audio id="player" controls/);
      assert.equal(meta.$responseHeaders['Referrer-Policy'], 'no-referrer');
    });

    it('page() answers a 403 HTML error page naming the reason for an expired token', async () => {
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.page', { token: attendeeToken({ x: NOW - 5 }) });
      assert.equal(meta.$statusCode, 403);
      assert.match(meta.$responseType, /^text\/html/);
      assert.match(data, /has expired/);
      assert.doesNotMatch(data, /<script/);
    });

    it('page() answers a 403 HTML error page for a forged token', async () => {
      const forged = signToken('another-secret-0123456789abcdefghijklmnop', { e: EVENT, r: 'attendee' });
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.page', { token: forged });
      assert.equal(meta.$statusCode, 403);
      assert.match(data, /signature does not match/);
    });

    it('page() answers a 404 HTML error page for an event the event actor does not know', async () => {
      world.view = 'missing';
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.page', { token: attendeeToken() });
      assert.equal(meta.$statusCode, 404);
      assert.match(data, /does not exist/);
    });

    it('page() still renders with a neutral title when the event actor does not answer', async () => {
      world.view = 'hang';
      const { data, meta } = await callWithMeta<string>(rig.broker, 'attendee-access.page', { token: attendeeToken() });
      assert.equal(meta.$statusCode, undefined);
      assert.match(data, /<h1 id="title">Event 12345674<\/h1>/);
    });
  });
});

describe('attendee-access without an event actor', () => {
  let rig: Rig;
  const world = freshWorld();
  before(async () => {
    rig = await startRig(() => world, { withEvent: false });
  });
  after(async () => {
    await rig.broker.stop();
  });

  it('status() answers from the token with status "unknown" when no event actor is reachable', async () => {
    const data = await rig.broker.call<Record<string, unknown>, object>('attendee-access.status', { token: signToken(SECRET, { e: EVENT, r: 'host' }) });
    assert.deepEqual(data, { eventId: EVENT, title: null, status: 'unknown', startsAt: null, live: false, archiveReady: false, role: 'host' });
  });
});

/** Writes a few seconds of real AAC-in-TS HLS into the stream's live directory, as the encoder would. */
function writeRealStream(config: JitcastConfig, streamId: string, seconds: number): void {
  const dir = join(config.dataDir, 'live', streamId);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync(
    config.ffmpegPath,
    ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`, '-c:a', 'aac', '-b:a', '64k', '-ac', '1',
      '-f', 'hls', '-hls_time', '2', '-hls_playlist_type', 'event', '-hls_segment_filename', join(dir, 'seg%05d.ts'), join(dir, 'index.m3u8')],
    { stdio: 'ignore' },
  );
}

const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];

const HTTP_BASE = 'http://127.0.0.1:18095';
const LIVE_VIEW = (title: string): EventView => ({
  ...baseInfo(),
  title,
  status: 'live',
  streams: [{ streamId: STREAM_A, nodeId: 'spec-node', dataCenter: 'dc1', port: 10002, format: 'hls', url: '', startedAt: '' }],
  callers: 1,
});

describe('attendee-access through the gateway over HTTP', () => {
  let rig: Rig;
  const world = freshWorld();

  before(async () => {
    rig = await startRig(() => world, { httpPort: '18095' });
  });
  after(async () => {
    await rig?.broker.stop();
  });
  beforeEach(() => {
    Object.assign(world, freshWorld());
  });

  it('GET /e/<token> answers the page as text/html with the CSP header', async () => {
    const res = await fetch(`${HTTP_BASE}/e/${attendeeToken()}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self' 'nonce-/);
    assert.match(await res.text(), /<audio id="player" controls/);
  });

  it('GET /e/<expired token> answers 403 with the HTML error page', async () => {
    const res = await fetch(`${HTTP_BASE}/e/${attendeeToken({ x: NOW - 1 })}`);
    assert.equal(res.status, 403);
    assert.match(await res.text(), /has expired/);
  });

  it('GET /e/<token>/live.m3u8 answers the master playlist, and its stream URL answers the rewritten playlist', async () => {
    const master = await fetch(`${HTTP_BASE}/e/${attendeeToken()}/live.m3u8`);
    assert.equal(master.status, 200);
    assert.equal(master.headers.get('content-type')?.split(';')[0], 'application/vnd.apple.mpegurl');
    const uri = (await master.text()).split('\n').find((l) => l.startsWith(`/s/${STREAM_A}/`));
    assert.ok(uri);
    const media = await fetch(HTTP_BASE + uri);
    assert.equal(media.status, 200);
    assert.equal(media.headers.get('cache-control'), 'no-cache');
    const text = await media.text();
    assert.doesNotMatch(text, /ENDLIST/);
    assert.match(text, /^seg00000\.ts\?a=/m);
  });

  it('GET /s/... answers 403 for a bad auth code and 404 or 400 for encoded traversal', async () => {
    const bad = await fetch(`${HTTP_BASE}/s/${STREAM_A}/seg00000.ts?a=1.xyz`);
    assert.equal(bad.status, 403);
    const a = codeFor(STREAM_A);
    for (const path of [`/s/${STREAM_A}/%2e%2e%2fseg00000.ts`, `/s/%2e%2e/seg00000.ts`, `/s/${STREAM_A}/..%2F..%2Fsecret.ts`, `/s/%2Fetc/passwd`]) {
      const res = await fetch(`${HTTP_BASE}${path}?a=${a}`);
      assert.ok(res.status === 404 || res.status === 400, `${path} → ${res.status}`);
    }
  });

  it('GET /e/<password token>/status.json answers 403 PASSWORD_REQUIRED without the header and 200 with it', async () => {
    world.view = LIVE_VIEW('Secret call');
    const token = attendeeToken({ p: passwordProof(SECRET, EVENT, 'hunter2') });
    const without = await fetch(`${HTTP_BASE}/e/${token}/status.json`);
    assert.equal(without.status, 403);
    assert.equal(((await without.json()) as { error: { code: string } }).error.code, 'PASSWORD_REQUIRED');
    const withPw = await fetch(`${HTTP_BASE}/e/${token}/status.json`, { headers: { 'X-Event-Password': 'hunter2' } });
    assert.equal(withPw.status, 200);
    assert.equal(((await withPw.json()) as { title: string }).title, 'Secret call');
  });
});

describe('attendee-access listener hot path through the gateway (hotCacheMs 60 s, as a node under load)', () => {
  const HOT_BASE = 'http://127.0.0.1:18096';
  let rig: Rig;
  const world = freshWorld();

  before(async () => {
    rig = await startRig(() => world, { httpPort: '18096', hotCacheMs: 60_000 });
  });
  after(async () => {
    await rig?.broker.stop();
  });

  it('repeated playlist and segment requests answer the same bytes from memory: monitoring is asked once, the disk read once', async () => {
    const a = codeFor(STREAM_A);
    const seg = async () => {
      const res = await fetch(`${HOT_BASE}/s/${STREAM_A}/seg00000.ts?a=${a}&l=listener-one`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'video/mp2t');
      return Buffer.from(await res.arrayBuffer());
    };
    const playlist = await fetch(`${HOT_BASE}/s/${STREAM_A}/index.m3u8?a=${a}&l=listener-one`);
    assert.equal(playlist.status, 200);
    const first = await playlist.text();
    assert.match(first, new RegExp(`^seg00000\\.ts\\?a=${a.replace(/[.]/g, '\\.')}&l=listener-one$`, 'm'));
    assert.deepEqual(await seg(), SEG0);
    const lookups = world.lookups.length;
    // The disk changes under the cache: a hit must not read it again.
    writeFileSync(join(rig.config.dataDir, 'live', STREAM_A, 'seg00000.ts'), Buffer.from('CHANGED'));
    for (let i = 0; i < 20; i++) assert.deepEqual(await seg(), SEG0);
    const again = await fetch(`${HOT_BASE}/s/${STREAM_A}/index.m3u8?a=${a}&l=listener-two`);
    assert.equal(again.status, 200);
    assert.equal(await again.text(), first.replaceAll('l=listener-one', 'l=listener-two'), 'the playlist is rewritten for each listener');
    assert.equal(world.lookups.length, lookups, 'no monitoring lookup for the warm requests');
  });

  it('a warm stream still refuses a forged auth code with 403 and a code of another stream with 403', async () => {
    const a = codeFor(STREAM_A);
    assert.equal((await fetch(`${HOT_BASE}/s/${STREAM_A}/seg00000.ts?a=${a}`)).status, 200);
    assert.equal((await fetch(`${HOT_BASE}/s/${STREAM_A}/seg00000.ts?a=1.xyz`)).status, 403);
    assert.equal((await fetch(`${HOT_BASE}/s/${STREAM_A}/seg00000.ts?a=${codeFor(STREAM_B)}`)).status, 403);
  });
});

describe('attendee-access player page in headless Chromium', () => {
  let rig: Rig;
  let browser: Browser;
  const world = freshWorld();

  before(async () => {
    rig = await startRig(() => world, { httpPort: '18095' });
    writeRealStream(rig.config, STREAM_A, 12);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await rig?.broker.stop();
  });

  async function openPage(token: string): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    await page.goto(`${HTTP_BASE}/e/${token}`);
    return { page, problems };
  }

  it('page() loads under its CSP, shows "Live" and plays the live stream through hls.js with no console errors', async () => {
    world.alive = new Set([STREAM_A]);
    world.view = LIVE_VIEW('Browser <check>');
    const { page, problems } = await openPage(attendeeToken());
    try {
      await page.waitForFunction(() => (document.getElementById('player') as HTMLAudioElement).currentTime > 0.5, undefined, { timeout: 20_000 });
      assert.equal(await page.textContent('#banner-text'), 'Live');
      assert.equal(await page.textContent('#title'), 'Browser <check>');
      // MediaSource (blob:) means hls.js plays, not Chromium's native HLS player.
      assert.match(await page.$eval('#player', (a) => (a as HTMLAudioElement).src), /^blob:/);
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });

  it('page() shows the "Not started yet" banner for a reserved event with no console errors', async () => {
    world.view = { ...baseInfo(), status: 'reserved', streams: [], callers: 0 };
    const { page, problems } = await openPage(attendeeToken());
    try {
      await page.waitForFunction(() => document.getElementById('banner')?.getAttribute('data-state') === 'waiting' && /Not started yet/.test(document.getElementById('banner-text')?.textContent ?? ''), undefined, { timeout: 10_000 });
      assert.match((await page.textContent('#banner-text')) ?? '', /starts playing when the host dials in/);
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });

  it('page() for a password token plays only after the right password is entered', async () => {
    world.alive = new Set([STREAM_A]);
    world.view = LIVE_VIEW('Secret call');
    const { page } = await openPage(attendeeToken({ p: passwordProof(SECRET, EVENT, 'hunter2') }));
    try {
      await page.waitForSelector('#pw-form.show');
      await page.fill('#pw', 'wrong');
      await page.click('#pw-form button');
      await page.waitForFunction(() => /not right/.test(document.getElementById('pw-err')?.textContent ?? ''), undefined, { timeout: 10_000 });
      await page.fill('#pw', 'hunter2');
      await page.click('#pw-form button');
      await page.waitForFunction(() => (document.getElementById('player') as HTMLAudioElement).currentTime > 0.5, undefined, { timeout: 20_000 });
      assert.equal(await page.textContent('#title'), 'Secret call');
    } finally {
      await page.close();
    }
  });

  it('page() for an archived event shows "Archive" and plays archive.m3u8 after the play button is pressed', async () => {
    const dir = join(rig.config.dataDir, 'live', STREAM_A);
    for (const f of readdirSync(dir)) world.storedFiles.set(`${EVENT}/${STREAM_A}/${f}`, readFileSync(join(dir, f)));
    const archive = [{ streamId: STREAM_A, start: 0, end: 4 }, { streamId: STREAM_A, start: 6, end: 10 }];
    world.info = { ...baseInfo(), status: 'archived', archive };
    world.view = { ...baseInfo(), status: 'archived', archive, streams: [], callers: 0 };
    world.alive = new Set();
    const { page, problems } = await openPage(attendeeToken());
    try {
      await page.waitForSelector('#play.show');
      assert.equal(await page.textContent('#banner-text'), 'Archive');
      await page.click('#play');
      await page.waitForFunction(() => (document.getElementById('player') as HTMLAudioElement).currentTime > 0.5, undefined, { timeout: 20_000 });
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });
});
