/**
 * Drain (issue 3, item 5): `jitcast drain v1` puts the voice server with a live call into
 * maintenance. The call on it goes on and finishes normally; new calls through the front door go
 * to v2; a call dialled straight to v1 is refused with 503; once its last call has ended v1
 * reports drained. `POST /api/cluster/voice-servers/v1/resume` brings it back, and the door routes
 * to it again (it is in the door's data center).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  channelsOf,
  ensureServices,
  logLines,
  placeCall,
  refusedScenario,
  routeOf,
  sippPorts,
  startCluster,
  voiceServerOf,
  waitForLog,
  waitUntil,
  type Cluster,
  type PlacedCall,
} from '../support/cluster.ts';
import { runSipp } from '../support/sipp.ts';

const SLOT = 4;
const DOOR_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access', 'sip-router'];
const VOICE_ROLES = ['voice-server', 'encoder-port', 'content-storage'];

describe('drain and resume a voice server with a call on it', { timeout: 240_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-drain-'));
  const sipp = sippPorts(SLOT);
  const calls: PlacedCall[] = [];

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'drain',
      slot: SLOT,
      nodes: [
        { id: 'door', roles: DOOR_ROLES, dataCenter: 'dc1' },
        { id: 'v1', roles: VOICE_ROLES, dataCenter: 'dc1' },
        { id: 'v2', roles: VOICE_ROLES, dataCenter: 'dc2' },
      ],
    });
    await waitUntil('the door to route to v1 and v2', async () => {
      const st = await cluster.status();
      return routeOf(st, 'v1')?.routable && routeOf(st, 'v2')?.routable ? true : undefined;
    }, 15_000);
  });
  after(async () => {
    await Promise.all(calls.map((c) => c.done));
    await cluster?.stop();
  });

  test('drain: the busy call finishes, new calls go to v2, a direct call to v1 is refused, v1 reports drained; resume brings it back', async () => {
    const ev1 = (await cluster.api('POST', '/api/events', { title: 'drain: on v1' })).body;
    const onV1 = placeCall({ dir: work, name: 'drain-1', target: cluster.node('door').sipTarget, event: ev1, holdMs: 22_000, localPort: sipp.sip(0), mediaPort: sipp.media(0) });
    calls.push(onV1);
    await waitForLog(cluster.node('v1'), new RegExp(`caller live \\[event:${ev1.eventId}`), onV1.startedAt, 20_000);

    // The operator drains v1 with the CLI.
    const drainedCmd = await cluster.cli(['drain', 'v1']);
    assert.equal(drainedCmd.code, 0, drainedCmd.stderr);
    assert.match(drainedCmd.stdout, /voice server v1 is maintenance \(draining: 1 busy/, drainedCmd.stdout);
    const drainAt = Date.now();
    const st = await waitUntil('v1 in maintenance everywhere', async () => {
      const s = await cluster.status();
      return voiceServerOf(s, 'v1')?.state === 'maintenance' && routeOf(s, 'v1')?.routable === false ? s : undefined;
    }, 5000, 100);
    assert.equal(voiceServerOf(st, 'v1').drained, false, 'not drained while its call is up');
    assert.ok(channelsOf(st).some((c) => c.nodeId === 'v1' && c.eventId === ev1.eventId && c.phase === 'live'), 'the call on v1 goes on');
    const shown = await cluster.cli(['status']);
    assert.match(shown.stdout, /v1\s+dc1\s+\S+\s+maintenance \(draining\)/, shown.stdout);

    // New calls through the door go to v2.
    const ev2 = (await cluster.api('POST', '/api/events', { title: 'drain: new call' })).body;
    const newCall = placeCall({ dir: work, name: 'drain-2', target: cluster.node('door').sipTarget, event: ev2, holdMs: 9_000, localPort: sipp.sip(1), mediaPort: sipp.media(1) });
    calls.push(newCall);
    await waitForLog(cluster.node('v2'), new RegExp(`caller live \\[event:${ev2.eventId}`), newCall.startedAt, 20_000);
    assert.equal(logLines(cluster.node('v1'), /call answered/, drainAt).length, 0, 'v1 answered no call after the drain');

    // A caller who dials v1 itself (not through the door) is refused while it is in maintenance.
    const direct = await runSipp({ scenario: refusedScenario(work, 'drain-direct', 503), target: cluster.node('v1').sipTarget, localPort: sipp.sip(2), mediaPort: sipp.media(2), cwd: work, timeoutS: 10 });
    assert.equal(direct.code, 0, `a direct INVITE to v1 in maintenance is answered 503:\n${direct.stdout}`);

    // The busy call finishes normally; then v1 reports drained.
    const r1 = await onV1.done;
    assert.equal(r1.code, 0, `the call on v1 finished normally:\n${r1.stdout}`);
    const drained = await waitUntil('v1 drained', async () => (voiceServerOf(await cluster.status(), 'v1')?.drained ? Date.now() : undefined), 5000, 100);
    console.log(`# v1 drained ${drained - r1.endedAt} ms after its last call ended`);
    assert.equal((await newCall.done).code, 0);

    // Resume over the REST API: the door routes to v1 again (its own data center).
    const resumed = await cluster.api('POST', '/api/cluster/voice-servers/v1/resume');
    assert.equal(resumed.status, 200, resumed.text);
    assert.equal(resumed.body.state, 'in-service');
    await waitUntil('the door to route to v1 again', async () => (routeOf(await cluster.status(), 'v1')?.routable ? true : undefined), 5000, 100);
    const ev3 = (await cluster.api('POST', '/api/events', { title: 'drain: after resume' })).body;
    const back = placeCall({ dir: work, name: 'drain-3', target: cluster.node('door').sipTarget, event: ev3, holdMs: 9_000, localPort: sipp.sip(3), mediaPort: sipp.media(3) });
    calls.push(back);
    await waitForLog(cluster.node('v1'), new RegExp(`caller live \\[event:${ev3.eventId}`), back.startedAt, 20_000);
    assert.equal((await back.done).code, 0);
  });

  test('drain/resume of an unknown node answer 404, a bad node ID 400', async () => {
    assert.equal((await cluster.api('POST', '/api/cluster/voice-servers/nosuchnode/drain')).status, 404);
    assert.equal((await cluster.api('POST', '/api/cluster/voice-servers/door/drain')).status, 404, 'door runs no voice server');
    assert.equal((await cluster.api('POST', `/api/cluster/voice-servers/${'x'.repeat(65)}/resume`)).status, 400);
    const cli = await cluster.cli(['drain', 'nosuchnode']);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /404/);
  });
});
