/**
 * A synthetic call for the voice-server health test (issue 3 item 6): a minimal SIP user agent
 * client over UDP that calls a voice server as a phone would, sends RTP, waits for the server's
 * RTP (the IVR greeting) and hangs up.
 *
 *   INVITE (SDP offer: PCMU + telephone-event) → 1xx … 200 (SDP answer) → ACK
 *   RTP both ways until `rtpPackets` packets came back → BYE → 200
 *
 * INVITE and BYE are retransmitted on UDP as RFC 3261 §17.1 asks (T1 doubling); a retransmitted
 * 200 to the INVITE is ACKed again; a final error response is ACKed (§17.1.1.3). The call never
 * keys an event ID, so the server frees its port at once (no port reuse rest: no auth code was
 * ever minted for it). Everything is torn down on every path.
 */
import type { Socket } from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
import { ULAW_SILENCE } from '../../codecs/g711.ts';
import { serializeRtp, parseRtp } from '../../codecs/rtp.ts';
import { parseSdp } from '../../codecs/sdp.ts';
import { parseSip, serializeSip, SipHeaders, tagOf, type SipRequest, type SipResponse } from '../../codecs/sip.ts';
import { UdpTransport } from './transport.ts';
import { bindUdp } from '../udp.ts';

/** The user part the probe dials and calls from; voice servers log such calls at debug level. */
export const HEALTH_USER = 'jitcast-health';

/** Options of syntheticCall(). */
export interface SyntheticCallOptions {
  /** The voice server's SIP address. */
  target: { host: string; port: number };
  /** Address to bind the probe's SIP and RTP sockets to (this node's). */
  localHost: string;
  /** The whole call must be done within this (ms). Default 8000. */
  timeoutMs?: number;
  /** RTP packets to receive from the server before hanging up. Default 10 (200 ms of audio). */
  rtpPackets?: number;
  /** RFC 3261 T1 (ms). Default 500. */
  t1Ms?: number;
}

/** What the synthetic call found. */
export interface SyntheticCallResult {
  /** pass: answered and RTP flowed back; refused: the server answered 486/503 (full or draining); fail: anything else. */
  outcome: 'pass' | 'refused' | 'fail';
  reason?: string;
  /** INVITE sent → 200 received (ms). */
  setupMs?: number;
  /** 200 received → first RTP packet from the server (ms). */
  firstRtpMs?: number;
  /** Whole call (ms). */
  totalMs: number;
  rtpSent: number;
  rtpReceived: number;
  /** The server's final response to the INVITE. */
  status?: number;
}

function token(bytes = 6): string {
  return randomBytes(bytes).toString('hex');
}

