import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { negotiateAnswer } from '../../../codecs/sdp.ts';
import { parseSip, parseVia, tagOf, type SipMessage, type SipRequest, type SipResponse } from '../../../codecs/sip.ts';
import { SipUserAgent, type InboundCall, type InfoEvent, type TerminationReason } from '../../../runtime/sip/index.ts';

const FIXTURES = fileURLToPath(new URL('../../fixtures/sipp/', import.meta.url));
const HOST = '127.0.0.1';
const TIMERS = { T1: 40, T2: 320, T4: 100 };

let nextUaPort = 15060; // 15060–15078 (15079 belongs to transport.spec.ts)
let nextPeerPort = 15080; // sipp and raw peers: 15080–15099
const open: SipUserAgent[] = [];

async function startUa(extra: Partial<Parameters<typeof SipUserAgent.listen>[0]> = {}): Promise<SipUserAgent> {
  const port = nextUaPort++;
  assert.ok(port <= 15078, 'spec ran out of UA ports 15060–15078');
  const ua = await SipUserAgent.listen({ host: HOST, port, timers: TIMERS, ...extra });
  open.push(ua);
  return ua;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((ua) => ua.close()));
});

/** Answer every call with a negotiated SDP (RTP ports 16000+, never bound: sipp sends no media here). */
function autoAnswer(ua: SipUserAgent, onCall?: (call: InboundCall) => void): InboundCall[] {
  const calls: InboundCall[] = [];
  let version = 1;
  ua.on('invite', (call) => {
    calls.push(call);
    onCall?.(call);
    call.ringing();
    const n = negotiateAnswer(call.offer!, { address: HOST, port: 16000 + calls.length * 2, sessionId: '4711', version: version++ });
    call.answer(n.answer);
  });
  return calls;
}

interface SippResult {
  code: number | null;
  errors: string;
}

