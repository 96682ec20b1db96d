/**
 * End to end on one node, as a user would: start `jitcast start`, reserve over HTTP, dial in with
 * sipp streaming a 1 kHz tone and keying the event ID and PIN as RFC 4733 events, find the tone
 * in the live HLS stream (decoded by ffmpeg as an HLS client), hang up, and play the archive.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMediaPlaylist } from '../../codecs/hls.ts';
import { rms, toneFrequency } from '../../codecs/tones.ts';
import { decodeHls, playlistSeconds } from '../support/hls-client.ts';
import { callPackets, tone, writePcap } from '../support/pcap.ts';
import { dialInScenario, runSipp } from '../support/sipp.ts';
import { startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';

describe('dial-in end to end (sipp, RFC 4733, 1 kHz tone)', { timeout: 180_000 }, () => {
  let node: NodeUnderTest;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-dialin-'));

  before(async () => {
    node = await startNodeProcess({ httpPort: 28080, sipPort: 25060, rtpPorts: '26000-26049', encoderPorts: '27000-27049', env: { JITCAST_ARCHIVE_TIMEOUT_S: '2' } });
  });
  after(async () => {
    await node?.stop();
  });

  test('a reserved event goes live from a sipp call, carries the tone, and is archived with the call length', async () => {
    const res = await node.api('POST', '/api/events', { title: 'E2E tone test' });
    assert.equal(res.status, 201, res.text);
    const { eventId, pin, attendeeUrl } = res.body;
    assert.match(eventId, /^\d{8}$/);
    assert.match(pin, /^\d{6}$/);

    const page = await fetch(attendeeUrl);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /E2E tone test/);
    assert.equal((await fetch(`${attendeeUrl}/live.m3u8`)).status, 404, 'not live before anyone dials in');

    // Keys: event ID + '#' at 1.5 s, PIN + '#' after it; the tone runs throughout.
    const idKeys = `${eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    const pinDone = pinAt + (pin.length + 1) * 200;
    const holdMs = 16_000;
    const pcap = join(work, 'call.pcap');
    writePcap(pcap, callPackets({ durationMs: holdMs, audio: tone(1000), keys: [{ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${pin}#` }], eventPt: 101 }));
    const scenario = dialInScenario(work, 'dial-in', { pcap, holdMs, ending: 'caller-bye' });
    const sipp = runSipp({ scenario, target: `127.0.0.1:${node.sipPort}`, localPort: 25080, mediaPort: 25090, cwd: work });

    const master = await waitFor('live.m3u8', async () => {
      const r = await fetch(`${attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 20_000);
    assert.match(master, /#EXT-X-STREAM-INF/);
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, node.baseUrl).toString();
    await waitFor('two live segments', async () => {
      const r = await fetch(variant);
      return r.status === 200 && parseMediaPlaylist(await r.text()).segments.length >= 2 ? true : undefined;
    }, 20_000);
    const live = await decodeHls(variant, 3, 0);
    assert.ok(live.length > 8000 * 2, `decoded ${live.length} samples`);
    // Skip the first half second (the stream starts right as the caller goes live).
    const sample = live.subarray(4000);
    assert.ok(rms(sample) > 1000, `live audio has signal (rms ${rms(sample)})`);
    assert.ok(Math.abs(toneFrequency(sample) - 1000) < 30, `live tone at ${toneFrequency(sample)} Hz`);

    const result = await sipp;
    assert.equal(result.code, 0, `sipp failed:\n${result.stdout}\n${result.stderr}`);

    const archived = await waitFor('archived status', async () => {
      const r = await node.api('GET', `/api/events/${eventId}`);
      return r.body?.status === 'archived' ? r.body : undefined;
    }, 60_000);
    assert.ok(archived.archive.length >= 1);

    // "archived" is shown only once event-info.xml (which archive.m3u8 reads) holds the archive.
    const vod = await fetch(`${attendeeUrl}/archive.m3u8`);
    const vodText = await vod.text();
    assert.equal(vod.status, 200, `archive.m3u8 answered ${vod.status} right after the API said archived: ${vodText.slice(0, 300)}`);
    assert.match(vodText, /#EXT-X-PLAYLIST-TYPE:VOD/);
    assert.match(vodText, /#EXT-X-ENDLIST/);
    const liveCallS = (holdMs - pinDone) / 1000;
    const archiveS = playlistSeconds(vodText);
    assert.ok(Math.abs(archiveS - liveCallS) <= 2 + 0.5, `archive lasts ${archiveS.toFixed(2)} s, the live call ${liveCallS.toFixed(2)} s`);
    const first = vodText.split('\n').find((l) => l.startsWith('/a/'))!;
    const pcm = await decodeHls(`${attendeeUrl}/archive.m3u8`, 4);
    assert.ok(first && pcm.length > 8000, 'archive decodes');
    assert.ok(Math.abs(toneFrequency(pcm.subarray(4000)) - 1000) < 30, `archive tone at ${toneFrequency(pcm.subarray(4000))} Hz`);
  });

  test('*399# keyed while live ends the event at once: the caller is hung up and the archive follows', async () => {
    const ev = (await node.api('POST', '/api/events', { title: 'End code test' })).body;
    const idKeys = `${ev.eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    const endAt = pinAt + 7 * 200 + 4000;
    const pcap = join(work, 'endcode.pcap');
    writePcap(pcap, callPackets({ durationMs: 30_000, audio: tone(1000), keys: [{ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${ev.pin}#` }, { atMs: endAt, digits: '*399#' }], eventPt: 101 }));
    const r = await runSipp({ scenario: dialInScenario(work, 'endcode', { pcap, holdMs: 25_000, ending: 'expect-bye' }), target: `127.0.0.1:${node.sipPort}`, localPort: 25080, mediaPort: 25090, cwd: work });
    assert.equal(r.code, 0, `the caller was not hung up after *399#:\n${r.stdout}`);
    const done = await waitFor('archived after the end code', async () => {
      const v = (await node.api('GET', `/api/events/${ev.eventId}`)).body;
      return v.status === 'archived' ? v : undefined;
    }, 30_000);
    assert.ok(done.endedAt, 'endedAt is set');
  });

  test('POST /api/events/:id/end ends a live event: the caller is hung up', async () => {
    const ev = (await node.api('POST', '/api/events', { title: 'API end test' })).body;
    const idKeys = `${ev.eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    const pcap = join(work, 'apiend.pcap');
    writePcap(pcap, callPackets({ durationMs: 30_000, audio: tone(1000), keys: [{ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${ev.pin}#` }], eventPt: 101 }));
    const call = runSipp({ scenario: dialInScenario(work, 'apiend', { pcap, holdMs: 25_000, ending: 'expect-bye' }), target: `127.0.0.1:${node.sipPort}`, localPort: 25080, mediaPort: 25090, cwd: work });
    await waitFor('the event live', async () => ((await node.api('GET', `/api/events/${ev.eventId}`)).body.status === 'live' ? true : undefined), 20_000);
    const ended = await node.api('POST', `/api/events/${ev.eventId}/end`);
    assert.equal(ended.status, 200, ended.text);
    assert.equal(ended.body.status, 'ended');
    const r = await call;
    assert.equal(r.code, 0, `the caller was not hung up after POST …/end:\n${r.stdout}`);
    assert.equal((await node.api('POST', `/api/events/${ev.eventId}/end`)).status, 409, 'ending twice is a state conflict');
  });
});
