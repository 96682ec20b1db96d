/**
 * The event manager page (web/dashboard-page.ts) in headless Chromium against a gateway with the
 * real reservation actor and fake event and voice-server actors: the key prompt, clearing an
 * archive error flag, draining and resuming a voice server, recent errors, and rows that stay the
 * same DOM nodes between polls (nothing jumps). The live call and "End" are in
 * spec/e2e/dashboard.spec.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { createReservationService } from '../../actors/reservation.service.ts';
import { makeEventId } from '../../codecs/ids.ts';
import { createBroker } from '../../runtime/broker.ts';
import type { EventView } from '../../runtime/contracts.ts';
import { NotFoundError, StateConflictError } from '../../runtime/errors.ts';
import { testConfig } from '../support/config.ts';

const PORT = 18613;
const BASE = `http://127.0.0.1:${PORT}`;
const KEY = 'spec-api-key-0123456789';
const config = testConfig({ httpPort: String(PORT) });
const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const BROKEN = makeEventId('7000001');
const LIVE = makeEventId('7000002');
const retryCalls: string[] = [];
const voiceCommands: string[] = [];
let voiceState: 'in-service' | 'maintenance' = 'in-service';

function view(eventId: string, status: EventView['status'], extra: Partial<EventView> = {}): EventView {
  const now = new Date(Date.now() - 90_000).toISOString();
  return {
    eventId, title: `Event ${eventId}`, format: 'hls', createdAt: now, updatedAt: now, archiveDays: 30, hasPassword: false,
    attendeeUrl: `${BASE}/e/x`, hostUrl: `${BASE}/e/y`, status, streams: [], callers: 0, ...extra,
  };
}
const events = new Map<string, EventView>([
  [BROKEN, view(BROKEN, 'archive-error', { archiveError: 'stream files missing in every storage center', endedAt: new Date(Date.now() - 60_000).toISOString() })],
  [LIVE, view(LIVE, 'live', { callers: 1, liveAt: new Date(Date.now() - 30_000).toISOString() })],
]);

const fakeEvent: ServiceSchema = {
  name: 'event',
  actions: {
    list: () => [...events.values()],
    get(ctx: Context<{ eventId: string }>) {
      const e = events.get(ctx.params.eventId);
      if (!e) throw new NotFoundError(`no event ${ctx.params.eventId}`);
      return e;
    },
    retryArchive(ctx: Context<{ eventId: string }>) {
      retryCalls.push(ctx.params.eventId);
      const e = events.get(ctx.params.eventId);
      if (!e) throw new NotFoundError(`no event ${ctx.params.eventId}`);
      if (e.status !== 'archive-error') throw new StateConflictError(`event ${e.eventId} is ${e.status}`);
      const { archiveError: _gone, ...rest } = e;
      events.set(e.eventId, { ...rest, status: 'archiving' });
      return events.get(e.eventId);
    },
  },
};

function voiceStatus() {
  return {
    nodeId: config.nodeId, dataCenter: 'dc1', sip: { host: '127.0.0.1', port: 5060 }, state: voiceState, drained: voiceState === 'maintenance',
    portRange: { min: 10000, max: 10049 }, ports: { capacity: 25, busy: 0, resting: 0, available: 25, outOfService: 0, suspendBelow: 2, resumeAt: 4 },
    channelStates: { inService: voiceState === 'in-service' ? 25 : 0, busy: 0, maintenance: voiceState === 'maintenance' ? 25 : 0, outOfService: 0 },
    channels: [], conferences: [],
  };
}
const fakeVoiceServer: ServiceSchema = {
  name: 'voice-server',
  actions: {
    status: () => voiceStatus(),
    drain() {
      voiceCommands.push('drain');
      voiceState = 'maintenance';
      return voiceStatus();
    },
    resume() {
      voiceCommands.push('resume');
      voiceState = 'in-service';
      return voiceStatus();
    },
  },
};

/** The usage actor's report: the dashboard's listener counts. */
const fakeUsage: ServiceSchema = {
  name: 'usage',
  actions: {
    report: (ctx: Context<{ eventId: string }>) => ({ eventId: ctx.params.eventId, listeners: { peak: 5, total: 9, current: 3 }, listeningMinutes: 12 }),
  },
};

const fakeMonitoring: ServiceSchema = {
  name: 'monitoring',
  actions: {
    activeStreams: () => [],
    health: () => ({
      tester: config.nodeId,
      intervalS: 30,
      assets: [
        { asset: 'voice-server', nodeId: config.nodeId, healthy: true, since: new Date().toISOString(), lastTestAt: new Date().toISOString(), lastOutcome: 'pass', lastMs: 210, passes: 4, failures: 0 },
        { asset: 'encoder-port', nodeId: 'enc-2', healthy: false, since: new Date().toISOString(), lastTestAt: new Date().toISOString(), lastOutcome: 'fail', lastMs: 5000, passes: 1, failures: 3, reason: 'no segment within 5 s' },
      ],
    }),
  },
};

