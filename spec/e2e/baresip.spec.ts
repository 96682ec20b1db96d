/**
 * The dial-in call placed by baresip, an independent SIP client: it streams a 1 kHz tone from a
 * WAV file, keys the event ID and PIN with `/sndcode` over its console (its own RFC 4733 events),
 * the event goes live, the live HLS decodes to the tone, baresip hangs up, and the event is
 * archived with an `archive.m3u8`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMediaPlaylist } from '../../codecs/hls.ts';
import { rms, sine, toneFrequency } from '../../codecs/tones.ts';
import { describePcm, writeWav } from '../support/audio.ts';
import { startBaresip, type Baresip } from '../support/baresip.ts';
import { decodeHls, playlistSeconds } from '../support/hls-client.ts';
import { startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('dial-in end to end with baresip (RFC 4733 from /sndcode, 1 kHz tone)', { timeout: 110_000 }, () => {
  let node: NodeUnderTest;
  let phone: Baresip | undefined;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-baresip-'));

  before(async () => {
    node = await startNodeProcess({ httpPort: 28380, sipPort: 25360, rtpPorts: '26300-26349', encoderPorts: '27300-27349', env: { JITCAST_ARCHIVE_TIMEOUT_S: '2' } });
  });
  after(async () => {
    await phone?.stop();
    await node?.stop();
  });

  test('baresip dials, keys ID and PIN, goes live with its tone, hangs up, and the event is archived', async () => {
    const res = await node.api('POST', '/api/events', { title: 'baresip call' });
    assert.equal(res.status, 201, res.text);
    const { eventId, pin, attendeeUrl } = res.body;
    // The first reservation opens the embedded DB, which stalls the node for seconds: wait it out.

    const wav = join(work, 'tone-1k.wav');
    writeWav(wav, sine(1000, 90_000, 8000));
    phone = startBaresip({ dir: join(work, 'phone'), sipPort: 25370, consPort: 25373, rtpPorts: [25380, 25389], wav, dial: `sip:jitcast@127.0.0.1:${node.sipPort}`, user: 'baresip-caller' });
    const p = phone;
    const why = (msg: string) => `${msg}\n--- baresip output ---\n${p.output().slice(-4000)}\n--- node output (tail) ---\n${node.output().slice(-3000)}`;

    await p.established().catch((err: Error) => assert.fail(why(err.message)));
    const channel = await waitFor('the call on the voice server', async () => {
      const c = (await node.api('GET', '/api/cluster')).body?.voiceServers?.[0]?.channels?.[0];
      return c && c.phase === 'event-id' ? c : undefined;
    }, 10_000).catch((err: Error) => assert.fail(why(err.message)));
    assert.equal(channel.codec, 'PCMU');

    await sleep(800);
    await p.command(`/sndcode ${eventId}#`);
    // baresip sends the keys one after the other; give them time before the PIN.
    await waitFor('the PIN prompt phase', async () => {
      const c = (await node.api('GET', '/api/cluster')).body.voiceServers[0].channels[0];
      return c?.phase === 'pin' ? true : undefined;
    }, 10_000).catch((err: Error) => assert.fail(why(err.message)));
    await sleep(800);
    await p.command(`/sndcode ${pin}#`);
    const liveAt = Date.now();

    const master = await waitFor('live.m3u8', async () => {
      const r = await fetch(`${attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 20_000).catch((err: Error) => assert.fail(why(err.message)));
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, node.baseUrl).toString();
    await waitFor('two live segments', async () => {
      const r = await fetch(variant);
      return r.status === 200 && parseMediaPlaylist(await r.text()).segments.length >= 2 ? true : undefined;
    }, 20_000).catch((err: Error) => assert.fail(why(err.message)));
    const live = await decodeHls(variant, 3, 0);
    const sample = live.subarray(4000);
    const f = toneFrequency(sample);
    assert.ok(rms(sample) > 1000 && Math.abs(f - 1000) < 30, why(`live tone at ${f.toFixed(1)} Hz, rms ${rms(sample).toFixed(0)}:\n${describePcm(live, [1000])}`));

    // Let the archive have a few seconds, then hang up from the phone.
    await sleep(Math.max(0, 6000 - (Date.now() - liveAt)));
    await p.command('/hangup');
    const hungUpAt = Date.now();
    await waitFor('the call gone from the voice server', async () => {
      const vs = (await node.api('GET', '/api/cluster')).body.voiceServers[0];
      return vs.channels.length === 0 ? true : undefined;
    }, 10_000).catch((err: Error) => assert.fail(why(err.message)));
    await waitFor('baresip to see the call end', async () => (/terminate/.test(p.output()) ? true : undefined), 5000).catch((err: Error) => assert.fail(why(err.message)));

    const archived = await waitFor('archived status', async () => {
      const r = await node.api('GET', `/api/events/${eventId}`);
      return r.body?.status === 'archived' ? r.body : undefined;
    }, 45_000).catch((err: Error) => assert.fail(why(err.message)));
    assert.ok(archived.archive.length >= 1, 'the archive has a fragment');
    // "archived" is shown only once event-info.xml (which archive.m3u8 reads) holds the archive.
    const vod = await fetch(`${attendeeUrl}/archive.m3u8`);
    const vodText = await vod.text();
    assert.equal(vod.status, 200, why(`archive.m3u8 answered ${vod.status}: ${vodText.slice(0, 300)}; event: ${JSON.stringify(archived)}`));
    assert.match(vodText, /#EXT-X-ENDLIST/);
    const callS = (hungUpAt - liveAt) / 1000;
    const archiveS = playlistSeconds(vodText);
    assert.ok(Math.abs(archiveS - callS) <= 3, `archive lasts ${archiveS.toFixed(2)} s, the live call about ${callS.toFixed(2)} s`);
    const pcm = await decodeHls(`${attendeeUrl}/archive.m3u8`, 3);
    assert.ok(Math.abs(toneFrequency(pcm.subarray(4000)) - 1000) < 30, `archive tone at ${toneFrequency(pcm.subarray(4000)).toFixed(1)} Hz`);
  });
});
