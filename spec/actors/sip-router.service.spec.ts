/**
 * The front door in a cluster: three brokers in this process over the real NATS
 * (nats://127.0.0.1:4222, a namespace of its own): a router node in dc1 (sip-router plus every
 * non-voice role: gateway, reservation, event, monitoring, content storage, archive coordinator,
 * attendee access) and two voice nodes (voice-server, encoder-port, content-storage), one in dc1
 * with a tiny RTP range (4 ports, portSuspendBelow 2, ports rest 2 s) and one in dc2.
 * Real callers: sipp (tone + RFC 4733 keys, and hold-only calls) and baresip, all dialling the
 * router's one address.
 * Ports: SIP 22070–22072, RTP 23000–23149, encoders 24000–24149, HTTP 22080, sipp/baresip 22140–22199.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseMediaPlaylist } from '../../codecs/hls.ts';
import { parseSip, type SipResponse } from '../../codecs/sip.ts';
import { sine } from '../../codecs/tones.ts';
import { startNode, type RunningNode } from '../../runtime/node.ts';
import type { SipRouterStatus } from '../../actors/sip-router.service.ts';
import type { VoiceServerStatus } from '../../actors/voice-server.service.ts';
import { writeWav } from '../support/audio.ts';
import { startBaresip, type Baresip } from '../support/baresip.ts';
import { testConfig } from '../support/config.ts';
import { waitFor } from '../support/node-process.ts';
import { callPackets, tone, writePcap } from '../support/pcap.ts';
import { dialInScenario, runSipp } from '../support/sipp.ts';

const NATS = 'nats://127.0.0.1:4222';
const ROUTER_SIP = 22070;
const HTTP = 22080;
const API_KEY = 'spec-api-key-0123456789';
const ROUTER_ROLES = 'sip-router,gateway,reservation,event,monitoring,content-storage,archive-coordinator,attendee-access';
const VOICE_ROLES = 'voice-server,encoder-port,content-storage';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A sipp scenario that calls, holds `holdMs` without media, and hangs up. */
function holdScenario(dir: string, name: string, holdMs: number): string {
  const head = (method: string, cseq: number, uri = '[next_url]') => `${method} ${uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:holder@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:jitcast@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: ${cseq} ${method}
      Contact: <sip:holder@[local_ip]:[local_port]>
      Max-Forwards: 70`;
  const xml = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="jitcast ${name}">
  <send retrans="500"><![CDATA[
      ${head('INVITE', 1, 'sip:jitcast@[remote_ip]:[remote_port]').replace('[peer_tag_param]', '')}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
      ${head('ACK', 1)}
      Content-Length: 0
    ]]></send>
  <pause milliseconds="${holdMs}"/>
  <send retrans="500"><![CDATA[
      ${head('BYE', 2)}
      Content-Length: 0
    ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
`;
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  return file;
}

describe('sip-router: one dial-in address, calls bound just-in-time across data centers (NATS)', { timeout: 300_000 }, () => {
  const namespace = `spec-router-${randomBytes(4).toString('hex')}`;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-router-'));
  const nodes: RunningNode[] = [];
  let router: RunningNode;
  let phone: Baresip | undefined;

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${HTTP}${path}`, {
      method,
      headers: { Authorization: `Bearer ${API_KEY}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, text };
  };
  const voice = (nodeID: string) => router.broker.call('voice-server.status', {}, { nodeID, timeout: 2000 }) as Promise<VoiceServerStatus>;
  const routerStatus = () => router.broker.call('sip-router.status', {}, { timeout: 2000 }) as Promise<SipRouterStatus>;
  const routable = async (nodeId: string) => (await routerStatus()).voiceServers.find((v) => v.nodeId === nodeId)?.routable === true;

  /** Polls both voice servers while `during` runs: the most channels each held at once, and every state the router saw. */
  async function landed(during: Promise<unknown>): Promise<{ most: Record<string, number>; states: Record<string, Set<string>> }> {
    const most: Record<string, number> = { 'vs-dc1': 0, 'vs-dc2': 0 };
    const states: Record<string, Set<string>> = { 'vs-dc1': new Set(), 'vs-dc2': new Set() };
    let done = false;
    const finished = during.finally(() => (done = true));
    while (!done) {
      for (const id of Object.keys(most)) {
        const s = await voice(id).catch(() => undefined);
        if (s) most[id] = Math.max(most[id]!, s.channels.length);
      }
      for (const v of (await routerStatus()).voiceServers) states[v.nodeId]?.add(v.state);
      await sleep(50);
    }
    await finished;
    return { most, states };
  }

  before(async () => {
    // No health tests here: their synthetic call would take one of vs-dc1's four ports, and the suspend test counts them.
    const common = { natsUrl: NATS, namespace, apiKeys: API_KEY, logLevel: (process.env.SPEC_LOG_LEVEL ?? 'warn') as 'warn', healthTestIntervalS: '0' } as const;
    const vs1 = testConfig({ ...common, nodeId: 'vs-dc1', dataCenter: 'dc1', roles: VOICE_ROLES, httpPort: '22081', sipPort: '22071', rtpPorts: '23000-23007', encoderPorts: '24000-24049', portSuspendBelow: '2', portResumeAt: '4', authCodeTimeoutS: '2', portReuseTimeoutS: '2' });
    const vs2 = testConfig({ ...common, nodeId: 'vs-dc2', dataCenter: 'dc2', roles: VOICE_ROLES, httpPort: '22082', sipPort: '22072', rtpPorts: '23100-23149', encoderPorts: '24100-24149', authCodeTimeoutS: '2', portReuseTimeoutS: '2' });
    const front = testConfig({ ...common, nodeId: 'front-dc1', dataCenter: 'dc1', roles: ROUTER_ROLES, httpPort: String(HTTP), sipPort: String(ROUTER_SIP), rtpPorts: '23200-23249', encoderPorts: '24200-24249', archiveTimeoutS: '2' });
    router = await startNode(front);
    nodes.push(router);
    for (const c of [vs1, vs2]) nodes.push(await startNode(c));
    await waitFor('both voice servers routable at the front door', async () => ((await routable('vs-dc1')) && (await routable('vs-dc2')) ? true : undefined), 20_000);
  });

  after(async () => {
    await phone?.stop();
    for (const n of nodes.reverse()) await n.stop().catch(() => {});
  });

  test('OPTIONS to the front door answers 200; the voice servers broadcast their state and ports', async () => {
    const sock = createSocket('udp4');
    sock.bind(22140, '127.0.0.1');
    await once(sock, 'listening');
    const reply = once(sock, 'message');
    sock.send(
      Buffer.from(
        [`OPTIONS sip:jitcast@127.0.0.1:${ROUTER_SIP} SIP/2.0`, 'Via: SIP/2.0/UDP 127.0.0.1:22140;branch=z9hG4bKopt;rport', 'Max-Forwards: 70', 'From: <sip:probe@127.0.0.1:22140>;tag=p1', `To: <sip:jitcast@127.0.0.1:${ROUTER_SIP}>`, 'Call-ID: options-probe', 'CSeq: 1 OPTIONS', 'Content-Length: 0', '', ''].join('\r\n'),
      ),
      ROUTER_SIP,
      '127.0.0.1',
    );
    const [buf] = (await reply) as [Buffer];
    sock.close();
    const res = parseSip(buf) as SipResponse;
    assert.equal(res.status, 200);
    const view = (await routerStatus()).voiceServers;
    const dc1 = view.find((v) => v.nodeId === 'vs-dc1')!;
    assert.equal(dc1.home, true);
    assert.equal(dc1.state, 'in-service');
    assert.equal(dc1.freePorts, 4);
    assert.equal(view.find((v) => v.nodeId === 'vs-dc2')!.home, false);
  });

  test('a sipp call through the front door lands on dc1\'s voice server and goes live; drained, the next call lands in dc2; resumed, dc1 again', async () => {
    const ev = (await api('POST', '/api/events', { title: 'Front door call' })).body;
    assert.match(ev.eventId, /^\d{8}$/);
    const idKeys = `${ev.eventId}#`;
    const pinAt = 1500 + idKeys.length * 200 + 400;
    const holdMs = 20_000;
    const pcap = join(work, 'call.pcap');
    writePcap(pcap, callPackets({ durationMs: holdMs, audio: tone(1000), keys: [{ atMs: 1500, digits: idKeys }, { atMs: pinAt, digits: `${ev.pin}#` }], eventPt: 101 }));
    const call1 = runSipp({ scenario: dialInScenario(work, 'front-door', { pcap, holdMs, ending: 'caller-bye' }), target: `127.0.0.1:${ROUTER_SIP}`, localPort: 22141, mediaPort: 22150, cwd: work });

    const live = await waitFor('the event live with a stream', async () => {
      const v = (await api('GET', `/api/events/${ev.eventId}`)).body;
      return v?.status === 'live' && v.streams?.length > 0 ? v : undefined;
    }, 25_000);
    assert.equal(live.streams[0].nodeId, 'vs-dc1', 'the stream runs on the dc1 node');
    assert.equal(live.streams[0].dataCenter, 'dc1');
    const s1 = await voice('vs-dc1');
    assert.equal(s1.channels.length, 1, 'the call is on vs-dc1');
    assert.equal(s1.channels[0]!.eventId, ev.eventId);
    assert.equal((await voice('vs-dc2')).channels.length, 0);
    const playlist = join(nodes[1]!.config.dataDir, 'live', live.streams[0].streamId, 'index.m3u8');
    await waitFor('live HLS segments on the dc1 node', async () => (existsSync(playlist) && parseMediaPlaylist(readFileSync(playlist, 'utf8')).segments.length >= 2 ? true : undefined), 20_000);

    // Drain vs-dc1 with the call on it.
    const drained = await api('POST', '/api/cluster/voice-servers/vs-dc1/drain');
    assert.equal(drained.status, 200, drained.text);
    assert.equal(drained.body.state, 'maintenance');
    assert.equal(drained.body.drained, false, 'its busy channel keeps it from being drained');
    assert.deepEqual(drained.body.channelStates, { inService: 1, busy: 1, maintenance: 3, outOfService: 0 });
    await waitFor('the router sees vs-dc1 in maintenance', async () => ((await routerStatus()).voiceServers.find((v) => v.nodeId === 'vs-dc1')?.state === 'maintenance' ? true : undefined), 3000);

    const call2 = runSipp({ scenario: holdScenario(work, 'hold-a', 2500), target: `127.0.0.1:${ROUTER_SIP}`, localPort: 22142, mediaPort: 22154, cwd: work });
    const where2 = await landed(call2);
    assert.equal((await call2).code, 0, 'the second call completed');
    assert.deepEqual(where2.most, { 'vs-dc1': 1, 'vs-dc2': 1 }, 'the second call fell over to dc2 (vs-dc1 kept only its busy call)');

    const r1 = await call1;
    assert.equal(r1.code, 0, `the first call was not disturbed by the drain:\n${r1.stdout}`);
    const cluster = await waitFor('vs-dc1 reports drained', async () => {
      const c = (await api('GET', '/api/cluster')).body;
      return c.voiceServers.find((v: any) => v.nodeId === 'vs-dc1')?.drained === true ? c : undefined;
    }, 5000);
    assert.equal(cluster.voiceServers.find((v: any) => v.nodeId === 'vs-dc1').state, 'maintenance');
    assert.ok(cluster.sipRouters.some((r: any) => r.nodeId === 'front-dc1'), 'GET /api/cluster lists the front door');

    // Resume from the command line, as an operator would.
    const cli = spawn(process.execPath, ['bin/jitcast.js', 'resume', 'vs-dc1', '--url', `http://127.0.0.1:${HTTP}`], { env: { ...process.env, JITCAST_API_KEYS: API_KEY, JITCAST_DATA_DIR: work } });
    let out = '';
    cli.stdout.on('data', (d) => (out += d));
    cli.stderr.on('data', (d) => (out += d));
    const [code] = (await once(cli, 'exit')) as [number];
    assert.equal(code, 0, out);
    assert.match(out, /vs-dc1 is in-service/);
    await waitFor('vs-dc1 routable again', async () => ((await routable('vs-dc1')) ? true : undefined), 3000);
    const call3 = runSipp({ scenario: holdScenario(work, 'hold-b', 1500), target: `127.0.0.1:${ROUTER_SIP}`, localPort: 22143, mediaPort: 22158, cwd: work });
    const where3 = await landed(call3);
    assert.equal((await call3).code, 0);
    assert.deepEqual(where3.most, { 'vs-dc1': 1, 'vs-dc2': 0 }, 'resumed, dc1 takes calls again');
  });

  test('drain and resume answer 404 for a node without a voice server and 401 without the API key', async () => {
    assert.equal((await api('POST', '/api/cluster/voice-servers/front-dc1/drain')).status, 404);
    assert.equal((await api('POST', '/api/cluster/voice-servers/no-such-node/resume')).status, 404);
    const res = await fetch(`http://127.0.0.1:${HTTP}/api/cluster/voice-servers/vs-dc1/drain`, { method: 'POST' });
    assert.equal(res.status, 401);
    assert.equal((await voice('vs-dc1')).state, 'in-service', 'the refused request changed nothing');
  });

  test('port availability suspend: with 3 of 4 ports busy vs-dc1 suspends, the 4th call goes to dc2, and dc1 takes calls again once ports rest', async () => {
    // The router's view (last broadcast status) must show all 4 ports free, not just the server's own.
    await waitFor('the router sees all 4 ports of vs-dc1 free', async () => ((await routerStatus()).voiceServers.find((v) => v.nodeId === 'vs-dc1')?.freePorts === 4 ? true : undefined), 10_000);
    const calls = runSipp({ scenario: holdScenario(work, 'hold-four', 3000), target: `127.0.0.1:${ROUTER_SIP}`, localPort: 22144, mediaPort: 22162, cwd: work, calls: 4, rate: 20, extra: ['-l', '4'] });
    const where = await landed(calls);
    const r = await calls;
    assert.equal(r.code, 0, `sipp:\n${r.stdout}`);
    assert.deepEqual(where.most, { 'vs-dc1': 3, 'vs-dc2': 1 });
    assert.ok(where.states['vs-dc1']!.has('suspended'), `the router saw vs-dc1 suspended (saw ${[...where.states['vs-dc1']!]})`);
    // The three ports rest 2 s (port reuse timeout); then vs-dc1 resumes on its own.
    await waitFor('vs-dc1 back in service', async () => ((await routable('vs-dc1')) ? true : undefined), 8000);
    const one = runSipp({ scenario: holdScenario(work, 'hold-c', 1500), target: `127.0.0.1:${ROUTER_SIP}`, localPort: 22145, mediaPort: 22166, cwd: work });
    const later = await landed(one);
    assert.equal((await one).code, 0);
    assert.deepEqual(later.most, { 'vs-dc1': 1, 'vs-dc2': 0 });
  });

  test('with every voice server in maintenance the front door answers 503 with Retry-After', async () => {
    for (const id of ['vs-dc1', 'vs-dc2']) assert.equal((await api('POST', `/api/cluster/voice-servers/${id}/drain`)).status, 200);
    await waitFor('nothing routable', async () => ((await routerStatus()).voiceServers.every((v) => !v.routable) ? true : undefined), 3000);
    const sock = createSocket('udp4');
    sock.bind(22146, '127.0.0.1');
    await once(sock, 'listening');
    const sdp = 'v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 22199 RTP/AVP 0\r\n';
    const reply = once(sock, 'message');
    sock.send(
      Buffer.from(
        [`INVITE sip:jitcast@127.0.0.1:${ROUTER_SIP} SIP/2.0`, 'Via: SIP/2.0/UDP 127.0.0.1:22146;branch=z9hG4bKnone;rport', 'Max-Forwards: 70', 'From: <sip:c@127.0.0.1:22146>;tag=n1', `To: <sip:jitcast@127.0.0.1:${ROUTER_SIP}>`, 'Call-ID: no-server', 'CSeq: 1 INVITE', 'Contact: <sip:c@127.0.0.1:22146>', 'Content-Type: application/sdp', `Content-Length: ${sdp.length}`, '', sdp].join('\r\n'),
      ),
      ROUTER_SIP,
      '127.0.0.1',
    );
    const [buf] = (await reply) as [Buffer];
    sock.close();
    const res = parseSip(buf) as SipResponse;
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('Retry-After'), '5');
    for (const id of ['vs-dc1', 'vs-dc2']) assert.equal((await api('POST', `/api/cluster/voice-servers/${id}/resume`)).body.state, 'in-service');
    await waitFor('both routable again', async () => ((await routable('vs-dc1')) && (await routable('vs-dc2')) ? true : undefined), 3000);
  });

  test('a baresip call through the front door lands on dc1 and goes live', async () => {
    const ev = (await api('POST', '/api/events', { title: 'baresip via the front door' })).body;
    const wav = join(work, 'tone.wav');
    writeWav(wav, sine(1000, 60_000, 8000));
    phone = startBaresip({ dir: join(work, 'baresip'), sipPort: 22170, consPort: 22173, rtpPorts: [22180, 22189], wav, dial: `sip:jitcast@127.0.0.1:${ROUTER_SIP}`, user: 'front-door-caller', maxSeconds: 60 });
    const p = phone;
    const explain = (m: string) => `${m}\n--- baresip ---\n${p.output().slice(-3000)}`;
    await p.established().catch((err: Error) => assert.fail(explain(err.message)));
    const ch = await waitFor('the call on vs-dc1 asking for the event ID', async () => {
      const c = (await voice('vs-dc1')).channels[0];
      return c?.phase === 'event-id' ? c : undefined;
    }, 10_000).catch((err: Error) => assert.fail(explain(err.message)));
    assert.equal(ch.codec, 'PCMU');
    assert.equal((await voice('vs-dc2')).channels.length, 0);
    await sleep(800);
    await p.command(`/sndcode ${ev.eventId}#`);
    await waitFor('the PIN phase', async () => ((await voice('vs-dc1')).channels[0]?.phase === 'pin' ? true : undefined), 10_000).catch((err: Error) => assert.fail(explain(err.message)));
    await sleep(800);
    await p.command(`/sndcode ${ev.pin}#`);
    const live = await waitFor('live with a stream on vs-dc1', async () => {
      const v = (await api('GET', `/api/events/${ev.eventId}`)).body;
      return v?.status === 'live' && v.streams?.length > 0 ? v : undefined;
    }, 25_000).catch((err: Error) => assert.fail(explain(err.message)));
    assert.equal(live.streams[0].nodeId, 'vs-dc1');
    await p.command('/hangup');
    await waitFor('the call gone from vs-dc1', async () => ((await voice('vs-dc1')).channels.length === 0 ? true : undefined), 10_000).catch((err: Error) => assert.fail(explain(err.message)));
    await p.stop();
    phone = undefined;
  });

  test('a voice node that leaves the cluster is dropped from the routing table at once', async () => {
    const vs2 = nodes.find((n) => n.config.nodeId === 'vs-dc2')!;
    const t0 = Date.now();
    await vs2.stop();
    await waitFor('vs-dc2 gone from the router', async () => ((await routerStatus()).voiceServers.some((v) => v.nodeId === 'vs-dc2' && v.routable) ? undefined : true), 2000, 20);
    assert.ok(Date.now() - t0 < 2000, `dropped after ${Date.now() - t0} ms`);
  });
});
