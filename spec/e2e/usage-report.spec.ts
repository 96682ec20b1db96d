/**
 * Usage report end to end on one node (`jitcast start`, embedded PGlite): a real call from sipp, a
 * listener fetching the live playlist and segments over HTTP, then the archive; the report from
 * `GET /api/events/:eventId/report` and `jitcast report` counts that call, that listener and that
 * stream, and the row reaches the reporting DB. Ports of cluster slot 4, node 0.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { callPackets, tone, writePcap } from '../support/pcap.ts';
import { dialInScenario, runSipp } from '../support/sipp.ts';
import { startNodeProcess, waitFor, type NodeUnderTest } from '../support/node-process.ts';
import { nodePorts, sippPorts } from '../support/cluster.ts';

const SLOT = 4;

describe('usage report end to end (sipp call, HTTP listener, archive)', { timeout: 120_000 }, () => {
  let node: NodeUnderTest;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-usage-'));

  before(async () => {
    node = await startNodeProcess({ ...nodePorts(SLOT, 0), env: { JITCAST_ARCHIVE_TIMEOUT_S: '1', JITCAST_HEALTH_TEST_INTERVAL_S: '0' } });
  });
  after(async () => {
    await node?.stop();
  });

  test('the report counts the call, the listener and the stream, and is final once archived', async () => {
    const res = await node.api('POST', '/api/events', { title: 'Usage e2e' });
    assert.equal(res.status, 201, res.text);
    const { eventId, pin, attendeeUrl } = res.body;
    const empty = await node.api('GET', `/api/events/${eventId}/report`);
    assert.equal(empty.status, 200, empty.text);
    assert.deepEqual([empty.body.listeners.total, empty.body.calls.total, empty.body.streams.total], [0, 0, 0]);

    const idKeys = `${eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    const holdMs = 12_000;
    const pcap = join(work, 'call.pcap');
    writePcap(pcap, callPackets({ durationMs: holdMs, audio: tone(1000), keys: [{ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${pin}#` }], eventPt: 101 }));
    const scenario = dialInScenario(work, 'usage', { pcap, holdMs, ending: 'caller-bye' });
    const sp = sippPorts(SLOT);
    const sipp = runSipp({ scenario, target: `127.0.0.1:${node.sipPort}`, localPort: sp.sip(0), mediaPort: sp.media(0), cwd: work });

    // One listener: the master playlist, its stream's playlist, then two segments.
    const master = await waitFor('live.m3u8', async () => {
      const r = await fetch(`${attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 20_000);
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, node.baseUrl).toString();
    assert.match(variant, /[?&]l=[A-Za-z0-9_-]{12}/, 'the stream URL carries a listener ID');
    const segments = await waitFor('two live segments', async () => {
      const r = await fetch(variant);
      const uris = r.status === 200 ? (await r.text()).split('\n').filter((l) => l.startsWith('seg')) : [];
      return uris.length >= 2 ? uris : undefined;
    }, 20_000);
    for (const u of segments.slice(0, 2)) assert.equal((await fetch(new URL(u, variant))).status, 200);

    const live = await waitFor('the listener and the call in the report', async () => {
      const r = await node.api('GET', `/api/events/${eventId}/report`);
      return r.body?.listeners?.total === 1 && r.body?.calls?.active === 1 && r.body.requests?.segments >= 2 ? r.body : undefined;
    }, 10_000);
    assert.equal(live.status, 'live');
    assert.ok(live.listeningMinutes > 0, JSON.stringify(live));
    assert.equal(live.streams.live, 1);

    const metrics = await (await fetch(`${node.baseUrl}/metrics`)).text();
    assert.match(metrics, /^jitcast_calls_active 1$/m);
    assert.match(metrics, /^jitcast_streams_live 1$/m);

    const result = await sipp;
    assert.equal(result.code, 0, `sipp failed:\n${result.stdout}\n${result.stderr}`);

    const done = await waitFor('a final report from the DB', async () => {
      const r = await node.api('GET', `/api/events/${eventId}/report`);
      return r.body?.final === true && r.body.sources?.includes('db') ? r.body : undefined;
    }, 60_000);
    assert.equal(done.status, 'archived');
    assert.deepEqual(done.calls, { total: 1, active: 0 });
    // The caller was live from the PIN's # to the BYE: most of the 12 s hold.
    assert.ok(done.callMinutes > 0.1 && done.callMinutes <= 0.2, `call minutes ${done.callMinutes}`);
    assert.equal(done.listeners.total, 1);
    assert.equal(done.listeners.peak, 1);
    assert.ok(done.streams.total >= 1 && done.streams.minutes > 0, JSON.stringify(done.streams));
    assert.ok(done.fragments >= 1);

    const cli = await promisify(execFile)(process.execPath, ['bin/jitcast.js', 'report', eventId, '--json', '--url', node.baseUrl], { env: { ...process.env, JITCAST_API_KEYS: node.apiKey, JITCAST_DATA_DIR: node.dataDir } });
    const fromCli = JSON.parse(cli.stdout);
    assert.equal(fromCli.eventId, eventId);
    assert.deepEqual(fromCli.calls, done.calls);
    const text = await promisify(execFile)(process.execPath, ['bin/jitcast.js', 'report', eventId, '--url', node.baseUrl], { env: { ...process.env, JITCAST_API_KEYS: node.apiKey, JITCAST_DATA_DIR: node.dataDir } });
    assert.match(text.stdout, /listeners\s+peak 1 .*total 1/);
    assert.match(text.stdout, /call minutes\s+0\.\d+ \(1 call/);
  });
});
