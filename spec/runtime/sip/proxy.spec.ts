/**
 * The front-door proxy over real UDP on 127.0.0.1: a raw UDP caller, the proxy, and jitcast's own
 * SipUserAgent as the voice servers (so the proxy is checked against a strict RFC 3261 UAS).
 * Ports: proxy 17060, voice servers 17061–17064, raw peers 17100–17119.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, it } from 'node:test';
import { negotiateAnswer } from '../../../codecs/sdp.ts';
import { parseNameAddr, parseSip, parseVia, tagOf, type SipMessage, type SipRequest, type SipResponse } from '../../../codecs/sip.ts';
import { SipUserAgent, type InboundCall } from '../../../runtime/sip/index.ts';
import { retarget, SipProxy, uriHostPort, type ProxyRoutes, type ProxyTarget } from '../../../runtime/sip/proxy.ts';

const HOST = '127.0.0.1';
const PROXY_PORT = 17060;
const TIMERS = { T1: 40, T2: 320, T4: 100 };
let nextUaPort = 17061;
let nextPeerPort = 17100;
const closers: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
  nextUaPort = 17061;
});

/** Routes in a fixed order of preference; records what the proxy reports. */
class FakeRoutes implements ProxyRoutes {
  readonly refusedLog: Array<[string, string]> = [];
  readonly refusedSet = new Set<string>();
  constructor(readonly targets: ProxyTarget[]) {}
  pick(exclude: ReadonlySet<string>): ProxyTarget | undefined {
    return this.targets.find((t) => !exclude.has(t.nodeId) && !this.refusedSet.has(t.nodeId));
  }
  nodeAt(host: string, port: number): string | undefined {
    return this.targets.find((t) => t.host === host && t.port === port)?.nodeId;
  }
  refused(nodeId: string, why: 'refused' | 'silent'): void {
    this.refusedLog.push([nodeId, why]);
    this.refusedSet.add(nodeId);
  }
}

async function startProxy(routes: ProxyRoutes, extra: { silentMs?: number } = {}): Promise<SipProxy> {
  const proxy = await SipProxy.listen({ host: HOST, port: PROXY_PORT, routes, silentMs: extra.silentMs ?? 200 });
  closers.push(() => proxy.close());
  return proxy;
}

/** A voice server stand-in: jitcast's UAS, answering every call (or rejecting with `reject`). */
async function startVoice(nodeId: string, behaviour: { reject?: number } = {}): Promise<{ ua: SipUserAgent; target: ProxyTarget; calls: InboundCall[]; invites: SipRequest[] }> {
  const port = nextUaPort++;
  const ua = await SipUserAgent.listen({ host: HOST, port, timers: TIMERS });
  closers.push(() => ua.close());
  const calls: InboundCall[] = [];
  const invites: SipRequest[] = [];
  ua.on('invite', (call) => {
    calls.push(call);
    if (behaviour.reject) {
      call.reject(behaviour.reject, undefined, [['Retry-After', '30']]);
      return;
    }
    call.answer(negotiateAnswer(call.offer!, { address: HOST, port: 42000 + calls.length * 2, sessionId: '1', version: 1 }).answer);
  });
  return { ua, target: { nodeId, host: HOST, port, dataCenter: 'dc1' }, calls, invites };
}

/** A UDP socket that receives and never answers (a hung voice server). */
async function startSilent(nodeId: string): Promise<{ target: ProxyTarget; received: SipMessage[] }> {
  const port = nextUaPort++;
  const socket = dgram.createSocket('udp4');
  const received: SipMessage[] = [];
  socket.on('message', (buf) => received.push(parseSip(buf)));
  socket.bind(port, HOST);
  await once(socket, 'listening');
  closers.push(() => new Promise<void>((r) => socket.close(() => r())));
  return { target: { nodeId, host: HOST, port }, received };
}

/** A raw UDP caller. */
class Caller {
  readonly socket = dgram.createSocket('udp4');
  readonly #queue: SipMessage[] = [];
  readonly #waiters: Array<(m: SipMessage) => void> = [];
  readonly all: SipMessage[] = [];
  port = 0;

