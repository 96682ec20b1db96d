/**
 * In-band DTMF end to end: a sipp caller offers PCMU without telephone-event, so its keys can
 * only arrive as tones in the audio (Q.23 pairs, 80 ms on / 120 ms off at about -11 dBm0 per
 * tone). The node must hear the event ID and PIN in the audio, take the caller live, and the
 * cast must carry the caller's 1 kHz tone once the keys are done.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMediaPlaylist } from '../../codecs/hls.ts';
import { dtmfFrequencies, rms, toneFrequency } from '../../codecs/tones.ts';
import { describePcm } from '../support/audio.ts';
import { decodeHls } from '../support/hls-client.ts';
import { callPackets, tone, writePcap } from '../support/pcap.ts';
import { dialInScenario, runSipp, type SippResult } from '../support/sipp.ts';
import { startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';

/** One key block: digits keyed 200 ms apart starting at `atMs`. */
interface KeyBlock {
  atMs: number;
  digits: string;
}

const KEY_ON_MS = 80;
const KEY_PERIOD_MS = 200;
/** Peak of each of the two DTMF sines (about -11 dBm0 each, a healthy phone level). */
const KEY_AMPLITUDE = 6000;

/**
 * The caller's microphone: `background` except around key blocks, where it is quiet (as when
 * someone keys on a handset) apart from each key's two sines for 80 ms every 200 ms.
 */
function keyedAudio(blocks: KeyBlock[], background: (n: number) => number): (n: number) => number {
  const spans = blocks.map((b) => ({ from: b.atMs - 100, to: b.atMs + b.digits.length * KEY_PERIOD_MS + 100, block: b }));
  return (n) => {
    const t = n / 8;
    const span = spans.find((s) => t >= s.from && t < s.to);
    if (!span) return background(n);
    const i = Math.floor((t - span.block.atMs) / KEY_PERIOD_MS);
    if (i < 0 || i >= span.block.digits.length) return 0;
    const start = span.block.atMs + i * KEY_PERIOD_MS;
    if (t - start >= KEY_ON_MS) return 0;
    const [low, high] = dtmfFrequencies(span.block.digits[i]);
    const k = n - start * 8;
    return Math.round(KEY_AMPLITUDE * (Math.sin((2 * Math.PI * low * k) / 8000) + Math.sin((2 * Math.PI * high * k) / 8000)));
  };
}

describe('in-band DTMF dial-in (sipp, PCMU without telephone-event)', { timeout: 110_000 }, () => {
  let node: NodeUnderTest;
  let sipp: Promise<SippResult> | undefined;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-inband-'));

  before(async () => {
    node = await startNodeProcess({
      httpPort: 28480,
      sipPort: 25460,
      rtpPorts: '26400-26449',
      encoderPorts: '27400-27449',
      // debug: the voice server logs each digit with how it arrived (`via:inband`).
      env: { JITCAST_ARCHIVE_TIMEOUT_S: '2', JITCAST_LOG_LEVEL: 'debug' },
    });
  });
  after(async () => {
    // sipp ends by itself (caller BYE, -timeout); wait for it so no process outlives the spec.
    await sipp;
    await node?.stop();
  });

  test('keys sent only as in-band tones take the caller live, and the cast carries its 1 kHz tone', async () => {
    const res = await node.api('POST', '/api/events', { title: 'In-band DTMF' });
    assert.equal(res.status, 201, res.text);
    const { eventId, pin, attendeeUrl } = res.body;
    // The first reservation opens the embedded DB, which stalls the node for seconds: wait it out.

    const idKeys = `${eventId}#`;
    const pinKeys = `${pin}#`;
    const idAt = 1500;
    const pinAt = idAt + idKeys.length * KEY_PERIOD_MS + 600;
    const keysDone = pinAt + pinKeys.length * KEY_PERIOD_MS;
    const holdMs = 16_000;
    const pcap = join(work, 'inband.pcap');
    // No eventPt: callPackets sends no RFC 4733 packets, only PCMU audio with the tones in it.
    writePcap(pcap, callPackets({ durationMs: holdMs, audio: keyedAudio([{ atMs: idAt, digits: idKeys }, { atMs: pinAt, digits: pinKeys }], tone(1000)), keys: [] }));
    const scenario = dialInScenario(work, 'inband', { pcap, holdMs, ending: 'caller-bye', inbandOnly: true });
    const started = Date.now();
    sipp = runSipp({ scenario, target: `127.0.0.1:${node.sipPort}`, localPort: 25470, mediaPort: 25480, cwd: work, timeoutS: 40 });
    const diag = () => `\nnode log (tail):\n${node.output().split('\n').filter((l) => !/\$node|heartbeat|DISCOVER|INFO packet/i.test(l)).slice(-40).join('\n')}`;

    const master = await waitFor('live.m3u8 after in-band keys', async () => {
      const r = await fetch(`${attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 20_000).catch((err: Error) => assert.fail(`${err.message}${diag()}`));
    const liveAfterMs = Date.now() - started;
    assert.ok(liveAfterMs >= keysDone - 500, `live only once the PIN was keyed (${liveAfterMs} ms, keys done at ${keysDone} ms)`);

    // Every key came in-band: the node negotiated no telephone-event and heard each key once.
    const cluster = (await node.api('GET', '/api/cluster')).body;
    const channel = cluster.voiceServers[0].channels.find((c: { eventId?: string }) => c.eventId === eventId);
    assert.ok(channel, `the caller is listed live${diag()}`);
    assert.equal(channel.codec, 'PCMU');
    assert.equal(channel.stats.digits, idKeys.length + pinKeys.length, `digits counted on the channel${diag()}`);
    const viaLines = node.output().match(/via:(\w+)/g) ?? [];
    assert.deepEqual([...new Set(viaLines)], ['via:inband'], `every digit arrived in-band${diag()}`);
    assert.equal(viaLines.length, idKeys.length + pinKeys.length, `each key recognised once${diag()}`);

    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, node.baseUrl).toString();
    await waitFor('two live segments', async () => {
      const r = await fetch(variant);
      return r.status === 200 && parseMediaPlaylist(await r.text()).segments.length >= 2 ? true : undefined;
    }, 20_000);
    const live = await decodeHls(variant, 3, 0);
    const sample = live.subarray(4000);
    const f = toneFrequency(sample);
    assert.ok(rms(sample) > 1000 && Math.abs(f - 1000) < 30, `the cast carries the 1 kHz tone (found ${f.toFixed(1)} Hz, rms ${rms(sample).toFixed(0)}):\n${describePcm(live, [1000])}`);

    const result = await sipp;
    assert.equal(result.code, 0, `sipp failed:\n${result.stdout}\n${result.stderr}`);
  });
});
