/**
 * The event manager in headless Chromium during a live call (issue 5 item 3): one embedded node
 * (`jitcast start`, every role), a real sipp caller keying the event ID and PIN; the dashboard,
 * opened with the operator key, shows the call (event live, the caller's channel, the live stream),
 * the node and the archive leader; "End" on the event's row ends it, the caller is hung up and the
 * row's state moves on from live.
 *
 * Ports: cluster slot 5 (spec/support/cluster.ts nodePorts(5, 0), sippPorts(5)).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { nodePorts, placeCall, sippPorts } from '../support/cluster.ts';
import { startNodeProcess, type NodeUnderTest } from '../support/node-process.ts';

const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

describe('event manager dashboard in Chromium during a live call', { timeout: 120_000 }, () => {
  let node: NodeUnderTest;
  let browser: Browser;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-dashboard-'));
  const ports = nodePorts(5, 0);
  const sipp = sippPorts(5);

  before(async () => {
    // Health tests off: the start-up tests cost the node seconds of ffmpeg; the pools view is in spec/actors/dashboard-page.spec.ts.
    [node, browser] = await Promise.all([
      startNodeProcess({ ...ports, env: { JITCAST_ARCHIVE_TIMEOUT_S: '2', JITCAST_HEALTH_TEST_INTERVAL_S: '0' } }),
      chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS }),
    ]);
  });
  after(async () => {
    await browser?.close();
    await node?.stop();
  });

  test('shows the call, the node and the archive leader; End on the row ends the event and hangs up the caller', async () => {
    const reserved = await node.api('POST', '/api/events', { title: 'Dashboard <live> call' });
    assert.equal(reserved.status, 201, reserved.text);
    const { eventId, pin } = reserved.body;
    const call = placeCall({
      dir: work, name: 'dashboard', target: `127.0.0.1:${node.sipPort}`, event: { eventId, pin }, holdMs: 40_000,
      localPort: sipp.sip(0), mediaPort: sipp.media(0), expectBye: true,
    });

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    try {
      await page.goto(`${node.baseUrl}/dashboard`);
      // No key yet: the page asks for one, and nothing is polled.
      await page.waitForSelector('#login.show');
      await page.fill('#key', node.apiKey);
      await page.click('#login button[type=submit]');
      await page.waitForSelector('body[data-ready="1"]', { timeout: 10_000 });

      // The node and the archive leader (embedded: this node leads).
      const nodeRow = page.locator(`#nodes tr[data-node="e2e-node"]`);
      await nodeRow.waitFor();
      assert.match(await nodeRow.innerText(), /e2e-node[\s\S]*up/);
      await page.waitForFunction(() => document.getElementById('leader')?.textContent === 'e2e-node', undefined, { timeout: 10_000 });
      assert.match(await nodeRow.innerText(), /archive leader/);

      // The call: the event goes live, the caller's channel and the event's stream appear.
      const row = page.locator(`#events tr[data-event="${eventId}"]`);
      await page.waitForSelector(`#events tr[data-event="${eventId}"][data-status="live"]`, { timeout: 25_000 });
      assert.match(await row.innerText(), /Dashboard <live> call/);
      await page.waitForFunction((id) => Array.from(document.querySelectorAll('#channels tr')).some((tr) => tr.textContent!.includes(id) && tr.textContent!.includes('live')), eventId, { timeout: 10_000 });
      await page.waitForSelector(`#streams tr[data-event="${eventId}"]`, { timeout: 15_000 });
      assert.match(await page.locator(`#voice tr[data-voice="e2e-node"]`).innerText(), /in-service[\s\S]*1 busy/);
      await page.waitForFunction((id) => /^[1-9]/.test(document.querySelector(`#events tr[data-event="${id}"] td:nth-child(4)`)?.textContent ?? ''), eventId, { timeout: 10_000 });
      assert.equal(await page.textContent('#t-live'), '1');

      // End from the page: the first click arms the button, the second ends the event.
      const end = row.locator(`button[data-act="end:${eventId}"]`);
      await end.click();
      await page.waitForSelector(`button[data-act="end:${eventId}"].armed`);
      assert.equal(await end.textContent(), 'End now?');
      await end.click();
      await page.waitForFunction((id) => {
        const s = document.querySelector(`#events tr[data-event="${id}"]`)?.getAttribute('data-status');
        return s === 'ended' || s === 'archiving' || s === 'archived';
      }, eventId, { timeout: 10_000 });
      assert.match((await page.textContent('#flash')) ?? '', new RegExp(`Event ${eventId} is ended`));
      assert.equal(await row.locator(`button[data-act="end:${eventId}"]`).isDisabled(), true);

      const result = await call.done;
      assert.equal(result.code, 0, `the caller was not hung up after End on the dashboard:\n${result.stdout}`);
      const api = await node.api('GET', `/api/events/${eventId}`);
      assert.notEqual(api.body.status, 'live');
      await page.waitForFunction((id) => !document.querySelector(`#streams tr[data-event="${id}"]`), eventId, { timeout: 15_000 });

      // The key is kept for the tab: a reload goes straight to the data.
      await page.reload();
      await page.waitForSelector('body[data-ready="1"]', { timeout: 10_000 });
      assert.equal(await page.isVisible('#login'), false);
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
    }
  });
});