function offer(host: string, rtpPort: number): string {
  const sid = String(randomInt(1, 2 ** 31));
  return [
    'v=0',
    `o=${HEALTH_USER} ${sid} 1 IN IP4 ${host}`,
    's=jitcast health test',
    `c=IN IP4 ${host}`,
    't=0 0',
    `m=audio ${rtpPort} RTP/AVP 0 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-16',
    'a=sendrecv',
    '',
  ].join('\r\n');
}


/** Places one synthetic call on a voice server; never throws. */
export async function syntheticCall(o: SyntheticCallOptions): Promise<SyntheticCallResult> {
  const t0 = performance.now();
  const timeoutMs = o.timeoutMs ?? 8000;
  const want = o.rtpPackets ?? 10;
  const t1 = o.t1Ms ?? 500;
  const elapsed = () => Math.round(performance.now() - t0);
  let sip: UdpTransport | undefined;
  let rtp: Socket | undefined;
  const timers = new Set<NodeJS.Timeout>();
  const result: SyntheticCallResult = { outcome: 'fail', totalMs: 0, rtpSent: 0, rtpReceived: 0 };
  try {
    sip = await UdpTransport.open(o.localHost, 0);
    rtp = await bindUdp(o.localHost);
    const local = sip.address;
    const to = { address: o.target.host, port: o.target.port };
    const callId = `${token(10)}@${HEALTH_USER}`;
    const fromTag = token();
    const targetUri = `sip:${HEALTH_USER}@${o.target.host}:${o.target.port}`;
    const fromHeader = `<sip:${HEALTH_USER}@${local.host}:${local.port}>;tag=${fromTag}`;
    const request = (method: string, cseq: number, branch: string, toHeader: string, body = '', extra: Array<[string, string]> = []): SipRequest => {
      const h = new SipHeaders([
        ['Via', `SIP/2.0/UDP ${local.host}:${local.port};branch=z9hG4bK${branch};rport`],
        ['Max-Forwards', '70'],
        ['From', fromHeader],
        ['To', toHeader],
        ['Call-ID', callId],
        ['CSeq', `${cseq} ${method}`],
        ['Contact', `<sip:${HEALTH_USER}@${local.host}:${local.port}>`],
        ['User-Agent', 'jitcast-health'],
        ...extra,
      ]);
      return { kind: 'request', method, uri: targetUri, headers: h, body };
    };

    const responses: SipResponse[] = [];
    let wake: (() => void) | undefined;
    sip.on('message', (buf) => {
      try {
        const m = parseSip(buf);
        if (m.kind === 'response' && m.headers.get('Call-ID') === callId) {
          responses.push(m);
          wake?.();
        }
      } catch {
        // not ours to judge: the probe only reads its own call's responses
      }
    });
    const deadline = t0 + timeoutMs;
    /** Waits for a response matching `pred`, retransmitting `resend` on T1 doubling (until a provisional one arrives, for INVITE). */
    const await_ = async (pred: (r: SipResponse) => boolean, resend?: () => void, stopOnProvisional = false): Promise<SipResponse | undefined> => {
      let interval = t1;
      let nextResend = performance.now() + interval;
      let provisional = false;
      for (;;) {
        const i = responses.findIndex(pred);
        if (i >= 0) return responses.splice(i, 1)[0];
        if (stopOnProvisional && responses.some((r) => r.status < 200)) provisional = true;
        const now = performance.now();
        if (now >= deadline) return undefined;
        if (resend && !provisional && now >= nextResend) {
          resend();
          interval = Math.min(interval * 2, 4000);
          nextResend = now + interval;
        }
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.max(1, Math.min(deadline, nextResend) - performance.now()));
          timers.add(t);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        wake = undefined;
      }
    };

    // INVITE
    const inviteBranch = token();
    const rtpLocal = rtp.address();
    const invite = serializeSip(request('INVITE', 1, inviteBranch, `<${targetUri}>`, offer(local.host, rtpLocal.port), [['Content-Type', 'application/sdp']]));
    sip.send(invite, to);
    const final = await await_((r) => r.status >= 200 && (r.headers.get('CSeq') ?? '').endsWith('INVITE'), () => sip!.send(invite, to), true);
    if (!final) {
      result.reason = `no final answer to INVITE within ${timeoutMs} ms`;
      return result;
    }
    result.status = final.status;
    const toHeader = final.headers.get('To') ?? `<${targetUri}>`;
    if (final.status >= 300) {
      // §17.1.1.3: a non-2xx final response is ACKed in the INVITE's transaction (same branch).
      sip.send(serializeSip(request('ACK', 1, inviteBranch, toHeader)), to);
      result.outcome = final.status === 486 || final.status === 503 ? 'refused' : 'fail';
      result.reason = `INVITE answered ${final.status} ${final.reason}`;
      return result;
    }
    result.setupMs = elapsed();
    if (tagOf(toHeader) === undefined) {
      result.reason = '200 OK without a To tag';
      return result;
    }
    const ackBranch = token();
    const ack = serializeSip(request('ACK', 1, ackBranch, toHeader));
    sip.send(ack, to);

    // Media: send 20 ms PCMU frames of silence, count what comes back.
    let remote: { host: string; port: number };
    try {
      const sdp = parseSdp(final.body);
      const m = sdp.media.find((x) => x.media === 'audio');
      const host = m?.connection?.address ?? sdp.connection?.address;
      if (!m || !host || m.port === 0) throw new Error('no audio stream in the answer');
      remote = { host, port: m.port };
    } catch (err) {
      result.reason = `bad SDP answer: ${(err as Error).message}`;
      await hangUp();
      return result;
    }
    let firstRtpAt: number | undefined;
    const answeredAt = performance.now();
    let gotEnough: (() => void) | undefined;
    rtp.on('message', (buf) => {
      try {
        parseRtp(buf);
      } catch {
        return;
      }
      result.rtpReceived++;
      firstRtpAt ??= performance.now();
      if (result.rtpReceived >= want) gotEnough?.();
    });
    const ssrc = randomInt(1, 2 ** 32 - 1);
    let seq = randomInt(0, 65536);
    let ts = randomInt(0, 2 ** 32 - 1);
    const payload = Buffer.alloc(160, ULAW_SILENCE);
    const sender = setInterval(() => {
      seq = (seq + 1) & 0xffff;
      ts = (ts + 160) >>> 0;
      rtp!.send(serializeRtp({ marker: result.rtpSent === 0, payloadType: 0, sequenceNumber: seq, timestamp: ts, ssrc, csrcs: [], paddingLength: 0, payload }), remote.port, remote.host);
      result.rtpSent++;
      // A retransmitted 200 means our ACK was lost: ACK again (§13.2.2.4).
      const i = responses.findIndex((r) => r.status >= 200 && r.status < 300 && (r.headers.get('CSeq') ?? '').endsWith('INVITE'));
      if (i >= 0) {
        responses.splice(i, 1);
        sip!.send(ack, to);
      }
    }, 20);
    timers.add(sender as unknown as NodeJS.Timeout);
    if (result.rtpReceived < want) {
      await new Promise<void>((r) => {
        gotEnough = r;
        const t = setTimeout(r, Math.max(0, deadline - performance.now() - 1000));
        timers.add(t);
      });
    }
    clearInterval(sender);
    if (firstRtpAt !== undefined) result.firstRtpMs = Math.round(firstRtpAt - answeredAt);
    const bye = await hangUp();
    if (result.rtpReceived < want) result.reason = `only ${result.rtpReceived} of ${want} RTP packets came back`;
    else if (!bye) result.reason = 'BYE not answered';
    else result.outcome = 'pass';
    return result;

    async function hangUp(): Promise<boolean> {
      const byeMsg = serializeSip(request('BYE', 2, token(), toHeader));
      sip!.send(byeMsg, to);
      const r = await await_((x) => x.status >= 200 && (x.headers.get('CSeq') ?? '').endsWith('BYE'), () => sip!.send(byeMsg, to));
      return r !== undefined && r.status < 300;
    }
  } catch (err) {
    result.reason = (err as Error).message;
    return result;
  } finally {
    for (const t of timers) clearTimeout(t);
    result.totalMs = elapsed();
    await sip?.close();
    rtp?.close();
  }
}
