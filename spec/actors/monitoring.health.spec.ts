/**
 * The monitoring actor's health schedule (issue 3 item 6) in one in-process broker: a fake
 * `encoder-port` answers `selfTest`, a fake probe answers the synthetic calls, a listener collects
 * the `EVENTS.assetHealth` verdicts. The tests run side by side: each waits for rounds (1 s).
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceBroker } from 'moleculer';
import { createMonitoringService, type HealthView, type MonitoringDeps } from '../../actors/monitoring.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type AssetHealth, type EncoderSelfTestResult, type EncoderStatus, type VoiceServerState, type VoiceStatus } from '../../runtime/contracts.ts';
import { testConfig } from '../support/config.ts';
import { waitFor } from '../support/event-plane.ts';

/** The broker's node: the encoder under test must live here (no transporter, so selfTest is a local call). */
const SELF = 'spec-node';
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function voiceStatus(nodeId: string, sipPort: number, state: VoiceServerState = 'in-service'): VoiceStatus {
  return {
    nodeId,
    dataCenter: 'dc1',
    sip: { host: '127.0.0.1', port: sipPort },
    state,
    drained: false,
    ports: { capacity: 25, available: 25, busy: 0, suspendBelow: 0, resumeAt: 0 },
    channels: { inService: 25, busy: 0, maintenance: 0, outOfService: 0 },
    seq: 1,
    updatedAt: new Date().toISOString(),
  };
}

function encoderStatus(nodeId = SELF): EncoderStatus {
  return { nodeId, dataCenter: 'dc1', capacity: 25, free: 25, running: 0, seq: 1, updatedAt: new Date().toISOString() };
}

type SelfTest = () => Promise<EncoderSelfTestResult> | EncoderSelfTestResult;

/**
 * A broker with monitoring (health rounds every second), a fake encoder-port whose selfTest runs
 * `selfTest`, and a verdict listener; the statuses are re-broadcast every 400 ms (monitoring drops
 * those not heard within heartbeatTimeoutS).
 */
async function start(t: TestContext, o: { probe?: MonitoringDeps['probeVoiceServer']; selfTest?: SelfTest; voices?: VoiceStatus[]; encoders?: EncoderStatus[]; intervalS?: string }) {
  const config = testConfig({ healthTestIntervalS: o.intervalS ?? '1' });
  const broker: ServiceBroker = createBroker(config);
  const verdicts: AssetHealth[] = [];
  broker.createService(createMonitoringService(config, o.probe ? { probeVoiceServer: o.probe } : {}));
  broker.createService({ name: 'encoder-port', actions: { selfTest: { handler: () => (o.selfTest ?? (() => pass(SELF)))() } } });
  broker.createService({ name: 'verdict-listener', events: { [EVENTS.assetHealth]: { handler: (ctx: { params: AssetHealth }) => void verdicts.push(ctx.params) } } });
  await broker.start();
  t.after(() => broker.stop());
  const announce = () => {
    for (const v of o.voices ?? []) void broker.broadcast(EVENTS.voiceStatus, { ...v, updatedAt: new Date().toISOString() });
    for (const e of o.encoders ?? []) void broker.broadcast(EVENTS.encoderStatus, { ...e, updatedAt: new Date().toISOString() });
  };
  announce();
  const timer = setInterval(announce, 400);
  t.after(() => clearInterval(timer));
  const of = (asset: AssetHealth['asset'], nodeId: string) => verdicts.filter((v) => v.asset === asset && v.nodeId === nodeId);
  return { broker, config, verdicts, of };
}

function pass(nodeId: string, ms = 1500): EncoderSelfTestResult {
  return { ok: true, nodeId, rtpPort: 47000, ms, packetsSent: 80, packetsReceived: 80 };
}

