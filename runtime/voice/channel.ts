/**
 * One voice channel: a SIP call, its RTP port and what flows through it. Receives RTP from the
 * caller (G.711 audio, RFC 4733 events), detects DTMF three ways (RFC 4733, SIP INFO, in-band
 * Goertzel), plays prompts and conference audio back every 20 ms when the voice server's clock
 * asks. It knows nothing of events or the broker: digits go out through `onDigit`.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw } from '../../codecs/g711.ts';
import { isRtcp, parseRtp, serializeRtp } from '../../codecs/rtp.ts';
import { TelephoneEventReceiver } from '../../codecs/rfc4733.ts';
import { DtmfDetector } from '../../codecs/goertzel.ts';
import { parseDtmfInfo } from '../../codecs/dtmf-relay.ts';
import { negotiateAnswer, type Negotiated } from '../../codecs/sdp.ts';
import { FRAME_SAMPLES } from '../../core/conference.ts';
import type { IvrPhase } from '../../core/ivr.ts';
import type { InboundCall } from '../sip/index.ts';

/** Counters of one channel, for status and specs. */
export interface ChannelStats {
  rtpIn: number;
  rtpOut: number;
  /** Datagrams from an address that is not the caller's. */
  rtpForeign: number;
  /** Datagrams that did not parse as RTP. */
  rtpMalformed: number;
  digits: number;
}

/** Everything the voice server can see of a channel. */
export interface ChannelView {
  channelId: string;
  port: number;
  phase: IvrPhase | 'ringing';
  eventId?: string;
  caller: string;
  codec: string;
  since: string;
  stats: ChannelStats;
}

const SILENCE = new Int16Array(FRAME_SAMPLES);

/** A caller's leg: SIP call + RTP socket + DTMF detection + outgoing audio. */
export class Channel {
  readonly stats: ChannelStats = { rtpIn: 0, rtpOut: 0, rtpForeign: 0, rtpMalformed: 0, digits: 0 };
  readonly since = new Date();
  phase: IvrPhase | 'ringing' = 'ringing';
  eventId?: string;
  /** When the last RTP packet from the caller arrived (ms since epoch). */
  lastRtpAt = Date.now();
  /** Set when the caller should be hung up once queued prompts have played. */
  hangupAfterPrompts = false;

  #media!: Negotiated;
  #sdpVersion = 1;
  readonly #sessionId = String(randomInt(1, 2 ** 31));
  #remote?: { address: string; port: number };
  #latched = false;
  readonly #ssrc = randomInt(1, 2 ** 32 - 1);
  #seq = randomInt(0, 65536);
  #ts = randomInt(0, 2 ** 32 - 1);
  #first = true;
  readonly #events = new TelephoneEventReceiver();
  readonly #inband = new DtmfDetector();
  #prompts: Int16Array[] = [];
  #promptPos = 0;
  #closed = false;

  /** Audio from the caller (decoded, 8 kHz), for the conference. */
  onAudio: (pcm: Int16Array) => void = () => {};
  /** A key the caller pressed (any method). */
  onDigit: (digit: string, via: 'rfc4733' | 'info' | 'inband') => void = () => {};
  /** The prompt queue ran empty. */
  onPromptsDone: () => void = () => {};

  private constructor(
    readonly channelId: string,
    readonly port: number,
    readonly call: InboundCall,
    private readonly socket: Socket,
    private readonly host: string,
  ) {}

