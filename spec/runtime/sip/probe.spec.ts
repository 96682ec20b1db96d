import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, it } from 'node:test';
import { ULAW_SILENCE } from '../../../codecs/g711.ts';
import { parseRtp, serializeRtp } from '../../../codecs/rtp.ts';
import { negotiateAnswer, parseSdp } from '../../../codecs/sdp.ts';
import { makeResponse, parseSip, parseVia, serializeSip, tagOf, type SipMessage, type SipRequest } from '../../../codecs/sip.ts';
import { SipUserAgent, type TerminationReason } from '../../../runtime/sip/index.ts';
import { HEALTH_USER, syntheticCall } from '../../../runtime/sip/probe.ts';

const HOST = '127.0.0.1';

/** Everything a test opened, closed after it. */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function bindUdp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.bind(0, HOST);
  await once(s, 'listening');
  cleanups.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

/** An RTP sender: 20 ms PCMU frames of silence from `from` to `to` until stopped. */
function sendRtp(from: dgram.Socket, to: { address: string; port: number }): () => void {
  let seq = 100;
  let ts = 0;
  const payload = Buffer.alloc(160, ULAW_SILENCE);
  const timer = setInterval(() => {
    seq = (seq + 1) & 0xffff;
    ts = (ts + 160) >>> 0;
    from.send(serializeRtp({ marker: false, payloadType: 0, sequenceNumber: seq, timestamp: ts, ssrc: 0x1234, csrcs: [], paddingLength: 0, payload }), to.port, to.address);
  }, 20);
  const stop = () => clearInterval(timer);
  cleanups.push(stop);
  return stop;
}

/** A raw UDP SIP server: records every message and hands requests to `onRequest`. */
async function rawServer(onRequest: (req: SipRequest, reply: (buf: Buffer) => void) => void) {
  const socket = await bindUdp();
  const seen: Array<{ msg: SipMessage; at: number }> = [];
  socket.on('message', (buf, rinfo) => {
    let msg: SipMessage;
    try {
      msg = parseSip(buf);
    } catch {
      return;
    }
    seen.push({ msg, at: performance.now() });
    if (msg.kind === 'request') onRequest(msg, (out) => socket.send(out, rinfo.port, rinfo.address));
  });
  return {
    port: socket.address().port,
    seen,
    requests: (method: string) => seen.map((s) => s.msg).filter((m): m is SipRequest => m.kind === 'request' && m.method === method),
  };
}

function branchOf(req: SipMessage): string {
  return String(parseVia(req.headers.get('Via')!).params.branch);
}