function fail(nodeId: string, reason: string, ms = 10_000): EncoderSelfTestResult {
  return { ok: false, nodeId, rtpPort: 47000, ms, packetsSent: 500, packetsReceived: 500, reason };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('monitoring actor health tests', { concurrency: true }, () => {
  it('a failing encoder is evicted once, repeated failures (a throwing selfTest too) carry no change, a pass re-admits it', async (t) => {
    const script: Array<SelfTest> = [
      () => fail(SELF, 'no segment within 10000 ms'),
      () => fail(SELF, 'ffmpeg died [code:1 signal:null]', 400),
      () => {
        throw new Error('selftest exploded');
      },
      () => pass(SELF, 1200),
      () => pass(SELF, 1300),
    ];
    let calls = 0;
    const { of } = await start(t, {
      encoders: [encoderStatus()],
      selfTest: () => {
        const step = script[Math.min(calls++, script.length - 1)]!;
        return step();
      },
    });
    const v = await waitFor('five encoder verdicts', () => (of('encoder-port', SELF).length >= 5 ? of('encoder-port', SELF).slice(0, 5) : undefined), 8000);
    assert.deepEqual(
      v.map((x) => [x.outcome, x.healthy, x.change ?? '-']),
      [
        ['fail', false, 'evicted'],
        ['fail', false, '-'],
        ['fail', false, '-'],
        ['pass', true, 'readmitted'],
        ['pass', true, '-'],
      ],
    );
    assert.equal(v[0]!.reason, 'no segment within 10000 ms');
    assert.equal(v[0]!.ms, 10_000);
    assert.equal(v[1]!.reason, 'ffmpeg died [code:1 signal:null]');
    assert.equal(v[1]!.ms, 400);
    assert.match(v[2]!.reason ?? '', /^test did not complete: .*selftest exploded/);
    assert.ok(v[2]!.ms >= 0 && v[2]!.ms < 1000, `ms of the throwing test: ${v[2]!.ms}`);
    assert.equal(v[3]!.reason, undefined);
    assert.equal(v[3]!.ms, 1200);
    for (const x of v) {
      assert.equal(x.asset, 'encoder-port');
      assert.equal(x.testedBy, SELF);
      assert.match(x.testedAt, ISO);
    }
    assert.equal(v.filter((x) => x.change === 'evicted').length, 1);
  });

  it('voice servers: one whose free ports the test call would push below its suspend threshold (or take the last of) is skipped unprobed', async (t) => {
    const probed: number[] = [];
    const low = (id: string, port: number, available: number, suspendBelow: number): VoiceStatus => {
      const v = voiceStatus(id, port);
      return { ...v, ports: { ...v.ports, available, busy: 25 - available, suspendBelow } };
    };
    const { of } = await start(t, {
      voices: [low('voice-a', 5081, 2, 2), low('voice-b', 5082, 1, 0), low('voice-c', 5083, 3, 2)],
      probe: async (sip) => {
        probed.push(sip.port);
        return { outcome: 'pass', totalMs: 5 };
      },
    });
    await waitFor('a verdict for each', () => ['voice-a', 'voice-b', 'voice-c'].every((id) => of('voice-server', id).length >= 1), 6000);
    assert.deepEqual([of('voice-server', 'voice-a')[0]!.outcome, of('voice-server', 'voice-a')[0]!.reason], ['skipped', 'not tested with 2 free ports (suspends below 2)']);
    assert.deepEqual([of('voice-server', 'voice-b')[0]!.outcome, of('voice-server', 'voice-b')[0]!.reason], ['skipped', 'not tested with 1 free ports (suspends below 0)']);
    assert.equal(of('voice-server', 'voice-c')[0]!.outcome, 'pass');
    assert.deepEqual(probed.sort(), probed.filter((p) => p === 5083), `only voice-c was probed: ${probed.join(',')}`);
  });

  it('voice servers: one not in-service is skipped unprobed; a refused probe is skipped and keeps it in; a failed one is evicted', async (t) => {
    const probed: number[] = [];
    const { of } = await start(t, {
      voices: [voiceStatus('voice-a', 5071), voiceStatus('voice-b', 5072, 'maintenance'), voiceStatus('voice-c', 5073)],
      probe: async (sip) => {
        probed.push(sip.port);
        if (sip.port === 5071) return { outcome: 'refused', reason: 'INVITE answered 503 Service Unavailable', totalMs: 12 };
        return { outcome: 'fail', reason: 'no final answer to INVITE within 8000 ms', totalMs: 8000 };
      },
    });
    await waitFor('two rounds of verdicts', () => ['voice-a', 'voice-b', 'voice-c'].every((id) => of('voice-server', id).length >= 2), 6000);

    for (const x of of('voice-server', 'voice-a')) {
      assert.deepEqual([x.outcome, x.healthy, x.change, x.reason, x.ms], ['skipped', true, undefined, 'INVITE answered 503 Service Unavailable', 12]);
    }
    for (const x of of('voice-server', 'voice-b')) {
      assert.deepEqual([x.outcome, x.healthy, x.change, x.reason], ['skipped', true, undefined, 'not tested while maintenance']);
    }
    assert.deepEqual(
      of('voice-server', 'voice-c').map((x) => [x.outcome, x.healthy, x.change ?? '-', x.reason]),
      of('voice-server', 'voice-c').map((_, i) => ['fail', false, i === 0 ? 'evicted' : '-', 'no final answer to INVITE within 8000 ms']),
    );
    assert.equal(probed.includes(5072), false, `the server in maintenance was probed: ${probed.join(',')}`);
    assert.ok(probed.includes(5071) && probed.includes(5073));
  });

  it('monitoring.health lists voice servers and encoders with their verdicts and ISO times', async (t) => {
    const { broker } = await start(t, {
      voices: [voiceStatus('voice-z', 5081), voiceStatus('voice-a', 5082, 'suspended')],
      encoders: [encoderStatus()],
      probe: async () => ({ outcome: 'pass', totalMs: 321 }),
      selfTest: () => fail(SELF, 'a segment came out but none of 50 RTP packets reached port 47000', 1000),
    });
    const view = await waitFor('three assets tested', async () => {
      const h = await broker.call<HealthView, object>('monitoring.health', {});
      return h.assets.length === 3 ? h : undefined;
    }, 6000);
    assert.equal(view.tester, SELF);
    assert.equal(view.intervalS, 1);
    assert.deepEqual(
      view.assets.map((a) => [a.asset, a.nodeId, a.healthy, a.lastOutcome]),
      [
        ['voice-server', 'voice-a', true, 'skipped'],
        ['voice-server', 'voice-z', true, 'pass'],
        ['encoder-port', SELF, false, 'fail'],
      ],
    );
    const byNode = new Map(view.assets.map((a) => [`${a.asset}:${a.nodeId}`, a]));
    assert.equal(byNode.get('voice-server:voice-z')!.lastMs, 321);
    assert.equal(byNode.get('voice-server:voice-a')!.reason, 'not tested while suspended');
    assert.equal(byNode.get(`encoder-port:${SELF}`)!.reason, 'a segment came out but none of 50 RTP packets reached port 47000');
    assert.ok(byNode.get(`encoder-port:${SELF}`)!.failures >= 1);
    for (const a of view.assets) {
      assert.match(a.since, ISO);
      assert.match(a.lastTestAt, ISO);
      assert.ok(Math.abs(Date.parse(a.lastTestAt) - Date.now()) < 5000, `lastTestAt ${a.lastTestAt}`);
      assert.ok(Date.parse(a.since) <= Date.parse(a.lastTestAt));
    }
  });

  it('a slow test is never run twice at once: the next round skips an asset still under test', async (t) => {
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    const { of } = await start(t, {
      voices: [voiceStatus('voice-slow', 5091)],
      probe: async () => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(2600);
        running--;
        return { outcome: 'pass', totalMs: 2600 };
      },
    });
    await waitFor('the first probe', () => calls >= 1, 3000);
    // Rounds pass while the probe runs (at least two in 2.6 s): none may start a second one.
    await sleep(2000);
    assert.equal(calls, 1);
    assert.equal(of('voice-server', 'voice-slow').length, 0);
    const [v] = await waitFor('the slow verdict', () => (of('voice-server', 'voice-slow').length > 0 ? of('voice-server', 'voice-slow') : undefined), 3000);
    assert.equal(v!.outcome, 'pass');
    assert.equal(v!.ms, 2600);
    assert.equal(maxRunning, 1);
  });

  it('an asset not heard within heartbeatTimeoutS is no longer tested', async (t) => {
    const config = testConfig({ healthTestIntervalS: '1' });
    const broker = createBroker(config);
    let probes = 0;
    broker.createService(createMonitoringService(config, { probeVoiceServer: async () => (probes++, { outcome: 'pass', totalMs: 5 }) }));
    await broker.start();
    t.after(() => broker.stop());
    await broker.broadcast(EVENTS.voiceStatus, voiceStatus('voice-gone', 5101));
    await waitFor('a first probe', () => probes >= 1, 3000);
    // Heard once: tested in the rounds within heartbeatTimeoutS (3 s), never after.
    await sleep(config.heartbeatTimeoutS * 1000 + 300);
    const seen = probes;
    assert.ok(seen >= 1 && seen <= 4, `probes ${seen}`);
    await sleep(1500);
    assert.equal(probes, seen);
  });

  it('a verdict of another node\'s tester is kept and shown by monitoring.health; its own broadcast is not applied twice', async (t) => {
    const { broker } = await start(t, { intervalS: '0' });
    const verdict: AssetHealth = {
      asset: 'encoder-port',
      nodeId: 'enc-far',
      healthy: false,
      outcome: 'fail',
      change: 'evicted',
      ms: 10_000,
      testedAt: '2026-11-25T10:00:00.000Z',
      testedBy: 'aaa-other-tester',
      reason: 'no segment within 10000 ms',
    };
    await broker.broadcast(EVENTS.assetHealth, verdict);
    await broker.broadcast(EVENTS.assetHealth, { ...verdict, nodeId: 'ignored', testedBy: SELF });
    const view = await waitFor('the adopted verdict', async () => {
      const h = await broker.call<HealthView, object>('monitoring.health', {});
      return h.assets.length > 0 ? h : undefined;
    }, 3000);
    assert.equal(view.intervalS, 0);
    assert.deepEqual(view.assets, [
      { asset: 'encoder-port', nodeId: 'enc-far', healthy: false, since: '2026-11-25T10:00:00.000Z', lastTestAt: '2026-11-25T10:00:00.000Z', lastOutcome: 'fail', lastMs: 10_000, reason: 'no segment within 10000 ms', passes: 0, failures: 1 },
    ]);
    // The node leaves: its assets leave the book.
    await broker.broadcastLocal('$node.disconnected', { node: { id: 'enc-far' } });
    const after = await waitFor('the node forgotten', async () => {
      const h = await broker.call<HealthView, object>('monitoring.health', {});
      return h.assets.length === 0 ? h : undefined;
    }, 3000);
    assert.deepEqual(after.assets, []);
  });
});