  static async open(): Promise<Caller> {
    const c = new Caller();
    c.socket.on('message', (buf) => {
      const m = parseSip(buf);
      c.all.push(m);
      const w = c.#waiters.shift();
      if (w) w(m);
      else c.#queue.push(m);
    });
    c.socket.bind(nextPeerPort++, HOST);
    await once(c.socket, 'listening');
    c.port = c.socket.address().port;
    closers.push(() => new Promise<void>((r) => c.socket.close(() => r())));
    return c;
  }

  send(text: string, port = PROXY_PORT): void {
    this.socket.send(Buffer.from(text.replace(/\n/g, '\r\n'), 'utf8'), port, HOST);
  }

  next(timeoutMs = 3000): Promise<SipMessage> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const waiter = (msg: SipMessage) => {
        clearTimeout(t);
        resolve(msg);
      };
      const t = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`no SIP message within ${timeoutMs} ms (got so far: ${this.all.map((m) => (m.kind === 'response' ? m.status : m.method)).join(', ')})`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  async response(status: number, timeoutMs = 3000): Promise<SipResponse> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, until - Date.now()));
      if (m.kind === 'response' && m.status === status) return m;
    }
  }
}

const SDP = `v=0
o=caller 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 42900 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
`;

function invite(c: Caller, o: { callId: string; branch: string; maxForwards?: number; method?: string; cseqMethod?: string; toTag?: string; uri?: string; body?: boolean }): string {
  const method = o.method ?? 'INVITE';
  const body = o.body === false || method !== 'INVITE' ? '' : SDP; // send() turns every \n into CRLF
  return [
    `${method} ${o.uri ?? `sip:jitcast@${HOST}:${PROXY_PORT}`} SIP/2.0`,
    `Via: SIP/2.0/UDP ${HOST}:${c.port};branch=${o.branch};rport`,
    `Max-Forwards: ${o.maxForwards ?? 70}`,
    `From: <sip:caller@${HOST}:${c.port}>;tag=caller1`,
    `To: <sip:jitcast@${HOST}:${PROXY_PORT}>${o.toTag ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId}`,
    `CSeq: 1 ${o.cseqMethod ?? method}`,
    `Contact: <sip:caller@${HOST}:${c.port}>`,
    ...(body ? ['Content-Type: application/sdp'] : []),
    `Content-Length: ${Buffer.byteLength(body.replace(/\n/g, '\r\n'))}`,
    '',
    body,
  ].join('\n');
}

/** ACK or BYE inside the dialog a 2xx created, to the voice server's Contact (no Record-Route: direct). */
function inDialog(c: Caller, ok: SipResponse, method: 'ACK' | 'BYE', cseq: number, branch: string): { text: string; uri: string } {
  const uri = parseNameAddr(ok.headers.get('Contact')!).uri;
  const text = [
    `${method} ${uri} SIP/2.0`,
    `Via: SIP/2.0/UDP ${HOST}:${c.port};branch=${branch};rport`,
    'Max-Forwards: 70',
    `From: <sip:caller@${HOST}:${c.port}>;tag=caller1`,
    `To: ${ok.headers.get('To')}`,
    `Call-ID: ${ok.headers.get('Call-ID')}`,
    `CSeq: ${cseq} ${method}`,
    'Content-Length: 0',
    '',
    '',
  ].join('\n');
  return { text, uri };
}