/** A raw SDP answer receiving on `port`. */
function sdpAnswer(port: number): string {
  return ['v=0', 'o=raw 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
}

/** 200 OK with an SDP answer and a To tag. */
function ok200(invite: SipRequest, rtpPort: number): Buffer {
  return serializeSip(makeResponse(invite, 200, 'OK', { toTag: 'rawtag1', headers: [['Contact', `<sip:raw@${HOST}>`]], body: sdpAnswer(rtpPort), contentType: 'application/sdp' }));
}

async function eventually(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const until = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('syntheticCall()', () => {
  it('passes against a SipUserAgent that answers and sends RTP back; the UA sees ACK and BYE', async () => {
    const ua = await SipUserAgent.listen({ host: HOST, port: 0 });
    cleanups.push(() => ua.close());
    const rtp = await bindUdp();
    let rtpIn = 0;
    rtp.on('message', (buf) => {
      parseRtp(buf);
      rtpIn++;
    });
    const events: string[] = [];
    const reasons: TerminationReason[] = [];
    let offer: string | undefined;
    let fromUri: string | undefined;
    ua.on('invite', (call) => {
      offer = call.offer;
      fromUri = call.fromUri;
      call.ringing();
      const n = negotiateAnswer(call.offer!, { address: HOST, port: rtp.address().port, sessionId: '4711', version: 1 });
      call.answer(n.answer);
      call.on('confirmed', () => {
        events.push('ack');
        const stop = sendRtp(rtp, n.remote);
        call.once('terminated', stop);
      });
      call.on('terminated', (r) => {
        events.push('terminated');
        reasons.push(r);
      });
    });

    const r = await syntheticCall({ target: ua.address, localHost: HOST, timeoutMs: 4000 });

    assert.equal(r.outcome, 'pass', r.reason);
    assert.equal(r.reason, undefined);
    assert.equal(r.status, 200);
    assert.ok(typeof r.setupMs === 'number' && r.setupMs >= 0 && r.setupMs < 1000, `setupMs ${r.setupMs}`);
    assert.ok(typeof r.firstRtpMs === 'number' && r.firstRtpMs >= 0 && r.firstRtpMs < 1000, `firstRtpMs ${r.firstRtpMs}`);
    assert.ok(r.rtpReceived >= 10, `rtpReceived ${r.rtpReceived}`);
    assert.ok(r.rtpSent > 0, `rtpSent ${r.rtpSent}`);
    assert.ok(r.totalMs >= r.setupMs! && r.totalMs < 3000, `totalMs ${r.totalMs}`);
    assert.deepEqual(events, ['ack', 'terminated']);
    assert.deepEqual(reasons, ['bye']);
    assert.ok(rtpIn > 0, 'the UA side received none of the probe\'s RTP');
    // The offer: PCMU + telephone-event, from the health user, media on the probe's host.
    const sdp = parseSdp(offer!);
    assert.deepEqual(sdp.media[0]!.formats, ['0', '101']);
    assert.equal(sdp.connection?.address ?? sdp.media[0]!.connection?.address, HOST);
    assert.match(fromUri!, new RegExp(`^sip:${HEALTH_USER}@127\\.0\\.0\\.1:\\d+$`));
    await eventually('the UA to drop the dialog', () => ua.stats().dialogs === 0);
  });

  it('answers refused for a 503 and ACKs the 503 in the INVITE transaction (same branch, the 503\'s To tag)', async () => {
    const server = await rawServer((req, reply) => {
      if (req.method !== 'INVITE') return;
      reply(serializeSip(makeResponse(req, 100, 'Trying')));
      reply(serializeSip(makeResponse(req, 503, 'Service Unavailable', { toTag: 'busy503' })));
    });
    const r = await syntheticCall({ target: { host: HOST, port: server.port }, localHost: HOST, timeoutMs: 3000 });
    assert.equal(r.outcome, 'refused');
    assert.equal(r.status, 503);
    assert.equal(r.reason, 'INVITE answered 503 Service Unavailable');
    assert.equal(r.setupMs, undefined);
    assert.equal(r.rtpSent, 0);
    // §17.1.1.3: without this ACK the server retransmits its 503 until Timer H (64·T1).
    await eventually('the ACK of the 503', () => server.requests('ACK').length === 1, 1000);
    const [invite] = server.requests('INVITE');
    const [ack] = server.requests('ACK');
    assert.equal(branchOf(ack!), branchOf(invite!));
    assert.match(branchOf(invite!), /^z9hG4bK/);
    assert.equal(tagOf(ack!.headers.get('To')), 'busy503');
    assert.equal(ack!.headers.get('CSeq'), '1 ACK');
    assert.equal(ack!.headers.get('Call-ID'), invite!.headers.get('Call-ID'));
    assert.equal(ack!.uri, invite!.uri);
    assert.equal(server.requests('BYE').length, 0);
  });

  it('answers refused for a 486 and fail for a 404', async () => {
    for (const [status, reason, outcome] of [[486, 'Busy Here', 'refused'], [404, 'Not Found', 'fail']] as const) {
      const server = await rawServer((req, reply) => {
        if (req.method === 'INVITE') reply(serializeSip(makeResponse(req, status, reason, { toTag: 'x' })));
      });
      const r = await syntheticCall({ target: { host: HOST, port: server.port }, localHost: HOST, timeoutMs: 3000 });
      assert.equal(r.outcome, outcome, `${status}`);
      assert.equal(r.reason, `INVITE answered ${status} ${reason}`);
      assert.equal(r.status, status);
      assert.equal(server.requests('BYE').length, 0);
    }
  });

  it('fails with a clear reason within the timeout when nothing listens', async () => {
    const probe = await bindUdp();
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
    cleanups.pop();
    const t0 = performance.now();
    const r = await syntheticCall({ target: { host: HOST, port }, localHost: HOST, timeoutMs: 1500 });
    const wall = performance.now() - t0;
    assert.equal(r.outcome, 'fail');
    assert.equal(r.reason, 'no final answer to INVITE within 1500 ms');
    assert.equal(r.status, undefined);
    assert.ok(r.totalMs >= 1490 && r.totalMs < 2000, `totalMs ${r.totalMs}`);
    assert.ok(wall < 2000, `took ${wall.toFixed(0)} ms`);
  });

  it('retransmits an unanswered INVITE on T1 doubling with the same branch, and sends no ACK', async () => {
    const server = await rawServer(() => {});
    const r = await syntheticCall({ target: { host: HOST, port: server.port }, localHost: HOST, timeoutMs: 1000, t1Ms: 100 });
    assert.equal(r.outcome, 'fail');
    assert.equal(r.reason, 'no final answer to INVITE within 1000 ms');
    const invites = server.requests('INVITE');
    // Sent at 0, 100, 300, 700 ms (the next, at 1500, is past the deadline).
    assert.equal(invites.length, 4);
    assert.equal(new Set(invites.map(branchOf)).size, 1);
    const at = server.seen.filter((s) => s.msg.kind === 'request').map((s) => s.at - server.seen[0]!.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    for (const [i, want] of [100, 200, 400].entries()) assert.ok(gaps[i]! > want - 15 && gaps[i]! < want + 100, `gap ${i}: ${gaps.map((g) => g.toFixed(0)).join(', ')}`);
    assert.equal(server.requests('ACK').length, 0);
  });

  it('stops retransmitting the INVITE once a provisional response arrived', async () => {
    const server = await rawServer((req, reply) => {
      if (req.method === 'INVITE') reply(serializeSip(makeResponse(req, 100, 'Trying')));
    });
    const r = await syntheticCall({ target: { host: HOST, port: server.port }, localHost: HOST, timeoutMs: 1000, t1Ms: 100 });
    assert.equal(r.outcome, 'fail');
    assert.equal(r.reason, 'no final answer to INVITE within 1000 ms');
    assert.equal(server.requests('INVITE').length, 1);
  });

  it('fails when the server answers 200 but sends no RTP (reason names RTP) and still hangs up with BYE', async () => {
    const media = await bindUdp();
    let rtpIn = 0;
    media.on('message', () => rtpIn++);
    const server = await rawServer((req, reply) => {
      if (req.method === 'INVITE') reply(ok200(req, media.address().port));
      if (req.method === 'BYE') reply(serializeSip(makeResponse(req, 200, 'OK')));
    });
    const t0 = performance.now();
    const r = await syntheticCall({ target: { host: HOST, port: server.port }, localHost: HOST, timeoutMs: 2000 });
    const wall = performance.now() - t0;
    assert.equal(r.outcome, 'fail');
    assert.equal(r.reason, 'only 0 of 10 RTP packets came back');
    assert.match(r.reason!, /RTP/);
    assert.equal(r.status, 200);
    assert.equal(r.rtpReceived, 0);
    assert.equal(r.firstRtpMs, undefined);
    assert.ok(r.rtpSent > 0 && rtpIn > 0, `sent ${r.rtpSent}, arrived ${rtpIn}`);
    assert.ok(wall < 2500, `took ${wall.toFixed(0)} ms`);
    const [invite] = server.requests('INVITE');
    const byes = server.requests('BYE');
    assert.equal(byes.length, 1);
    const bye = byes[0]!;
    assert.equal(tagOf(bye.headers.get('To')), 'rawtag1');
    assert.equal(bye.headers.get('Call-ID'), invite!.headers.get('Call-ID'));
    assert.equal(bye.headers.get('CSeq'), '2 BYE');
    assert.notEqual(branchOf(bye), branchOf(invite!));
    assert.equal(server.requests('ACK').length, 1);
  });

  it('ACKs a retransmitted 200 again with the same ACK', async () => {
    const media = await bindUdp();
    let invite: SipRequest | undefined;
    let from: { address: string; port: number } | undefined;
    const server = await rawServer((req, reply) => {
      if (req.method === 'INVITE') {
        invite = req;
        reply(ok200(req, media.address().port));
      } else if (req.method === 'ACK') {
        // The first ACK "got lost": the 200 comes again; answer media once.
        if (server.requests('ACK').length === 1) {
          reply(ok200(invite!, media.address().port));
          const sdp = parseSdp(invite!.body);
          from = { address: HOST, port: sdp.media[0]!.port };
          sendRtp(media, from);
        }
      } else if (req.method === 'BYE') {
        reply(serializeSip(makeResponse(req, 200, 'OK')));
      }
    });
    const r = await syntheticCall({ target: { host: HOST, port: server.port }, localHost: HOST, timeoutMs: 3000 });
    assert.equal(r.outcome, 'pass', r.reason);
    const acks = server.requests('ACK');
    assert.equal(acks.length, 2);
    assert.equal(branchOf(acks[0]!), branchOf(acks[1]!));
    assert.notEqual(branchOf(acks[0]!), branchOf(invite!));
    assert.equal(acks[1]!.headers.get('CSeq'), '1 ACK');
    assert.equal(tagOf(acks[1]!.headers.get('To')), 'rawtag1');
    assert.equal(server.requests('BYE').length, 1);
  });

  it('fails with "BYE not answered" when RTP flows but the BYE gets no answer', async () => {
    const media = await bindUdp();
    const server = await rawServer((req, reply) => {
      if (req.method === 'INVITE') {
        reply(ok200(req, media.address().port));
        sendRtp(media, { address: HOST, port: parseSdp(req.body).media[0]!.port });
      }
    });
    const r = await syntheticCall({ target: { host: HOST, port: server.port }, localHost: HOST, timeoutMs: 2000, t1Ms: 100 });
    assert.equal(r.outcome, 'fail');
    assert.equal(r.reason, 'BYE not answered');
    assert.ok(r.rtpReceived >= 10, `rtpReceived ${r.rtpReceived}`);
    assert.ok(r.totalMs < 2300, `totalMs ${r.totalMs}`);
    const byes = server.requests('BYE');
    assert.ok(byes.length >= 2, `BYEs ${byes.length}`);
    assert.equal(new Set(byes.map(branchOf)).size, 1);
  });
});