  /** Binds the RTP port and answers the call; rejects the call (488) when no codec fits. */
  static async open(opts: { channelId: string; port: number; host: string; call: InboundCall }): Promise<Channel> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(opts.port, opts.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const ch = new Channel(opts.channelId, opts.port, opts.call, socket, opts.host);
    socket.on('message', (msg, rinfo) => ch.#onRtp(msg, rinfo));
    socket.on('error', () => {}); // ICMP port unreachable and the like: the call goes on
    return ch;
  }

  /** Negotiates the offer and answers the call with 200 OK. Throws SdpNegotiationError/SdpParseError. */
  answer(): void {
    const offer = this.call.offer;
    if (!offer) throw new Error('INVITE without SDP offer');
    this.#media = negotiateAnswer(offer, { address: this.host, port: this.port, sessionId: this.#sessionId, version: this.#sdpVersion });
    this.#remote = this.#media.remote;
    this.call.answer(this.#media.answer);
    this.lastRtpAt = Date.now();
    this.call.on('info', ({ contentType, body }: { contentType: string; body: string }) => {
      const d = parseDtmfInfo(contentType, body);
      if (d) this.#digit(d, 'info');
    });
    this.call.on('reinvite', (offer2: string | undefined, respond: (sdp: string) => void) => {
      if (!offer2) return; // the UA answers 488 for a late offer on re-INVITE
      const next = negotiateAnswer(offer2, { address: this.host, port: this.port, sessionId: this.#sessionId, version: ++this.#sdpVersion });
      if (next.remote.address !== this.#remote?.address || next.remote.port !== this.#remote?.port) this.#latched = false;
      this.#media = next;
      this.#remote = next.remote;
      respond(next.answer);
    });
  }

  /** The codec name in use. */
  get codec(): string {
    return this.#media?.codec.name ?? '-';
  }

  /** True when the caller offered RFC 4733 events: then in-band tones are not also decoded. */
  get hasTelephoneEvents(): boolean {
    return this.#media?.telephoneEventPt !== undefined;
  }

  /** Queues a prompt to play. */
  play(pcm: Int16Array): void {
    this.#prompts.push(pcm);
  }

  /** Drops queued prompts (barge-in). */
  stopPrompts(): void {
    this.#prompts = [];
    this.#promptPos = 0;
  }

  /** Seconds of prompt audio still queued. */
  get promptSecondsLeft(): number {
    let n = -this.#promptPos;
    for (const p of this.#prompts) n += p.length;
    return Math.max(0, n) / 8000;
  }

  /** True while a prompt is playing. */
  get playing(): boolean {
    return this.#prompts.length > 0;
  }

  /**
   * Sends one 20 ms frame to the caller: the prompt if one is playing, else `audio`
   * (the conference's mix-minus), else silence, so the caller's jitter buffer keeps running.
   */
  sendFrame(audio: Int16Array | undefined): void {
    if (this.#closed || !this.#remote || !this.#media) return;
    let frame = audio ?? SILENCE;
    if (this.#prompts.length > 0) {
      const p = this.#prompts[0];
      frame = new Int16Array(FRAME_SAMPLES);
      frame.set(p.subarray(this.#promptPos, this.#promptPos + FRAME_SAMPLES));
      this.#promptPos += FRAME_SAMPLES;
      if (this.#promptPos >= p.length) {
        this.#prompts.shift();
        this.#promptPos = 0;
        if (this.#prompts.length === 0) queueMicrotask(() => this.onPromptsDone());
      }
    }
    this.#ts = (this.#ts + FRAME_SAMPLES) >>> 0;
    this.#seq = (this.#seq + 1) & 0xffff;
    // RFC 3264 §6.1: we send only when our answered direction lets us.
    if (this.#media.direction === 'recvonly' || this.#media.direction === 'inactive') return;
    const payload = this.#media.codec.name === 'PCMA' ? encodeAlaw(frame) : encodeUlaw(frame);
    const pkt = serializeRtp({
      marker: this.#first,
      payloadType: this.#media.codec.payloadType,
      sequenceNumber: this.#seq,
      timestamp: this.#ts,
      ssrc: this.#ssrc,
      csrcs: [],
      paddingLength: 0,
      payload,
    });
    this.#first = false;
    this.stats.rtpOut++;
    this.socket.send(pkt, this.#remote.port, this.#remote.address);
  }

  /** Closes the RTP socket (idempotent). The SIP side is the caller's business. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.close();
  }

  /** A view for status. */
  view(): ChannelView {
    return {
      channelId: this.channelId,
      port: this.port,
      phase: this.phase,
      eventId: this.eventId,
      caller: this.call.fromUri,
      codec: this.codec,
      since: this.since.toISOString(),
      stats: { ...this.stats },
    };
  }

  #onRtp(msg: Buffer, rinfo: { address: string; port: number }): void {
    if (this.#closed || !this.#media || !this.#remote) return;
    // Only the caller's address may feed this channel; the first packet from it latches the
    // exact source port (symmetric RTP), so nothing else can inject audio or digits.
    if (rinfo.address !== this.#remote.address) {
      this.stats.rtpForeign++;
      return;
    }
    if (!this.#latched) {
      this.#remote = { address: rinfo.address, port: rinfo.port };
      this.#latched = true;
    } else if (rinfo.port !== this.#remote.port) {
      this.stats.rtpForeign++;
      return;
    }
    if (isRtcp(msg)) return;
    let pkt;
    try {
      pkt = parseRtp(msg);
    } catch {
      this.stats.rtpMalformed++;
      return;
    }
    this.stats.rtpIn++;
    this.lastRtpAt = Date.now();
    const { codec, telephoneEventPt } = this.#media;
    const tePts = (this.#media as Negotiated & { telephoneEventPts?: number[] }).telephoneEventPts ?? (telephoneEventPt !== undefined ? [telephoneEventPt] : []);
    if (tePts.includes(pkt.payloadType)) {
      const d = this.#events.push(pkt);
      if (d) this.#digit(d, 'rfc4733');
      return;
    }
    if (pkt.payloadType !== codec.payloadType) return; // comfort noise and the like
    const pcm = codec.name === 'PCMA' ? decodeAlaw(pkt.payload) : decodeUlaw(pkt.payload);
    if (!this.hasTelephoneEvents) for (const d of this.#inband.push(pcm)) this.#digit(d, 'inband');
    this.onAudio(pcm);
  }

  #digit(d: string, via: 'rfc4733' | 'info' | 'inband'): void {
    this.stats.digits++;
    this.onDigit(d, via);
  }
}
