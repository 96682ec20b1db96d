/**
 * Port availability suspend (issue 3, item 4): v1 has a three-port RTP range, suspends below 2
 * free ports and resumes at 3; ports rest 6 s after a call. Two calls through the front door take
 * v1 (the door's data center) down to one free port: v1 suspends itself, the door stops routing to
 * it, and the third call lands on v2. Once both calls have ended and their ports have rested, v1
 * resumes and the door routes the next call to it again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  channelsOf,
  ensureServices,
  nodePorts,
  placeCall,
  routeOf,
  sippPorts,
  startCluster,
  voiceServerOf,
  waitUntil,
  type Cluster,
  type PlacedCall,
} from '../support/cluster.ts';

const SLOT = 5;
const REST_S = 6;
const V1_RTP_MIN = Number(nodePorts(SLOT, 1).rtpPorts.split('-')[0]);
const DOOR_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access', 'sip-router'];
const VOICE_ROLES = ['voice-server', 'encoder-port', 'content-storage'];

describe('port availability suspend through the front door', { timeout: 180_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-suspend-'));
  const sipp = sippPorts(SLOT);
  const calls: PlacedCall[] = [];

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'suspend',
      slot: SLOT,
      // No health tests: their synthetic call would take one of v1's three ports for a moment, and this spec counts them.
      env: { JITCAST_PORT_REUSE_TIMEOUT_S: String(REST_S), JITCAST_AUTH_CODE_TIMEOUT_S: String(REST_S), JITCAST_HEALTH_TEST_INTERVAL_S: '0' },
      nodes: [
        { id: 'door', roles: DOOR_ROLES, dataCenter: 'dc1' },
        // Three even ports; suspended below 2 free, resumed at 3.
        { id: 'v1', roles: VOICE_ROLES, dataCenter: 'dc1', rtpPorts: `${V1_RTP_MIN}-${V1_RTP_MIN + 5}`, env: { JITCAST_PORT_SUSPEND_BELOW: '2', JITCAST_PORT_RESUME_AT: '3' } },
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

  /** The node whose channel list holds the call placed from sipp port `localPort`. */
  async function nodeOfCall(localPort: number): Promise<string> {
    return waitUntil(`the call from sipp port ${localPort} in a channel list`, async () => channelsOf(await cluster.status()).find((c) => c.caller.includes(`:${localPort}`))?.nodeId, 10_000, 100);
  }

  test('v1 suspends itself when its ports run low, calls go to v2, and v1 takes calls again once ports have rested', async () => {
    const s0 = voiceServerOf(await cluster.status(), 'v1');
    assert.equal(s0.ports.capacity, 3, JSON.stringify(s0.ports));
    assert.equal(s0.state, 'in-service');

    const call = (i: number, holdMs: number) => {
      const c = placeCall({ dir: work, name: `suspend-${i}-${Date.now()}`, target: cluster.node('door').sipTarget, holdMs, localPort: sipp.sip(i), mediaPort: sipp.media(i) });
      calls.push(c);
      return c;
    };
    const c1 = call(0, 9000);
    assert.equal(await nodeOfCall(sipp.sip(0)), 'v1');
    const c2 = call(1, 9000);
    assert.equal(await nodeOfCall(sipp.sip(1)), 'v1');

    // One free port left (< 2): suspended, and the door sees it.
    const st = await waitUntil('v1 suspended and not routable', async () => {
      const s = await cluster.status();
      return voiceServerOf(s, 'v1')?.state === 'suspended' && routeOf(s, 'v1')?.routable === false ? s : undefined;
    }, 5000, 100);
    assert.equal(voiceServerOf(st, 'v1').ports.available, 1);
    const c3 = call(2, 4000);
    assert.equal(await nodeOfCall(sipp.sip(2)), 'v2', 'the third call is routed away from the suspended v1');

    // Calls 1 and 2 end; their ports rest REST_S, so v1 stays suspended meanwhile, then resumes.
    const [r1, r2, r3] = await Promise.all([c1.done, c2.done, c3.done]);
    for (const [i, r] of [r1, r2, r3].entries()) assert.equal(r.code, 0, `call ${i + 1}:\n${r.stdout}`);
    const ended = Math.max(r1.endedAt, r2.endedAt);
    const during = voiceServerOf(await cluster.status(), 'v1');
    if (Date.now() - ended < REST_S * 1000 - 1000) assert.equal(during.state, 'suspended', `still suspended while its ports rest: ${JSON.stringify(during.ports)}`);
    const resumedAt = await waitUntil('v1 in service and routable again', async () => {
      const s = await cluster.status();
      return voiceServerOf(s, 'v1')?.state === 'in-service' && routeOf(s, 'v1')?.routable ? Date.now() : undefined;
    }, REST_S * 1000 + 10_000, 200);
    console.log(`# v1 resumed ${resumedAt - ended} ms after its calls ended (ports rest ${REST_S} s)`);
    assert.ok(resumedAt - ended >= REST_S * 1000 - 1500, 'not before the ports have rested');

    const c4 = call(0, 3000);
    assert.equal(await nodeOfCall(sipp.sip(0)), 'v1', 'the door routes to v1 again');
    assert.equal((await c4.done).code, 0);
  });
});