describe('SipProxy (front door, RFC 3261 §16.11)', () => {
  it('retarget() and uriHostPort() keep the user part and parameters', () => {
    assert.equal(retarget('sip:jitcast@10.0.0.1:5060;transport=udp', { host: '10.0.0.9', port: 5070 }), 'sip:jitcast@10.0.0.9:5070;transport=udp');
    assert.equal(retarget('sip:frontdoor.example.com', { host: '10.0.0.9', port: 5070 }), 'sip:10.0.0.9:5070');
    assert.equal(retarget('tel:+15551234;phone-context=x', { host: '10.0.0.9', port: 5070 }), 'sip:+15551234@10.0.0.9:5070');
    assert.deepEqual(uriHostPort('sip:jitcast@127.0.0.1:17061'), { host: '127.0.0.1', port: 17061 });
    assert.deepEqual(uriHostPort('sip:host.example'), { host: 'host.example', port: 5060 });
  });

  it('answers OPTIONS itself with 200 and Allow', async () => {
    await startProxy(new FakeRoutes([]));
    const c = await Caller.open();
    c.send(invite(c, { callId: 'opt-1', branch: 'z9hG4bKopt1', method: 'OPTIONS' }));
    const res = await c.response(200);
    assert.match(res.headers.get('Allow')!, /INVITE/);
    assert.equal(res.headers.get('Call-ID'), 'opt-1');
  });

  it('forwards an INVITE to the chosen voice server with its own Via, Max-Forwards - 1, retargeted URI and no Record-Route; ACK and BYE go straight to the server', async () => {
    const a = await startVoice('vs-a');
    await startProxy(new FakeRoutes([a.target]));
    const c = await Caller.open();
    c.send(invite(c, { callId: 'call-1', branch: 'z9hG4bKc1' }));
    const trying = await c.response(100);
    assert.equal(trying.headers.getAll('Via').length, 1, 'the proxy pops its own Via');
    const ok = await c.response(200);
    assert.equal(ok.headers.getAll('Via').length, 1);
    assert.equal(parseVia(ok.headers.get('Via')!).params.branch, 'z9hG4bKc1');
    assert.equal(ok.headers.has('Record-Route'), false);
    assert.equal(uriHostPort(parseNameAddr(ok.headers.get('Contact')!).uri)?.port, a.target.port, 'Contact is the voice server');
    assert.equal(a.calls.length, 1);
    assert.equal(a.calls[0]!.remote.port, PROXY_PORT, 'the INVITE came through the proxy');

    const ack = inDialog(c, ok, 'ACK', 1, 'z9hG4bKack1');
    const confirmed = once(a.calls[0]!, 'confirmed');
    c.send(ack.text, uriHostPort(ack.uri)!.port);
    await confirmed;
    const bye = inDialog(c, ok, 'BYE', 2, 'z9hG4bKbye1');
    const ended = once(a.calls[0]!, 'terminated');
    c.send(bye.text, uriHostPort(bye.uri)!.port);
    assert.equal((await c.response(200)).headers.get('CSeq'), '2 BYE');
    assert.deepEqual(await ended, ['bye']);
  });

  it('the voice server sees the proxy\'s Via on top with an RFC 3261 branch and Max-Forwards 69', async () => {
    const silent = await startSilent('vs-raw');
    await startProxy(new FakeRoutes([silent.target]));
    const c = await Caller.open();
    c.send(invite(c, { callId: 'hdr-1', branch: 'z9hG4bKhdr1' }));
    while (silent.received.length === 0) await new Promise((r) => setTimeout(r, 10));
    const fwd = silent.received[0] as SipRequest;
    assert.equal(fwd.uri, `sip:jitcast@${HOST}:${silent.target.port}`);
    const vias = fwd.headers.getAll('Via').map(parseVia);
    assert.equal(vias.length, 2);
    assert.equal(`${vias[0]!.host}:${vias[0]!.port}`, `${HOST}:${PROXY_PORT}`);
    assert.match(String(vias[0]!.params.branch), /^z9hG4bK/);
    assert.equal(vias[1]!.params.received, HOST);
    assert.equal(vias[1]!.params.rport, String(c.port));
    assert.equal(fwd.headers.get('Max-Forwards'), '69');
    assert.equal(fwd.headers.has('Record-Route'), false);
  });

  it('an INVITE retransmission goes to the same server with the same branch (no second call)', async () => {
    const silent = await startSilent('vs-raw');
    await startProxy(new FakeRoutes([silent.target]), { silentMs: 60_000 });
    const c = await Caller.open();
    const text = invite(c, { callId: 'rtx-1', branch: 'z9hG4bKrtx1' });
    c.send(text);
    c.send(text);
    while (silent.received.length < 2) await new Promise((r) => setTimeout(r, 10));
    const [one, two] = silent.received.map((m) => parseVia(m.headers.get('Via')!).params.branch);
    assert.equal(one, two);
  });

  it('CANCEL reaches the same server: 200 for the CANCEL, 487 for the INVITE, and the caller\'s ACK of the 487 stops its retransmissions', async () => {
    const a = await startVoice('vs-a');
    a.ua.removeAllListeners('invite');
    a.ua.on('invite', (call) => {
      a.calls.push(call);
      call.ringing();
    });
    await startProxy(new FakeRoutes([a.target]));
    const c = await Caller.open();
    c.send(invite(c, { callId: 'cancel-1', branch: 'z9hG4bKcan1' }));
    await c.response(180);
    c.send(invite(c, { callId: 'cancel-1', branch: 'z9hG4bKcan1', method: 'CANCEL' }));
    const ok = await c.response(200);
    assert.equal(ok.headers.get('CSeq'), '1 CANCEL');
    const terminated = await c.response(487);
    assert.deepEqual(a.calls.map((x) => x.state), ['terminated']);
    c.send(
      [
        `ACK sip:jitcast@${HOST}:${PROXY_PORT} SIP/2.0`,
        `Via: SIP/2.0/UDP ${HOST}:${c.port};branch=z9hG4bKcan1;rport`,
        'Max-Forwards: 70',
        `From: <sip:caller@${HOST}:${c.port}>;tag=caller1`,
        `To: ${terminated.headers.get('To')}`,
        'Call-ID: cancel-1',
        'CSeq: 1 ACK',
        'Content-Length: 0',
        '',
        '',
      ].join('\n'),
    );
    // Timer G would re-send the 487 after 40, 80, 160 ms… unless the ACK reached the server's transaction.
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(c.all.filter((m) => m.kind === 'response' && m.status === 487).length, 1, 'the 487 was not retransmitted');
  });

  it('a 503 from one server is ACKed by the proxy and the call goes to the next; the caller never sees the 503', async () => {
    const a = await startVoice('vs-a', { reject: 503 });
    const b = await startVoice('vs-b');
    const routes = new FakeRoutes([a.target, b.target]);
    await startProxy(routes);
    const c = await Caller.open();
    c.send(invite(c, { callId: 'fail-1', branch: 'z9hG4bKf1' }));
    const ok = await c.response(200);
    assert.equal(uriHostPort(parseNameAddr(ok.headers.get('Contact')!).uri)?.port, b.target.port);
    assert.deepEqual(routes.refusedLog, [['vs-a', 'refused']]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.all.some((m) => m.kind === 'response' && m.status === 503), false);
    assert.equal(a.ua.stats().transactions <= 1, true, 'the 503 transaction was ACKed (Timer G stopped)');
  });

  it('with no voice server the caller gets 503 with Retry-After; a retransmission gets the same answer and the ACK is absorbed', async () => {
    const proxy = await startProxy(new FakeRoutes([]));
    const c = await Caller.open();
    const text = invite(c, { callId: 'none-1', branch: 'z9hG4bKn1' });
    c.send(text);
    const first = await c.response(503);
    assert.equal(first.headers.get('Retry-After'), '5');
    assert.ok(tagOf(first.headers.get('To')));
    c.send(text);
    const second = await c.response(503);
    assert.equal(second.headers.get('To'), first.headers.get('To'));
    assert.equal(proxy.stats().unavailable, 1);
  });

  it('a server that does not answer within silentMs is skipped when the caller retransmits', async () => {
    const dead = await startSilent('vs-dead');
    const b = await startVoice('vs-b');
    const routes = new FakeRoutes([dead.target, b.target]);
    const proxy = await startProxy(routes, { silentMs: 200 });
    const c = await Caller.open();
    const text = invite(c, { callId: 'silent-1', branch: 'z9hG4bKs1' });
    c.send(text);
    await new Promise((r) => setTimeout(r, 250));
    c.send(text); // the caller's Timer A retransmission
    const ok = await c.response(200);
    assert.equal(uriHostPort(parseNameAddr(ok.headers.get('Contact')!).uri)?.port, b.target.port);
    assert.deepEqual(routes.refusedLog, [['vs-dead', 'silent']]);
    assert.equal(proxy.stats().rerouted, 1);
  });

  it('a late 2xx from an abandoned server is ACKed and hung up by the proxy, not forwarded', async () => {
    const dead = await startSilent('vs-dead');
    const b = await startVoice('vs-b');
    await startProxy(new FakeRoutes([dead.target, b.target]), { silentMs: 200 });
    const c = await Caller.open();
    const text = invite(c, { callId: 'late-1', branch: 'z9hG4bKl1' });
    c.send(text);
    await new Promise((r) => setTimeout(r, 250));
    c.send(text);
    await c.response(200);
    // Now the abandoned server wakes up and answers its copy of the INVITE.
    const fwd = dead.received[0] as SipRequest;
    const late = [
      'SIP/2.0 200 OK',
      ...fwd.headers.getAll('Via').map((v) => `Via: ${v}`),
      `From: ${fwd.headers.get('From')}`,
      `To: ${fwd.headers.get('To')};tag=late`,
      'Call-ID: late-1',
      'CSeq: 1 INVITE',
      `Contact: <sip:jitcast@${HOST}:${dead.target.port}>`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.send(Buffer.from(late), PROXY_PORT, HOST, () => r()));
    sock.close();
    const until = Date.now() + 2000;
    while (!dead.received.some((m) => m.kind === 'request' && m.method === 'BYE') && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(dead.received.filter((m) => m.kind === 'request' && m.method !== 'INVITE').map((m) => (m as SipRequest).method), ['ACK', 'BYE']);
    await new Promise((r) => setTimeout(r, 100));
    const contacts = c.all.filter((m) => m.kind === 'response' && m.status === 200).map((m) => uriHostPort(parseNameAddr(m.headers.get('Contact')!).uri)?.port);
    assert.deepEqual([...new Set(contacts)], [b.target.port], 'the caller got only the live server\'s 200 (and its retransmissions)');
  });

  it('answers 483 to Max-Forwards 0, 405 to REGISTER, 481 to an unknown in-dialog request and 400 to garbage with a Via', async () => {
    await startProxy(new FakeRoutes([]));
    const c = await Caller.open();
    c.send(invite(c, { callId: 'mf-1', branch: 'z9hG4bKmf1', maxForwards: 0 }));
    await c.response(483);
    c.send(invite(c, { callId: 'reg-1', branch: 'z9hG4bKreg1', method: 'REGISTER' }));
    await c.response(405);
    c.send(invite(c, { callId: 'bye-1', branch: 'z9hG4bKbye9', method: 'BYE', toTag: 'x1' }));
    await c.response(481);
    c.send(`INVITE sip:jitcast@${HOST} SIP/2.0\nVia: SIP/2.0/UDP ${HOST}:${c.port};branch=z9hG4bKbad\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: bad-1\nCSeq: 1 INVITE\nContent-Length: 99\n\n`);
    const bad = await c.response(400);
    assert.equal(bad.headers.get('Call-ID'), 'bad-1');
  });

  it('forwards an in-dialog BYE sent to the proxy by its Request-URI, but only to a known voice server', async () => {
    const a = await startVoice('vs-a');
    await startProxy(new FakeRoutes([a.target]));
    const c = await Caller.open();
    c.send(invite(c, { callId: 'via-1', branch: 'z9hG4bKv1' }));
    const ok = await c.response(200);
    const ack = inDialog(c, ok, 'ACK', 1, 'z9hG4bKv1ack');
    const confirmed = once(a.calls[0]!, 'confirmed');
    c.send(ack.text); // to the proxy, not the Contact
    await confirmed;
    const bye = inDialog(c, ok, 'BYE', 2, 'z9hG4bKv1bye');
    c.send(bye.text); // to the proxy
    assert.equal((await c.response(200)).headers.get('CSeq'), '2 BYE');
    assert.equal(a.calls[0]!.state, 'terminated');
    // A Request-URI naming some other host is not relayed.
    c.send(invite(c, { callId: 'relay-1', branch: 'z9hG4bKr1', method: 'BYE', toTag: 't', uri: 'sip:victim@127.0.0.1:17099' }));
    await c.response(481);
  });
});
