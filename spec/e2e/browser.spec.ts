/**
 * A listener's browser: headless Chromium (Debian, driven by playwright-core) opens the attendee
 * link before anyone dials in, sees "not started", then — once a sipp caller is live — plays the
 * event through hls.js, and the audio element's currentTime advances.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { callPackets, tone, writePcap } from '../support/pcap.ts';
import { dialInScenario, runSipp } from '../support/sipp.ts';
import { startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';

const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];

describe('attendee page in headless Chromium during a live call', { timeout: 180_000 }, () => {
  let node: NodeUnderTest;
  let browser: Browser;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-browser-'));

  before(async () => {
    node = await startNodeProcess({ httpPort: 28280, sipPort: 25260, rtpPorts: '26200-26249', encoderPorts: '27200-27249', env: { JITCAST_ARCHIVE_TIMEOUT_S: '2' } });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await node?.stop();
  });

  test('the page says "not started", then plays the live call: currentTime advances', async () => {
    const ev = (await node.api('POST', '/api/events', { title: 'Browser listening test' })).body;
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    await page.goto(ev.attendeeUrl);
    await page.waitForFunction(() => /not started/i.test(document.body.innerText), undefined, { timeout: 10_000 });
    assert.match(await page.title(), /Browser listening test/);

    const idKeys = `${ev.eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    const holdMs = 30_000;
    const pcap = join(work, 'call.pcap');
    writePcap(pcap, callPackets({ durationMs: holdMs, audio: tone(440), keys: [{ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${ev.pin}#` }], eventPt: 101 }));
    const call = runSipp({ scenario: dialInScenario(work, 'browser', { pcap, holdMs, ending: 'caller-bye' }), target: `127.0.0.1:${node.sipPort}`, localPort: 25280, mediaPort: 25290, cwd: work });

    // The page notices on its own (status polling) and starts hls.js.
    await page.waitForFunction(() => /live/i.test(document.body.innerText), undefined, { timeout: 20_000 });
    const t1 = await waitFor('playback to start', async () => {
      const t = await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).currentTime);
      return t > 0.5 ? t : undefined;
    }, 25_000);
    await new Promise((r) => setTimeout(r, 4000));
    const t2 = await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).currentTime);
    assert.ok(t2 - t1 > 2.5, `currentTime advanced ${(t2 - t1).toFixed(2)} s in 4 s`);
    const usesHlsJs = await page.evaluate(() => (document.getElementById('player') as HTMLAudioElement).src.startsWith('blob:'));
    assert.ok(usesHlsJs, 'played through hls.js (MediaSource), not the native player');
    assert.deepEqual(problems, []);
    const result = await call;
    assert.equal(result.code, 0, result.stdout);
    await page.close();
  });
});