describe('event manager page in headless Chromium (fake actors)', () => {
  let broker: ServiceBroker;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  before(async () => {
    broker = createBroker(config);
    broker.createService(fakeEvent);
    broker.createService(fakeVoiceServer);
    broker.createService(fakeMonitoring);
    broker.createService(fakeUsage);
    broker.createService(createReservationService(config));
    broker.createService(createGatewayService(config));
    [browser] = await Promise.all([chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS }), broker.start()]);
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    await page.goto(`${BASE}/dashboard`);
  });
  after(async () => {
    await browser?.close();
    await broker?.stop();
  });

  it('asks for the key again, saying so, when the API refuses it', async () => {
    await page.waitForSelector('#login.show');
    await page.fill('#key', 'not-the-key-0123456789');
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => document.getElementById('login-err')?.textContent === 'That API key was refused.');
    assert.equal(await page.isVisible('#login'), true);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('jitcast-operator-key')), null);
  });

  it('with the operator key it shows the events, listeners from the usage report and the voice server', async () => {
    await page.fill('#key', KEY);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('body[data-ready="1"]');
    const broken = page.locator(`#events tr[data-event="${BROKEN}"]`);
    assert.equal(await broken.getAttribute('data-status'), 'archive-error');
    assert.match((await broken.locator('td.state').getAttribute('title')) ?? '', /stream files missing/);
    await page.waitForFunction((id) => /^3 · peak 5 · 9 total$/.test(document.querySelector(`#events tr[data-event="${id}"] td:nth-child(5)`)?.textContent ?? ''), LIVE);
    assert.match(await page.locator(`#voice tr[data-voice="${config.nodeId}"]`).innerText(), /in-service/);
    assert.equal(await page.textContent('#t-archive-err'), '1');
    assert.equal(await page.textContent('#leader'), 'none');
  });

  it('shows pool health: the evicted encoder first, with its reason, and counts it in the tile', async () => {
    const rows = page.locator('#pools tr');
    assert.equal(await rows.count(), 2);
    assert.match(await rows.nth(0).innerText(), /encoder-port[\s\S]*enc-2[\s\S]*evicted[\s\S]*fail · 5000 ms[\s\S]*1 \/ 3[\s\S]*no segment within 5 s/);
    assert.match(await rows.nth(1).innerText(), /voice-server[\s\S]*member/);
    assert.equal(await page.textContent('#t-evicted'), '1');
    assert.match(await page.locator('#t-evicted').evaluate((b) => b.parentElement!.className), /\bbad\b/);
  });

  it('"Clear error" on an archive-error row calls retryArchive once and the row turns archiving', async () => {
    await page.click(`#events tr[data-event="${BROKEN}"] button[data-act="retry:${BROKEN}"]`);
    await page.waitForSelector(`#events tr[data-event="${BROKEN}"][data-status="archiving"]`);
    assert.deepEqual(retryCalls, [BROKEN]);
    assert.match((await page.textContent('#flash')) ?? '', new RegExp(`Archive error of ${BROKEN} cleared: archiving`));
    assert.equal(await page.locator(`button[data-act="retry:${BROKEN}"]`).count(), 0, 'no "Clear error" once the flag is gone');
  });

  it('Drain needs a second click, then the voice server shows drained; Resume brings it back', async () => {
    const drain = page.locator(`button[data-act="drain:${config.nodeId}"]`);
    await drain.click();
    await page.waitForSelector(`button[data-act="drain:${config.nodeId}"].armed`);
    assert.deepEqual(voiceCommands, [], 'one click only arms the button');
    await drain.click();
    await page.waitForSelector(`#voice tr[data-voice="${config.nodeId}"][data-state="maintenance"]`);
    assert.match(await page.locator(`#voice tr[data-voice="${config.nodeId}"]`).innerText(), /drained/);
    assert.deepEqual(voiceCommands, ['drain']);
    await page.click(`button[data-act="resume:${config.nodeId}"]`);
    await page.waitForSelector(`#voice tr[data-voice="${config.nodeId}"][data-state="in-service"]`);
    assert.deepEqual(voiceCommands, ['drain', 'resume']);
  });

  it('an error logged on the node appears under recent errors', async () => {
    broker.getLogger('archive-coordinator').error(`archive failed [event:${BROKEN}] disk full`);
    await page.waitForFunction(() => Array.from(document.querySelectorAll('#errors tr')).some((tr) => /archive failed .* disk full/.test(tr.textContent ?? '')), undefined, { timeout: 8000 });
    const row = page.locator('#errors tr', { hasText: 'disk full' });
    assert.match(await row.innerText(), /error[\s\S]*archive-coordinator/);
  });

  it('rows stay the same DOM nodes across polls (no re-render, no jump)', async () => {
    await page.evaluate((id) => {
      (document.querySelector(`#events tr[data-event="${id}"]`) as HTMLElement & { __mark?: number }).__mark = 42;
    }, LIVE);
    const top = await page.locator(`#events tr[data-event="${LIVE}"]`).boundingBox();
    const polls = Number(await page.getAttribute('body', 'data-polls'));
    await page.waitForFunction((n) => Number(document.body.getAttribute('data-polls')) >= n + 2, polls);
    const same = await page.evaluate((id) => (document.querySelector(`#events tr[data-event="${id}"]`) as HTMLElement & { __mark?: number }).__mark, LIVE);
    assert.equal(same, 42);
    assert.deepEqual(await page.locator(`#events tr[data-event="${LIVE}"]`).boundingBox(), top);
    assert.deepEqual(problems, []);
  });
});
