/**
 * The conference bridge end to end with two independent SIP clients (baresip): caller A streams
 * 700 Hz, caller B 1300 Hz, both key the same event ID and PIN. What each caller RECEIVES is
 * recorded by baresip's `sndfile` filter (the decoded audio on its way to the speaker): A must
 * hear B's 1300 Hz and not its own 700 Hz, B the reverse (mix-minus); and the cast (the live HLS
 * stream, decoded by ffmpeg) must carry both tones.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sine, toneFrequency } from '../../codecs/tones.ts';
import { describePcm, toneLevel, writeWav } from '../support/audio.ts';
import { startBaresip, type Baresip } from '../support/baresip.ts';
import { decodeHls, segmentsListed } from '../support/hls-client.ts';
import { startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const A_HZ = 700;
const B_HZ = 1300;
/** The other caller's tone must be this much stronger (power) than one's own: 20 dB. */
const MIN_OTHER_OVER_OWN = 100;
/** Peak amplitude a clearly audible tone keeps through G.711 (sent at 8000). */
const MIN_AUDIBLE = 2000;

/** Length of the node's "you are now live" prompt (8 kHz 16-bit PCM cached in its data directory). */
function joinedPromptMs(dataDir: string): number {
  const dir = join(dataDir, 'prompts');
  const file = readdirSync(dir).find((f) => f.startsWith('joined-'));
  return file ? statSync(join(dir, file)).size / 16 : 8000;
}