/** Run sipp in the foreground (FIELD-NOTES: -nostdin, exit code 0 = every call passed). */
async function runSipp(scenario: string, uaPort: number, args: string[] = []): Promise<SippResult> {
  const port = nextPeerPort++;
  assert.ok(port <= 15099, 'spec ran out of peer ports 15080–15099');
  const dir = await mkdtemp(join(tmpdir(), 'jitcast-sipp-'));
  const errorFile = join(dir, 'errors.log');
  const child = spawn(
    'sipp',
    [
      '-sf', join(FIXTURES, scenario),
      '-i', HOST, '-mi', HOST, '-p', String(port), '-mp', String(16050 + (port - 15080) * 2),
      '-m', '1', '-nostdin', '-timeout', '20s', '-timeout_error',
      '-trace_err', '-error_file', errorFile,
      ...args,
      `${HOST}:${uaPort}`,
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  const errors = `${stderr}${await readFile(errorFile, 'utf8').catch(() => '')}`;
  await rm(dir, { recursive: true, force: true });
  return { code, errors };
}

/** Poll until the condition holds (the test's own timeout bounds it). */
async function eventually(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

/** A raw UDP peer that speaks SIP by hand. */
class RawPeer {
  readonly socket = dgram.createSocket('udp4');
  readonly #queue: SipMessage[] = [];
  readonly #waiters: Array<(m: SipMessage) => void> = [];
  port = 0;

  static async open(): Promise<RawPeer> {
    const p = new RawPeer();
    p.socket.on('message', (buf) => {
      const m = parseSip(buf);
      const w = p.#waiters.shift();
      if (w) w(m);
      else p.#queue.push(m);
    });
    const port = nextPeerPort++;
    assert.ok(port <= 15099, 'spec ran out of peer ports 15080–15099');
    p.socket.bind(port, HOST);
    await once(p.socket, 'listening');
    p.port = p.socket.address().port;
    return p;
  }

  send(data: string | Buffer, uaPort: number): void {
    this.socket.send(typeof data === 'string' ? Buffer.from(data, 'utf8') : data, uaPort, HOST);
  }

  next(): Promise<SipMessage> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async nextResponse(status?: number): Promise<SipResponse> {
    for (;;) {
      const m = await this.next();
      if (m.kind === 'response' && (status === undefined || m.status === status)) return m;
    }
  }

  async nextRequest(method: string): Promise<SipRequest> {
    for (;;) {
      const m = await this.next();
      if (m.kind === 'request' && m.method === method) return m;
    }
  }

  close(): void {
    this.socket.close();
  }
}

const OFFER = [
  'v=0',
  'o=raw 1 1 IN IP4 127.0.0.1',
  's=-',
  'c=IN IP4 127.0.0.1',
  't=0 0',
  'm=audio 16090 RTP/AVP 8 0 101',
  'a=rtpmap:101 telephone-event/8000',
  'a=fmtp:101 0-16',
  '',
].join('\r\n');

interface ReqOpts {
  method: string;
  callId: string;
  branch: string;
  cseq: number;
  port: number;
  fromTag?: string;
  toTag?: string;
  body?: string;
  contentType?: string;
  extra?: string[];
  rport?: boolean;
  cseqMethod?: string;
}

function request(o: ReqOpts): string {
  const body = o.body ?? '';
  const lines = [
    `${o.method} sip:jitcast@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${o.port};branch=${o.branch}${o.rport ? ';rport' : ''}`,
    'Max-Forwards: 70',
    `From: <sip:raw@127.0.0.1:${o.port}>;tag=${o.fromTag ?? 'rawtag'}`,
    `To: <sip:jitcast@127.0.0.1>${o.toTag ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq} ${o.cseqMethod ?? o.method}`,
    `Contact: <sip:raw@127.0.0.1:${o.port}>`,
    ...(o.extra ?? []),
    ...(body ? [`Content-Type: ${o.contentType ?? 'application/sdp'}`] : []),
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ];
  return lines.join('\r\n');
}

/** Terminated reason of a call, as a promise. */
function terminated(call: InboundCall): Promise<TerminationReason> {
  return new Promise((resolve) => call.once('terminated', resolve));
}

describe('SipUserAgent against sipp', () => {
  it('answers a sipp call, emits confirmed, and ends it with terminated(bye) on the caller BYE', async () => {
    const ua = await startUa();
    const reasons: TerminationReason[] = [];
    let confirmed = 0;
    autoAnswer(ua, (call) => {
      call.on('confirmed', () => confirmed++);
      call.on('terminated', (r) => reasons.push(r));
    });
    const r = await runSipp('uac-basic.xml', ua.address.port, ['-d', '300']);
    assert.equal(r.code, 0, r.errors);
    assert.equal(confirmed, 1);
    assert.deepEqual(reasons, ['bye']);
    await eventually(() => ua.stats().transactions === 0);
    assert.equal(ua.stats().dialogs, 0);
  });

  it('hangup() sends a BYE that sipp answers 200, and resolves after it', async () => {
    const ua = await startUa();
    const reasons: TerminationReason[] = [];
    let hungUp: Promise<void> | undefined;
    autoAnswer(ua, (call) => {
      call.on('terminated', (r) => reasons.push(r));
      call.on('confirmed', () => {
        setTimeout(() => (hungUp = call.hangup()), 1000);
      });
    });
    const r = await runSipp('uac-uas-hangup.xml', ua.address.port);
    assert.equal(r.code, 0, r.errors);
    assert.ok(hungUp);
    await hungUp;
    assert.deepEqual(reasons, ['hangup']);
    await eventually(() => ua.stats().dialogs === 0 && ua.stats().transactions === 0);
  });

  it('CANCEL before the answer gets 200, the INVITE 487, and terminated(cancel)', async () => {
    const ua = await startUa();
    const reasons: TerminationReason[] = [];
    ua.on('invite', (call) => {
      call.on('terminated', (r) => reasons.push(r));
      call.ringing(); // answer() is never called: sipp cancels after the 180
    });
    const r = await runSipp('uac-cancel.xml', ua.address.port);
    assert.equal(r.code, 0, r.errors);
    assert.deepEqual(reasons, ['cancel']);
    await eventually(() => ua.stats().dialogs === 0 && ua.stats().transactions === 0);
  });

  it('OPTIONS gets 200 with Allow and Accept (checked by the sipp scenario)', async () => {
    const ua = await startUa();
    const r = await runSipp('uac-options.xml', ua.address.port);
    assert.equal(r.code, 0, r.errors);
  });

  it('a hold re-INVITE (a=sendonly) reaches reinvite and is answered 200 with a=recvonly', async () => {
    const ua = await startUa();
    const offers: Array<string | undefined> = [];
    autoAnswer(ua, (call) => {
      call.on('reinvite', (offer, respond) => {
        offers.push(offer);
        respond(negotiateAnswer(offer!, { address: HOST, port: 16000, sessionId: '4711', version: 2 }).answer);
      });
    });
    const r = await runSipp('uac-reinvite-hold.xml', ua.address.port);
    assert.equal(r.code, 0, r.errors);
    assert.equal(offers.length, 1);
    assert.match(offers[0] ?? '', /a=sendonly/);
  });

  it('INFO with application/dtmf-relay gets 200 and fires info with its body', async () => {
    const ua = await startUa();
    const infos: InfoEvent[] = [];
    autoAnswer(ua, (call) => call.on('info', (i) => infos.push(i)));
    const r = await runSipp('uac-info.xml', ua.address.port);
    assert.equal(r.code, 0, r.errors);
    assert.equal(infos.length, 1);
    assert.equal(infos[0].contentType, 'application/dtmf-relay');
    assert.equal(infos[0].body, 'Signal=5\r\nDuration=160\r\n');
  });

  it('re-sends the 200 until the ACK: sipp receives it twice before acknowledging', async () => {
    const ua = await startUa();
    autoAnswer(ua);
    const r = await runSipp('uac-2xx-retransmit.xml', ua.address.port, ['-nr']);
    assert.equal(r.code, 0, r.errors);
    assert.ok(ua.stats().retransmitted2xx >= 1);
  });

  it('handles 20 concurrent sipp calls, all answered and ended, and leaves no dialog behind', async () => {
    const ua = await startUa();
    const reasons: TerminationReason[] = [];
    autoAnswer(ua, (call) => call.on('terminated', (r) => reasons.push(r)));
    const r = await runSipp('uac-basic.xml', ua.address.port, ['-m', '20', '-r', '20', '-l', '20', '-d', '1000']);
    assert.equal(r.code, 0, r.errors);
    assert.equal(reasons.length, 20);
    assert.ok(reasons.every((x) => x === 'bye'));
    await eventually(() => ua.stats().dialogs === 0 && ua.stats().transactions === 0);
  });

  it('answers malformed datagrams with 400 or drops them while a sipp call still succeeds', async () => {
    const ua = await startUa();
    autoAnswer(ua);
    const errors: string[] = [];
    ua.on('message-error', (e) => errors.push(e.reason));
    const sipp = runSipp('uac-basic.xml', ua.address.port, ['-d', '1500']);
    await eventually(() => ua.stats().dialogs === 1);
    const peer = await RawPeer.open();
    try {
      const options = (n: number): string =>
        request({ method: 'OPTIONS', callId: `probe-${n}`, branch: `z9hG4bKprobe${n}`, cseq: 1, port: peer.port });

      // Garbage: dropped silently; the first reply the peer sees is the one for the next OPTIONS.
      peer.send(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x42, 0x0d, 0x0a, 0x99]), ua.address.port);
      peer.send(options(1), ua.address.port);
      assert.equal((await peer.nextResponse()).headers.get('Call-ID'), 'probe-1');

      // A request without Via cannot be addressed: dropped.
      const noVia = request({ method: 'OPTIONS', callId: 'novia', branch: 'z9hG4bKnovia', cseq: 1, port: peer.port })
        .split('\r\n')
        .filter((l) => !l.startsWith('Via:'))
        .join('\r\n');
      peer.send(noVia, ua.address.port);
      peer.send(options(2), ua.address.port);
      assert.equal((await peer.nextResponse()).headers.get('Call-ID'), 'probe-2');

      // Content-Length larger than the datagram: 400 to the Via.
      const badLength = request({ method: 'INVITE', callId: 'badlen', branch: 'z9hG4bKbadlen', cseq: 1, port: peer.port, body: OFFER })
        .replace(/Content-Length: \d+/, 'Content-Length: 9999');
      peer.send(badLength, ua.address.port);
      const r400 = await peer.nextResponse();
      assert.equal(r400.status, 400);
      assert.equal(r400.headers.get('Call-ID'), 'badlen');
      assert.equal(parseVia(r400.headers.get('Via')!).params.branch, 'z9hG4bKbadlen');

      // The largest UDP/IPv4 datagram (65,507 bytes; a 70 KB one cannot be sent over UDP): 400.
      const head = request({ method: 'INVITE', callId: 'huge', branch: 'z9hG4bKhuge', cseq: 1, port: peer.port })
        .replace(/Content-Length: \d+/, 'Content-Length: 99999');
      const huge = Buffer.concat([Buffer.from(head), Buffer.alloc(65_507 - Buffer.byteLength(head), 0x78)]);
      peer.send(huge, ua.address.port);
      const hugeReply = await peer.nextResponse();
      assert.equal(hugeReply.status, 400);
      assert.equal(hugeReply.headers.get('Call-ID'), 'huge');
    } finally {
      peer.close();
    }
    const r = await sipp;
    assert.equal(r.code, 0, r.errors);
    assert.equal(errors.length, 4);
    assert.equal(ua.stats().malformed, 4);
  });
});

describe('SipUserAgent against a raw UDP peer', () => {
  it('absorbs a retransmitted INVITE: one invite event, the last provisional re-sent', async () => {
    const ua = await startUa();
    const peer = await RawPeer.open();
    try {
      let invites = 0;
      ua.on('invite', (call) => {
        invites++;
        call.ringing();
      });
      const inv = request({ method: 'INVITE', callId: 'retrans', branch: 'z9hG4bKretrans', cseq: 1, port: peer.port, body: OFFER });
      peer.send(inv, ua.address.port);
      assert.equal((await peer.nextResponse()).status, 100);
      assert.equal((await peer.nextResponse()).status, 180);
      peer.send(inv, ua.address.port);
      const again = await peer.nextResponse();
      assert.equal(again.status, 180);
      assert.equal(invites, 1);
    } finally {
      peer.close();
    }
  });

  it('reject(486) is retransmitted until the ACK and leaves no state once Timer I fires', async () => {
    const ua = await startUa();
    const peer = await RawPeer.open();
    try {
      const reasons: TerminationReason[] = [];
      ua.on('invite', (call) => {
        call.on('terminated', (r) => reasons.push(r));
        call.reject(486);
      });
      const base = { callId: 'busy', branch: 'z9hG4bKbusy', cseq: 1, port: peer.port };
      peer.send(request({ ...base, method: 'INVITE', body: OFFER }), ua.address.port);
      const first = await peer.nextResponse(486);
      const second = await peer.nextResponse(486); // Timer G
      assert.equal(second.headers.get('To'), first.headers.get('To'));
      const toTag = tagOf(first.headers.get('To'))!;
      peer.send(request({ ...base, method: 'ACK', toTag }), ua.address.port);
      assert.deepEqual(reasons, ['rejected']);
      await eventually(() => ua.stats().dialogs === 0 && ua.stats().transactions === 0);
    } finally {
      peer.close();
    }
  });

  it('answer() without an ACK re-sends the 200, then sends BYE and emits terminated(ack-timeout)', async () => {
    const ua = await startUa({ timers: { T1: 10, T2: 80, T4: 50 } });
    const peer = await RawPeer.open();
    try {
      const reasons: TerminationReason[] = [];
      ua.on('invite', (call) => {
        call.on('terminated', (r) => reasons.push(r));
        call.answer(negotiateAnswer(call.offer!, { address: HOST, port: 16010, sessionId: '1', version: 1 }).answer);
      });
      peer.send(request({ method: 'INVITE', callId: 'noack', branch: 'z9hG4bKnoack', cseq: 1, port: peer.port, body: OFFER }), ua.address.port);
      await peer.nextResponse(200);
      await peer.nextResponse(200);
      const bye = await peer.nextRequest('BYE');
      assert.equal(bye.uri, `sip:raw@127.0.0.1:${peer.port}`);
      assert.equal(tagOf(bye.headers.get('To')), 'rawtag');
      assert.deepEqual(reasons, ['ack-timeout']);
      const ok = `SIP/2.0 200 OK\r\n${[...bye.headers]
        .filter(([n]) => ['Via', 'From', 'To', 'Call-ID', 'CSeq'].includes(n))
        .map(([n, v]) => `${n}: ${v}`)
        .join('\r\n')}\r\nContent-Length: 0\r\n\r\n`;
      peer.send(ok, ua.address.port);
      await eventually(() => ua.stats().dialogs === 0 && ua.stats().transactions === 0);
    } finally {
      peer.close();
    }
  });

  it('hangup() between the 200 and its ACK waits for the ACK, then sends the BYE and resolves on its 200', async () => {
    const ua = await startUa();
    const peer = await RawPeer.open();
    try {
      let call: InboundCall | undefined;
      const reasons: TerminationReason[] = [];
      ua.on('invite', (c) => {
        call = c;
        c.on('terminated', (r) => reasons.push(r));
        c.answer(negotiateAnswer(c.offer!, { address: HOST, port: 16030, sessionId: '1', version: 1 }).answer);
      });
      const base = { callId: 'byeafterack', cseq: 1, port: peer.port };
      peer.send(request({ ...base, method: 'INVITE', branch: 'z9hG4bKbaa1', body: OFFER }), ua.address.port);
      const ok = await peer.nextResponse(200);
      const hungUp = call!.hangup();
      assert.equal(call!.hangup(), hungUp);
      assert.deepEqual(reasons, ['hangup']);
      peer.send(request({ ...base, method: 'ACK', branch: 'z9hG4bKbaa2', toTag: tagOf(ok.headers.get('To')) }), ua.address.port);
      const bye = await peer.nextRequest('BYE');
      assert.equal(bye.headers.get('Call-ID'), 'byeafterack');
      assert.equal(tagOf(bye.headers.get('From')), call!.localTag);
      const reply = [...bye.headers].filter(([n]) => ['Via', 'From', 'To', 'Call-ID', 'CSeq'].includes(n));
      peer.send(`SIP/2.0 200 OK\r\n${reply.map(([n, v]) => `${n}: ${v}`).join('\r\n')}\r\nContent-Length: 0\r\n\r\n`, ua.address.port);
      await hungUp;
      assert.equal(ua.stats().dialogs, 0);
    } finally {
      peer.close();
    }
  });

  it('hangup() before the answer rejects with 480 and emits terminated(hangup)', async () => {
    const ua = await startUa();
    const peer = await RawPeer.open();
    try {
      const reasons: TerminationReason[] = [];
      ua.on('invite', (call) => {
        call.on('terminated', (r) => reasons.push(r));
        void call.hangup();
      });
      peer.send(request({ method: 'INVITE', callId: 'early', branch: 'z9hG4bKearly', cseq: 1, port: peer.port, body: OFFER }), ua.address.port);
      assert.equal((await peer.nextResponse(480)).status, 480);
      assert.deepEqual(reasons, ['hangup']);
    } finally {
      peer.close();
    }
  });

  it('answers an unknown method 405 with Allow, a BYE for an unknown dialog 481 and Require: 100rel 420', async () => {
    const ua = await startUa();
    const peer = await RawPeer.open();
    try {
      peer.send(request({ method: 'SUBSCRIBE', callId: 'm405', branch: 'z9hG4bK405', cseq: 1, port: peer.port }), ua.address.port);
      const r405 = await peer.nextResponse();
      assert.equal(r405.status, 405);
      assert.equal(r405.headers.get('Allow'), 'INVITE, ACK, BYE, CANCEL, OPTIONS, INFO');

      peer.send(request({ method: 'BYE', callId: 'nobody', branch: 'z9hG4bK481', cseq: 2, port: peer.port, toTag: 'x' }), ua.address.port);
      assert.equal((await peer.nextResponse()).status, 481);

      peer.send(
        request({ method: 'INVITE', callId: 'm420', branch: 'z9hG4bK420', cseq: 1, port: peer.port, body: OFFER, extra: ['Require: 100rel'] }),
        ua.address.port,
      );
      const r420 = await peer.nextResponse();
      assert.equal(r420.status, 420);
      assert.equal(r420.headers.get('Unsupported'), '100rel');
    } finally {
      peer.close();
    }
  });

  it('answers an INVITE without SDP 488 and never emits invite for it', async () => {
    const ua = await startUa();
    const peer = await RawPeer.open();
    try {
      let invites = 0;
      ua.on('invite', () => invites++);
      peer.send(request({ method: 'INVITE', callId: 'late', branch: 'z9hG4bKlate', cseq: 1, port: peer.port }), ua.address.port);
      const res = await peer.nextResponse();
      assert.equal(res.status, 488);
      assert.equal(invites, 0);
    } finally {
      peer.close();
    }
  });

  it('adds received and rport to the top Via of the response when the request asks for rport', async () => {
    const ua = await startUa();
    const peer = await RawPeer.open();
    try {
      peer.send(request({ method: 'OPTIONS', callId: 'rport', branch: 'z9hG4bKrport', cseq: 1, port: peer.port, rport: true }), ua.address.port);
      const res = await peer.nextResponse(200);
      const via = parseVia(res.headers.get('Via')!);
      assert.equal(via.params.rport, String(peer.port));
      assert.equal(via.params.received, '127.0.0.1');
      assert.equal(res.headers.get('Accept'), 'application/sdp, application/dtmf-relay, application/dtmf');
    } finally {
      peer.close();
    }
  });

  it('answers 488 to a re-INVITE nobody responds to, CANCEL after the 200 with 200 and no effect, and a repeated BYE with 200', async () => {
    const ua = await startUa({ reinviteTimeoutMs: 50 });
    const peer = await RawPeer.open();
    try {
      const reasons: TerminationReason[] = [];
      let call: InboundCall | undefined;
      ua.on('invite', (c) => {
        call = c;
        c.on('terminated', (r) => reasons.push(r));
        c.on('reinvite', () => undefined); // never responds
        c.answer(negotiateAnswer(c.offer!, { address: HOST, port: 16020, sessionId: '1', version: 1 }).answer);
      });
      const base = { callId: 'dialog', cseq: 1, port: peer.port };
      peer.send(request({ ...base, method: 'INVITE', branch: 'z9hG4bKdlg1', body: OFFER }), ua.address.port);
      const ok = await peer.nextResponse(200);
      const toTag = tagOf(ok.headers.get('To'))!;
      const confirmed = once(call!, 'confirmed');
      peer.send(request({ ...base, method: 'ACK', branch: 'z9hG4bKdlg1ack', toTag }), ua.address.port);
      await confirmed;
      assert.equal(call!.state, 'confirmed');

      peer.send(request({ ...base, method: 'CANCEL', branch: 'z9hG4bKdlg1' }), ua.address.port);
      assert.equal((await peer.nextResponse()).status, 200);
      assert.equal(call!.state, 'confirmed');

      peer.send(request({ ...base, cseq: 2, method: 'INVITE', branch: 'z9hG4bKdlg2', toTag, body: OFFER }), ua.address.port);
      assert.equal((await peer.nextResponse()).status, 100);
      assert.equal((await peer.nextResponse()).status, 488);

      const bye = request({ ...base, cseq: 3, method: 'BYE', branch: 'z9hG4bKdlg3', toTag });
      peer.send(bye, ua.address.port);
      assert.equal((await peer.nextResponse()).status, 200);
      peer.send(bye, ua.address.port);
      const again = await peer.nextResponse();
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('CSeq'), '3 BYE');
      assert.deepEqual(reasons, ['bye']);
    } finally {
      peer.close();
    }
  });

  it('listen() rejects when the port is taken and close() can be called twice', async () => {
    const ua = await startUa();
    await assert.rejects(SipUserAgent.listen({ host: HOST, port: ua.address.port }), /EADDRINUSE/);
    await ua.close();
    await ua.close();
  });
});
