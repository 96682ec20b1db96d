/**
 * The encoder's health test (issue 3 item 6): RTP in, a segment out, on one of the encoder's own
 * ports with its own ffmpeg, exactly as a live stream runs. A sender socket plays a 1 kHz PCMU
 * tone to the port at real time; the port's socket decodes it into a fresh HlsEncoder; the test
 * passes when the encoder lists its first segment and the RTP really arrived. Its files are
 * removed afterwards; nothing of it reaches monitoring or storage.
 */
import type { Socket } from 'node:dgram';
import { rm } from 'node:fs/promises';
import { randomInt } from 'node:crypto';
import { decodeUlaw, encodeUlaw } from '../codecs/g711.ts';
import { parseRtp, serializeRtp } from '../codecs/rtp.ts';
import { sine } from '../codecs/tones.ts';
import type { HlsEncoder } from './encoder.ts';
import { bindUdp } from './udp.ts';

/** Options of runEncoderSelfTest(). */
export interface EncoderSelfTestOptions {
  /** The encoder port's bound socket (the test reads it, the caller closes it). */
  socket: Socket;
  host: string;
  rtpPort: number;
  /** Starts the encoder under test (ffmpeg and all), writing into `dir`. */
  startEncoder: (dir: string) => Promise<HlsEncoder>;
  dir: string;
  /** No segment within this long → fail (ms). */
  timeoutMs: number;
}

/** What the test found. */
export interface EncoderSelfTestOutcome {
  ok: boolean;
  /** First RTP packet sent → first segment listed (ms); or how long it waited. */
  ms: number;
  packetsSent: number;
  packetsReceived: number;
  reason?: string;
}

/** One 20 ms PCMU frame of a 1 kHz tone, the same every time (1 kHz has a whole number of cycles in 20 ms). */
const TONE_FRAME = encodeUlaw(sine(1000, 20, 8000));

/** Runs the test; never throws. */
export async function runEncoderSelfTest(o: EncoderSelfTestOptions): Promise<EncoderSelfTestOutcome> {
  const out: EncoderSelfTestOutcome = { ok: false, ms: 0, packetsSent: 0, packetsReceived: 0 };
  let encoder: HlsEncoder | undefined;
  let sender: Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  const onPacket = (buf: Buffer): void => {
    try {
      const p = parseRtp(buf);
      if (p.payloadType !== 0) return;
      out.packetsReceived++;
      if (encoder?.running) encoder.write(decodeUlaw(p.payload));
    } catch {
      // a stray datagram on the test port: not part of the test
    }
  };
  const t0 = performance.now();
  try {
    try {
      encoder = await o.startEncoder(o.dir);
    } catch (err) {
      out.reason = `encoder did not start: ${(err as Error).message}`;
      return out;
    }
    const enc = encoder;
    o.socket.on('message', onPacket);
    sender = await bindUdp(o.host);
    const ssrc = randomInt(1, 2 ** 32 - 1);
    let seq = randomInt(0, 65536);
    let ts = randomInt(0, 2 ** 32 - 1);
    const firstSentAt = performance.now();
    const send = (): void => {
      seq = (seq + 1) & 0xffff;
      ts = (ts + 160) >>> 0;
      sender!.send(serializeRtp({ marker: out.packetsSent === 0, payloadType: 0, sequenceNumber: seq, timestamp: ts, ssrc, csrcs: [], paddingLength: 0, payload: TONE_FRAME }), o.rtpPort, o.host);
      out.packetsSent++;
    };
    send();
    timer = setInterval(send, 20);
    const verdict = await new Promise<{ ok: boolean; reason?: string }>((resolve) => {
      if (enc.segments.length > 0) resolve({ ok: true });
      enc.once('segment', () => resolve({ ok: true }));
      enc.once('died', (exit) => resolve({ ok: false, reason: `ffmpeg died [code:${exit.code} signal:${exit.signal}] ${exit.stderrTail.at(-1)?.trim() ?? ''}`.trim() }));
      deadline = setTimeout(() => resolve({ ok: false, reason: `no segment within ${o.timeoutMs} ms` }), o.timeoutMs);
    });
    out.ms = Math.round(performance.now() - firstSentAt);
    if (verdict.ok && out.packetsReceived === 0) {
      out.reason = `a segment came out but none of ${out.packetsSent} RTP packets reached port ${o.rtpPort}`;
    } else if (!verdict.ok) {
      out.reason = verdict.reason;
    } else {
      out.ok = true;
    }
    return out;
  } finally {
    if (!out.ms) out.ms = Math.round(performance.now() - t0);
    clearInterval(timer);
    clearTimeout(deadline);
    o.socket.off('message', onPacket);
    sender?.close();
    await encoder?.close().catch(() => {});
    await rm(o.dir, { recursive: true, force: true }).catch(() => {});
  }
}

