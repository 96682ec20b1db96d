/**
 * Port reuse in a cluster (issue 3, item 4): a voice server with a two-port RTP range and a 6 s
 * port reuse timeout (auth codes 6 s too). A port freed by an ended call is not handed out to the
 * next call before the timeout: the next call gets the other port, a call while both rest is
 * refused with 503, and the first port serves again once its timeout has passed. Ports are read
 * from the channel list of `GET /api/cluster`, as an operator would.
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
  refusedScenario,
  sippPorts,
  startCluster,
  voiceServerOf,
  waitUntil,
  type Cluster,
} from '../support/cluster.ts';
import { runSipp } from '../support/sipp.ts';

const SLOT = 1;
const REUSE_S = 6;
const B_RTP_MIN = Number(nodePorts(SLOT, 1).rtpPorts.split('-')[0]);

describe('port reuse timeout across calls on one voice server (cluster)', { timeout: 180_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-ports-'));
  const sipp = sippPorts(SLOT);

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'port-reuse',
      slot: SLOT,
      // Suspend off: this spec is about reuse alone (port availability suspend has its own spec).
      // No health tests: their synthetic call would take one of B's two ports for a moment, and this spec counts them.
      env: { JITCAST_PORT_REUSE_TIMEOUT_S: String(REUSE_S), JITCAST_AUTH_CODE_TIMEOUT_S: String(REUSE_S), JITCAST_PORT_SUSPEND_BELOW: '0', JITCAST_HEALTH_TEST_INTERVAL_S: '0' },
      nodes: [
        { id: 'node-a', roles: ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access'] },
        // Two even RTP ports: B_RTP_MIN and B_RTP_MIN + 2.
        { id: 'node-b', roles: ['voice-server', 'encoder-port', 'content-storage'], rtpPorts: `${B_RTP_MIN}-${B_RTP_MIN + 3}` },
      ],
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  /** Waits for a channel on node-b that was not there before; returns its port. */
  async function newChannelPort(seen: Set<string>): Promise<number> {
    const ch = await waitUntil('a new channel on node-b in GET /api/cluster', async () => {
      const c = channelsOf(await cluster.status()).find((x) => x.nodeId === 'node-b' && !seen.has(x.channelId));
      return c;
    }, 10_000, 100);
    seen.add(ch.channelId);
    return ch.port;
  }

  test('a freed port rests for the reuse timeout: the next call takes the other port, a third is refused, the first port serves again after the timeout', async () => {
    const seen = new Set<string>();
    const vs0 = voiceServerOf(await cluster.status(), 'node-b');
    assert.equal(vs0.ports.capacity, 2, `two ports in ${JSON.stringify(vs0.ports)}`);

    // Call 1 goes live on event 1.
    const ev = (await cluster.api('POST', '/api/events', { title: 'port reuse 1' })).body;
    const call1 = placeCall({ dir: work, name: 'reuse-1', target: cluster.node('node-b').sipTarget, event: ev, holdMs: 11_000, localPort: sipp.sip(0), mediaPort: sipp.media(0) });
    const p1 = await newChannelPort(seen);
    assert.ok(p1 === B_RTP_MIN || p1 === B_RTP_MIN + 2, `port ${p1} in the range`);
    await waitUntil('event 1 live', async () => ((await cluster.api('GET', `/api/events/${ev.eventId}`)).body?.status === 'live' ? true : undefined), 15_000);
    const r1 = await call1.done;
    assert.equal(r1.code, 0, `call 1:\n${r1.stdout}`);
    const freed1 = r1.endedAt;

    // Call 2 right after: port 1 is resting, so it gets the other one.
    const call2 = placeCall({ dir: work, name: 'reuse-2', target: cluster.node('node-b').sipTarget, holdMs: 1500, localPort: sipp.sip(1), mediaPort: sipp.media(1) });
    const p2 = await newChannelPort(seen);
    assert.notEqual(p2, p1, `call 2, ${((Date.now() - freed1) / 1000).toFixed(1)} s after call 1 freed port ${p1}, must not get it again`);
    const r2 = await call2.done;
    assert.equal(r2.code, 0, `call 2:\n${r2.stdout}`);

    // Both ports rest now: the server shows it, and a third call is refused (no port is reused early).
    const vs = voiceServerOf(await cluster.status(), 'node-b');
    const sinceFreed = Date.now() - freed1;
    assert.ok(sinceFreed < REUSE_S * 1000 - 1000, `still inside port 1's reuse window (${sinceFreed} ms)`);
    assert.equal(vs.ports.resting, 2, `both ports resting: ${JSON.stringify(vs.ports)}`);
    assert.equal(vs.ports.available, 0);
    const refused = await runSipp({ scenario: refusedScenario(work, 'reuse-3', 503), target: cluster.node('node-b').sipTarget, localPort: sipp.sip(2), mediaPort: sipp.media(2), cwd: work, timeoutS: 10 });
    assert.equal(refused.code, 0, `call 3 inside both reuse windows must be refused with 503:\n${refused.stdout}`);
    assert.ok(Date.now() - freed1 < REUSE_S * 1000, 'call 3 was refused inside port 1 reuse window');

    // After port 1's timeout (and before port 2's), the next call gets port 1 again.
    const wait = freed1 + REUSE_S * 1000 + 300 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const call4 = placeCall({ dir: work, name: 'reuse-4', target: cluster.node('node-b').sipTarget, holdMs: 1500, localPort: sipp.sip(3), mediaPort: sipp.media(3) });
    const p4 = await newChannelPort(seen);
    assert.equal(p4, p1, `after ${((Date.now() - freed1) / 1000).toFixed(1)} s port ${p1} is handed out again`);
    const r4 = await call4.done;
    assert.equal(r4.code, 0, `call 4:\n${r4.stdout}`);
    console.log(`# ports: call 1 ${p1}, call 2 ${p2}, call 3 refused (503), call 4 ${p4} after ${REUSE_S} s`);
  });
});