describe('conference: two baresip callers on one event hear each other, not themselves', { timeout: 115_000 }, () => {
  let node: NodeUnderTest;
  const phones: Baresip[] = [];
  const work = mkdtempSync(join(tmpdir(), 'jitcast-conf-'));

  before(async () => {
    node = await startNodeProcess({ httpPort: 28580, sipPort: 25560, rtpPorts: '26500-26549', encoderPorts: '27500-27549', env: { JITCAST_ARCHIVE_TIMEOUT_S: '2' } });
  });
  after(async () => {
    await Promise.all(phones.map((p) => p.stop()));
    await node?.stop();
  });

  test('each caller receives the other caller\'s tone and not its own; the cast carries both', async (t) => {
    const res = await node.api('POST', '/api/events', { title: 'Two callers' });
    assert.equal(res.status, 201, res.text);
    const { eventId, pin, attendeeUrl } = res.body;
    // The first reservation opens the embedded DB, which stalls the node for seconds: wait it out.

    const why = (msg: string) =>
      `${msg}\n${phones.map((p, i) => `--- baresip ${'AB'[i]} output ---\n${p.output().slice(-2500)}`).join('\n')}\n--- node output (tail) ---\n${node.output().slice(-3000)}`;
    const channelOf = async (user: string) =>
      ((await node.api('GET', '/api/cluster')).body?.voiceServers?.[0]?.channels ?? []).find((c: { caller: string }) => c.caller.includes(user));

    /** Dials in one caller with its tone and keys the ID and PIN; resolves once it is live. */
    const join1 = async (user: string, hz: number, sipPort: number, rtpPorts: [number, number]): Promise<Baresip> => {
      const wav = join(work, `${user}.wav`);
      writeWav(wav, sine(hz, 90_000, 8000));
      const phone = startBaresip({ dir: join(work, user), sipPort, consPort: sipPort + 3, rtpPorts, wav, dial: `sip:jitcast@127.0.0.1:${node.sipPort}`, user, record: true });
      phones.push(phone);
      await phone.established().catch((err: Error) => assert.fail(why(`${user}: ${err.message}`)));
      const phase = (want: string) =>
        waitFor(`${user} in phase ${want}`, async () => ((await channelOf(user))?.phase === want ? true : undefined), 10_000).catch((err: Error) => assert.fail(why(err.message)));
      await phase('event-id');
      await sleep(500);
      await phone.command(`/sndcode ${eventId}#`);
      await phase('pin');
      await sleep(500);
      await phone.command(`/sndcode ${pin}#`);
      await phase('live');
      return phone;
    };

    const a = await join1('alice', A_HZ, 25570, [25574, 25579]);
    const master = await waitFor('live.m3u8', async () => {
      const r = await fetch(`${attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 20_000).catch((err: Error) => assert.fail(why(err.message)));
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, node.baseUrl).toString();
    const b = await join1('bob', B_HZ, 25580, [25584, 25589]);
    const bLiveAt = Date.now();
    const segmentCount = async () => {
      const r = await fetch(variant);
      return r.status === 200 ? segmentsListed(await r.text()) : 0;
    };
    const segmentsAtBothLive = await segmentCount();
    const conf = (await node.api('GET', '/api/cluster')).body.voiceServers[0].conferences.find((c: { eventId: string }) => c.eventId === eventId);
    assert.equal(conf?.members, 2, why('one conference with both callers'));

    // The cast: two segments cut wholly after both callers were live carry both tones.
    await waitFor('four more live segments', async () => ((await segmentCount()) >= segmentsAtBothLive + 4 ? true : undefined), 20_000).catch((err: Error) =>
      assert.fail(why(err.message)),
    );
    const cast = await decodeHls(variant, 3, -2);
    const castA = toneLevel(cast, A_HZ);
    const castB = toneLevel(cast, B_HZ);
    const castInfo = `cast levels ${A_HZ} Hz: ${Math.sqrt(castA).toFixed(0)}, ${B_HZ} Hz: ${Math.sqrt(castB).toFixed(0)}\n${describePcm(cast, [A_HZ, B_HZ])}`;
    t.diagnostic(`cast: ${A_HZ} Hz at ${Math.sqrt(castA).toFixed(0)}, ${B_HZ} Hz at ${Math.sqrt(castB).toFixed(0)} (peak amplitude)`);
    assert.ok(Math.sqrt(castA) > 1000 && Math.sqrt(castB) > 1000, why(`the cast carries both tones: ${castInfo}`));
    assert.ok(castA / castB < 10 && castB / castA < 10, why(`both tones in the cast within 10 dB: ${castInfo}`));

    // Let B's "you are live" prompt play out (the prompt replaces the conference audio while it
    // plays), then 4 s more of conference. Hang up both at once, so neither hears the other
    // leave inside the window analysed.
    await sleep(Math.max(0, bLiveAt + joinedPromptMs(node.dataDir) + 4500 - Date.now()));
    await Promise.all([a.stop(), b.stop()]);

    for (const [name, phone, own, other] of [['A', a, A_HZ, B_HZ], ['B', b, B_HZ, A_HZ]] as const) {
      const heard = phone.received();
      assert.ok(heard.length > 8000 * 8, why(`${name} recorded ${heard.length / 8000} s of received audio`));
      // The last seconds before the hang-up, leaving out the final half second.
      const window = heard.subarray(heard.length - 8000 * 3.5, heard.length - 4000);
      const ownLevel = toneLevel(window, own);
      const otherLevel = toneLevel(window, other);
      const info = `${name} received ${Math.sqrt(otherLevel).toFixed(0)} at ${other} Hz (the other caller), ${Math.sqrt(ownLevel).toFixed(0)} at ${own} Hz (its own); per second:\n${describePcm(heard, [A_HZ, B_HZ])}`;
      t.diagnostic(`${name} hears ${other} Hz at ${Math.sqrt(otherLevel).toFixed(0)}, its own ${own} Hz at ${Math.sqrt(ownLevel).toFixed(1)} (${(10 * Math.log10(otherLevel / Math.max(ownLevel, 1e-9))).toFixed(1)} dB apart)`);
      assert.ok(Math.sqrt(otherLevel) > MIN_AUDIBLE, why(`${name} hears the other caller: ${info}`));
      assert.ok(otherLevel > ownLevel * MIN_OTHER_OVER_OWN, why(`${name} does not hear itself: ${info}`));
      assert.ok(Math.abs(toneFrequency(window) - other) < 20, why(`${name}'s received audio peaks at ${toneFrequency(window).toFixed(1)} Hz: ${info}`));
    }
  });
});
