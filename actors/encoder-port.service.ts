/**
 * The `encoder-port` actor: one UDP port per live stream, RTP (G.711) in → HlsEncoder → HLS in
 * `<dataDir>/live/<streamId>/`. It pushes a StreamDataset to monitoring every heartbeat while the
 * stream is healthy (ffmpeg running, a segment written, RTP seen in the last 2 s), so a stream whose feed died drops
 * out of monitoring. ffmpeg runs under the ProcessSupervisor: when it dies the old stream is finished
 * as its own record and a new stream (new ID, new directory) starts on the SAME port, since the
 * voice server keeps sending there unchanged. On stop the raw recording goes to content storage.
 */
import type { RemoteInfo, Socket } from 'node:dgram';
import { join } from 'node:path';
import type { Context, Logger, ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { decodeAlaw, decodeUlaw } from '../codecs/g711.ts';
import { isValidEventId, makeStreamId } from '../codecs/ids.ts';
import { isRtcp, parseRtp, seqDistance } from '../codecs/rtp.ts';
import { PortPool } from '../core/port-pool.ts';
import { EVENTS, type EncoderSelfTestResult, type EncoderStartParams, type EncoderStartResult, type EncoderStatus, type StreamDataset, type StreamRecord } from '../runtime/contracts.ts';
import { runEncoderSelfTest } from '../runtime/encoder-self-test.ts';
import { HlsEncoder } from '../runtime/encoder.ts';
import { NoCapacityError, ValidationFailedError, type FieldErrors } from '../runtime/errors.ts';
import { ProcessSupervisor } from '../runtime/supervisor.ts';
import { serveLiveFile, type LiveFileParams } from '../runtime/live-files.ts';
import { storeStream, uploadProgress } from '../runtime/stream-upload.ts';
import { bindUdp } from '../runtime/udp.ts';

/** A stream is healthy while its last RTP packet is at most this old (ms). */
export const RTP_FRESH_MS = 2000;
/** A freed encoder port rests this long (ms) so late packets of the old feed cannot claim the next stream. */
export const ENCODER_PORT_REST_MS = 5000;
/** RTP payload type of PCMU (RFC 3551 §6), the one the encoder asks for. */
export const PT_PCMU = 0;
/** RTP payload type of PCMA (RFC 3551 §6), also decoded. */
export const PT_PCMA = 8;

/**
 * A stream is announced to monitoring only once its playlist lists a segment: announced earlier,
 * players would fetch a playlist that does not exist yet and log 404s.
 */
function playable(live: { encoder: { segments: readonly unknown[] } }): boolean {
  return live.encoder.segments.length > 0;
}

/** `encoder-port.stop` parameters. */
export interface EncoderStopParams {
  streamId: string;
}

/** One row of `encoder-port.list`. */
export interface EncoderPortInfo {
  nodeId: string;
  rtpPort: number;
  /** The voice-server port feeding it. */
  port: number;
  eventId: string;
  /** The stream being encoded now (undefined between a crash and its restart). */
  streamId?: string;
  state: 'running' | 'restarting' | 'stopping';
  /** ffmpeg's process ID while it runs. */
  pid?: number;
  startedAt?: string;
  lastRtpAt?: string;
  restarts: number;
  packets: number;
  dropped: { malformed: number; rtcp: number; foreign: number; payloadType: number; late: number };
}

/** `encoder-port.list` reply. */
export interface EncoderPortList {
  nodeId: string;
  ports: EncoderPortInfo[];
  free: number;
  resting: number;
}

/** Checks `encoder-port.start` parameters; throws ValidationFailedError naming each bad field. */
export function validateStartParams(p: unknown): EncoderStartParams {
  const v = (p ?? {}) as Record<string, unknown>;
  const fields: FieldErrors = {};
  if (!isValidEventId(v.eventId)) fields.eventId = 'must be 8 digits with a valid check digit';
  if (v.format !== 'hls') fields.format = "must be 'hls'";
  if (!Number.isInteger(v.port) || (v.port as number) < 1 || (v.port as number) > 65535) fields.port = 'must be a port 1-65535';
  if (typeof v.voiceNodeId !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(v.voiceNodeId)) fields.voiceNodeId = 'must be a node ID';
  if (Object.keys(fields).length > 0) throw new ValidationFailedError(`invalid encoder-port.start parameters: ${Object.keys(fields).join(', ')}`, fields);
  return { eventId: v.eventId as string, format: 'hls', port: v.port as number, voiceNodeId: v.voiceNodeId as string };
}

/** The one RTP source a port accepts: the first SSRC and address that arrived. */
export interface SourceLock {
  ssrc: number;
  address: string;
  port: number;
  lastSeq: number;
}

/** What to do with one datagram. */
export type Admission =
  | { kind: 'audio'; pcm: Int16Array; lock: SourceLock }
  | { kind: 'drop'; reason: 'malformed' | 'rtcp' | 'foreign' | 'payloadType' | 'late' };

/**
 * Decides on one datagram: malformed and RTCP are dropped; only the first SSRC + source address is
 * accepted (nobody can inject audio into a stream); duplicates and late packets are dropped; PCMU
 * and PCMA are decoded. Pure: the caller keeps the returned lock.
 */
export function admitPacket(lock: SourceLock | undefined, buf: Buffer, from: { address: string; port: number }): Admission {
  if (isRtcp(buf)) return { kind: 'drop', reason: 'rtcp' };
  let pkt;
  try {
    pkt = parseRtp(buf);
  } catch {
    return { kind: 'drop', reason: 'malformed' };
  }
  if (lock && (pkt.ssrc !== lock.ssrc || from.address !== lock.address || from.port !== lock.port)) return { kind: 'drop', reason: 'foreign' };
  if (pkt.payloadType !== PT_PCMU && pkt.payloadType !== PT_PCMA) return { kind: 'drop', reason: 'payloadType' };
  // A small step back is a duplicate or a reordered straggler; a big one is a sender that restarted its sequence.
  if (lock) {
    const d = seqDistance(lock.lastSeq, pkt.sequenceNumber);
    if (d <= 0 && d > -100) return { kind: 'drop', reason: 'late' };
  }
  const pcm = pkt.payloadType === PT_PCMU ? decodeUlaw(pkt.payload) : decodeAlaw(pkt.payload);
  const next: SourceLock = lock ? { ...lock, lastSeq: pkt.sequenceNumber } : { ssrc: pkt.ssrc, address: from.address, port: from.port, lastSeq: pkt.sequenceNumber };
  return { kind: 'audio', pcm, lock: next };
}

/** One encoder run: a stream ID with its own directory. */
interface LiveStream {
  streamId: string;
  dir: string;
  encoder: HlsEncoder;
  startedAt: Date;
  /** Whether a dataset was pushed yet (the first one goes out on the first packet). */
  pushed: boolean;
  finishing?: Promise<StreamRecord>;
}

/** One bound encoder port and the streams it has fed, one after another across restarts. */
interface Slot {
  rtpPort: number;
  socket: Socket;
  params: EncoderStartParams;
  supervisor: ProcessSupervisor<HlsEncoder>;
  live?: LiveStream;
  /** Every stream ID this port has had: a voice server stops by the ID it was given, even after restarts. */
  streamIds: string[];
  lock?: SourceLock;
  lastRtpAt: number;
  restarts: number;
  packets: number;
  dropped: EncoderPortInfo['dropped'];
  stopping?: Promise<StreamRecord | null>;
}

type Call = (action: string, params: unknown, opts?: { timeout?: number }) => Promise<unknown>;

/** The port table of one encoder-port actor; the service schema only validates and delegates here. */
class EncoderPorts {
  readonly #slots = new Map<number, Slot>();
  readonly #byStream = new Map<string, Slot>();
  readonly #pool: PortPool;
  #heartbeat?: NodeJS.Timeout;
  /** Uploads as they go (runtime/stream-upload.ts uploadProgress): one timer, one upload per stream at a time. */
  #progress?: NodeJS.Timeout;
  readonly #uploading = new Set<string>();
  /** Streams whose last progress upload failed (warned once until one succeeds). */
  readonly #uploadFailing = new Set<string>();

  constructor(
    private readonly config: JitcastConfig,
    private readonly broker: ServiceBroker,
    private readonly logger: Logger,
  ) {
    this.#pool = new PortPool(config.encoderPorts.min, config.encoderPorts.max, ENCODER_PORT_REST_MS);
  }

  begin(): void {
    this.#heartbeat = setInterval(() => {
      this.#pushAll();
      this.#publishStatus();
    }, this.config.heartbeatS * 1000);
    this.#progress = setInterval(() => this.#uploadAll(), Math.max(1, this.config.segmentS) * 1000);
    this.#publishStatus();
  }

  #statusSeq = 0;
  #selfTest?: Promise<EncoderSelfTestResult>;

  /** The encoder pool's view of this node (voice servers bind streams by it). */
  status(): EncoderStatus {
    const now = Date.now();
    return {
      nodeId: this.config.nodeId,
      dataCenter: this.config.dataCenter,
      capacity: this.#pool.capacity,
      free: this.#pool.available(now),
      running: this.#slots.size,
      seq: ++this.#statusSeq,
      updatedAt: new Date(now).toISOString(),
    };
  }

  #publishStatus(): void {
    Promise.resolve(this.broker.broadcast(EVENTS.encoderStatus, this.status())).catch((err: Error) => this.logger.debug(`encoder status broadcast failed ${err.message}`));
  }

  /**
   * The health test monitoring asks for: RTP in, a segment out, on a free port of this node with
   * this node's ffmpeg (runtime/encoder-self-test.ts). One at a time; a second request shares it.
   */
  selfTest(): Promise<EncoderSelfTestResult> {
    this.#selfTest ??= this.#runSelfTest().finally(() => (this.#selfTest = undefined));
    return this.#selfTest;
  }

  async #runSelfTest(): Promise<EncoderSelfTestResult> {
    const nodeId = this.config.nodeId;
    let bound: { rtpPort: number; socket: Socket };
    try {
      bound = await this.#bindFreePort();
    } catch (err) {
      return { ok: false, skipped: true, nodeId, ms: 0, packetsSent: 0, packetsReceived: 0, reason: (err as Error).message };
    }
    try {
      const r = await runEncoderSelfTest({
        socket: bound.socket,
        host: this.config.sipHost,
        rtpPort: bound.rtpPort,
        dir: join(this.config.dataDir, 'health', `selftest-${bound.rtpPort}-${Date.now().toString(36)}`),
        timeoutMs: Math.max(10_000, this.config.segmentS * 4000),
        startEncoder: (dir) =>
          HlsEncoder.start({ ffmpegPath: this.config.ffmpegPath, dir, segmentS: this.config.segmentS, logger: this.logger, context: `self-test port:${bound.rtpPort}` }),
      });
      return { ...r, nodeId, rtpPort: bound.rtpPort };
    } finally {
      bound.socket.close();
      this.#pool.release(bound.rtpPort, Date.now());
    }
  }

  #ctx(slot: Slot, live = slot.live): string {
    return `event:${slot.params.eventId} stream:${live?.streamId ?? '-'} port:${slot.rtpPort}`;
  }

  async start(params: EncoderStartParams): Promise<EncoderStartResult> {
    const { rtpPort, socket } = await this.#bindFreePort();
    const slot: Slot = {
      rtpPort,
      socket,
      params,
      supervisor: undefined as unknown as ProcessSupervisor<HlsEncoder>,
      streamIds: [],
      lastRtpAt: -Infinity,
      restarts: 0,
      packets: 0,
      dropped: { malformed: 0, rtcp: 0, foreign: 0, payloadType: 0, late: 0 },
    };
    slot.supervisor = new ProcessSupervisor<HlsEncoder>({ start: () => this.#startStream(slot) });
    slot.supervisor.on('died', (exit, encoder) => {
      const live = slot.live?.encoder === encoder ? slot.live : undefined;
      slot.live = undefined;
      // A crash explains itself in ffmpeg's last stderr line; a kill leaves only unrelated chatter there.
      const why = exit.code !== null ? ` ${exit.stderrTail.at(-1)?.trim() ?? ''}` : '';
      this.logger.error(`encoder died [${this.#ctx(slot, live)} code:${exit.code} signal:${exit.signal}]${why}`);
      if (live) void this.#finishStream(slot, live, this.broker.call.bind(this.broker) as Call);
    });
    slot.supervisor.on('restarted', (_enc, attempt) => {
      slot.restarts++;
      this.logger.warn(`encoder restarted [${this.#ctx(slot)} attempt:${attempt}]`);
    });
    slot.supervisor.on('restartFailed', (err, attempt) => this.logger.error(`encoder restart failed [${this.#ctx(slot)} attempt:${attempt}] ${err.message}`));
    slot.supervisor.on('gaveUp', (attempts) => {
      this.logger.error(`encoder gave up after ${attempts} restarts, releasing the port [${this.#ctx(slot)}]`);
      void this.stop(slot, this.broker.call.bind(this.broker) as Call);
    });

    try {
      await slot.supervisor.start();
    } catch (err) {
      socket.close();
      this.#pool.release(rtpPort, Date.now());
      throw err;
    }
    this.#slots.set(rtpPort, slot);
    socket.on('message', (buf, rinfo) => this.#onPacket(slot, buf, rinfo));
    const streamId = slot.live!.streamId;
    this.logger.info(`stream started [${this.#ctx(slot)} voice:${params.voiceNodeId}:${params.port}]`);
    return { streamId, nodeId: this.config.nodeId, rtpHost: this.config.sipHost, rtpPort, payloadType: PT_PCMU };
  }

  /** Starts one encoder run with a fresh stream ID and directory (the supervisor calls this on each restart). */
  async #startStream(slot: Slot): Promise<HlsEncoder> {
    const startedAt = new Date();
    const streamId = makeStreamId(slot.params.eventId, this.config.nodeId, slot.params.port, startedAt.getTime());
    const dir = join(this.config.dataDir, 'live', streamId);
    const encoder = await HlsEncoder.start({
      ffmpegPath: this.config.ffmpegPath,
      dir,
      segmentS: this.config.segmentS,
      logger: this.logger,
      context: `event:${slot.params.eventId} stream:${streamId} port:${slot.rtpPort}`,
    });
    // A restart that finished after stop() began: the supervisor closes it, nothing may adopt it.
    if (slot.stopping) return encoder;
    slot.live = { streamId, dir, encoder, startedAt, pushed: false };
    slot.streamIds.push(streamId);
    this.#byStream.set(streamId, slot);
    return encoder;
  }

  async #bindFreePort(): Promise<{ rtpPort: number; socket: Socket }> {
    for (;;) {
      const rtpPort = this.#pool.acquire(Date.now());
      if (rtpPort === undefined) {
        throw new NoCapacityError(`no free encoder port [node:${this.config.nodeId} range:${this.config.encoderPorts.min}-${this.config.encoderPorts.max}]`, {
          nodeId: this.config.nodeId,
        });
      }
      try {
        return { rtpPort, socket: await bindUdp(this.config.sipHost, rtpPort) };
      } catch (err) {
        // Taken by another process: rest it and try the next one.
        this.logger.warn(`encoder port unavailable [port:${rtpPort}] ${(err as Error).message}`);
        this.#pool.quarantine(rtpPort, Date.now());
      }
    }
  }

  #onPacket(slot: Slot, buf: Buffer, from: RemoteInfo): void {
    if (slot.stopping) return;
    const a = admitPacket(slot.lock, buf, from);
    if (a.kind === 'drop') {
      slot.dropped[a.reason]++;
      return;
    }
    slot.lock = a.lock;
    slot.packets++;
    slot.lastRtpAt = performance.now();
    const live = slot.live;
    if (!live || !live.encoder.running) return; // between a crash and its restart
    live.encoder.write(a.pcm);
    if (!live.pushed && playable(live)) this.#push(slot, live);
  }

  #pushAll(): void {
    const now = performance.now();
    for (const slot of this.#slots.values()) {
      const live = slot.live;
      if (!slot.stopping && live?.encoder.running && playable(live) && now - slot.lastRtpAt <= RTP_FRESH_MS) this.#push(slot, live);
    }
  }

  #push(slot: Slot, live: LiveStream): void {
    live.pushed = true;
    const dataset: StreamDataset = {
      streamId: live.streamId,
      eventId: slot.params.eventId,
      format: slot.params.format,
      port: slot.params.port,
      nodeId: this.config.nodeId,
      dataCenter: this.config.dataCenter,
      url: `/s/${live.streamId}/index.m3u8`,
      startedAt: live.startedAt.toISOString(),
      lastSeenAt: new Date().toISOString(),
    };
    this.broker.broadcast(EVENTS.streamDataset, dataset).catch((err: Error) => this.logger.warn(`dataset push failed [${this.#ctx(slot, live)}] ${err.message}`));
  }

  /** Sends each running stream's new segments and playlist to content storage, so a node that dies mid-call loses at most the last segment or two. */
  #uploadAll(): void {
    for (const slot of this.#slots.values()) {
      const live = slot.live;
      if (!live || slot.stopping || live.finishing || !playable(live) || this.#uploading.has(live.streamId)) continue;
      const streamId = live.streamId;
      this.#uploading.add(streamId);
      uploadProgress(this.broker, this.broker.call.bind(this.broker) as Call, { eventId: slot.params.eventId, streamId, dir: live.dir })
        .then(
          (r) => {
            if (this.#uploadFailing.delete(streamId)) this.logger.info(`stream upload as it goes resumed [${this.#ctx(slot, live)} storage:${r.nodeId ?? '-'}]`);
          },
          (err: Error) => {
            if (this.#uploadFailing.has(streamId)) return;
            this.#uploadFailing.add(streamId);
            this.logger.warn(`stream upload as it goes failed, will retry [${this.#ctx(slot, live)}] ${err.message}`);
          },
        )
        .finally(() => {
          this.#uploading.delete(streamId);
          if (live.finishing) this.#uploadFailing.delete(streamId); // the end-of-call commit takes over
        });
    }
  }

  /** Ends one run: finish the files, hand them to content storage, announce the record. Once per run. */
  #finishStream(slot: Slot, live: LiveStream, call: Call): Promise<StreamRecord> {
    live.finishing ??= (async () => {
      const { durationS } = await live.encoder.stop();
      let stored = false;
      try {
        // By path when storage runs here, else file by file over the broker (storage may be on any node).
        await storeStream(this.broker, call, { eventId: slot.params.eventId, streamId: live.streamId, dir: live.dir });
        stored = true;
      } catch (err) {
        this.logger.error(`stream not stored, files stay in ${live.dir} [${this.#ctx(slot, live)}] ${(err as Error).message}`);
      }
      const record: StreamRecord = {
        streamId: live.streamId,
        eventId: slot.params.eventId,
        nodeId: this.config.nodeId,
        dataCenter: this.config.dataCenter,
        port: slot.params.port,
        startedAt: live.startedAt.toISOString(),
        endedAt: new Date().toISOString(),
        durationS,
        stored,
      };
      await this.broker.broadcast(EVENTS.streamStopped, record).catch((err: Error) => this.logger.warn(`streamStopped broadcast failed [${this.#ctx(slot, live)}] ${err.message}`));
      this.logger.info(`stream stopped [${this.#ctx(slot, live)} duration:${durationS}s stored:${stored}]`);
      return record;
    })();
    return live.finishing;
  }

  /** The slot that has (or had) this stream ID. */
  slotOf(streamId: string): Slot | undefined {
    return this.#byStream.get(streamId);
  }

  /** Stops a port: encoder (ENDLIST), no more restarts, socket closed, port freed, then storage and record. Idempotent. */
  stop(slot: Slot, call: Call): Promise<StreamRecord | null> {
    slot.stopping ??= (async () => {
      const live = slot.live;
      // Stop the encoder first so its own stop (ENDLIST) runs, not a kill; then no restart can follow.
      if (live) await live.encoder.stop().catch(() => {});
      await slot.supervisor.close();
      slot.socket.close();
      this.#slots.delete(slot.rtpPort);
      for (const id of slot.streamIds) this.#byStream.delete(id);
      this.#pool.release(slot.rtpPort, Date.now());
      return live ? this.#finishStream(slot, live, call) : null;
    })();
    return slot.stopping;
  }

  stopEvent(eventId: string, call: Call): Promise<unknown> {
    return Promise.all([...this.#slots.values()].filter((s) => s.params.eventId === eventId).map((s) => this.stop(s, call)));
  }

  async stopAll(call: Call): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.#progress) clearInterval(this.#progress);
    await Promise.allSettled([...this.#slots.values()].map((s) => this.stop(s, call)));
  }

  list(): EncoderPortList {
    const now = performance.now();
    const ports = [...this.#slots.values()].map((s): EncoderPortInfo => ({
      nodeId: this.config.nodeId,
      rtpPort: s.rtpPort,
      port: s.params.port,
      eventId: s.params.eventId,
      streamId: s.live?.streamId,
      state: s.stopping ? 'stopping' : s.live ? 'running' : 'restarting',
      pid: s.live?.encoder.pid,
      startedAt: s.live?.startedAt.toISOString(),
      lastRtpAt: Number.isFinite(s.lastRtpAt) ? new Date(Date.now() - (now - s.lastRtpAt)).toISOString() : undefined,
      restarts: s.restarts,
      packets: s.packets,
      dropped: { ...s.dropped },
    }));
    return { nodeId: this.config.nodeId, ports, free: this.#pool.available(Date.now()), resting: this.#pool.resting };
  }
}


interface EncoderPortVars {
  encoders: EncoderPorts;
}

/** The `encoder-port` actor for this node. */
export function createEncoderPortService(config: JitcastConfig): ServiceSchema {
  const schema: ServiceSchema<Record<string, never>, Record<string, never>, EncoderPortVars> = {
    name: 'encoder-port',
    actions: {
      start: {
        async handler(ctx: Context<EncoderStartParams>): Promise<EncoderStartResult> {
          return this.encoders.start(validateStartParams(ctx.params));
        },
      },
      stop: {
        async handler(ctx: Context<EncoderStopParams>): Promise<StreamRecord | null> {
          const streamId = ctx.params?.streamId;
          if (typeof streamId !== 'string' || streamId === '') throw new ValidationFailedError('streamId is required', { streamId: 'required' });
          const slot = this.encoders.slotOf(streamId);
          if (!slot) return null; // unknown or already stopped: stop is idempotent
          return this.encoders.stop(slot, ctx.call.bind(ctx) as Call);
        },
      },
      /**
       * One live file (`index.m3u8` or `segNNNNN.ts`) of a stream this node encodes, for
       * attendee-access on another node (call with `{nodeID}`); NotFoundError for any other stream.
       */
      liveFile: {
        handler(ctx: Context<LiveFileParams>): Promise<Buffer> {
          return serveLiveFile(config.dataDir, config.nodeId, ctx.params, (streamId) => this.encoders.slotOf(streamId) !== undefined);
        },
      },
      list: {
        handler(): EncoderPortList {
          return this.encoders.list();
        },
      },
      /** Monitoring's health test of this node's encoder: RTP in, a segment out. Call with `{nodeID}`. */
      selfTest: {
        handler(): Promise<EncoderSelfTestResult> {
          return this.encoders.selfTest();
        },
      },
    },
    events: {
      [EVENTS.eventEnded]: {
        async handler(ctx: Context<{ eventId: string }>) {
          const eventId = ctx.params?.eventId;
          if (typeof eventId !== 'string') return;
          await this.encoders.stopEvent(eventId, this.broker.call.bind(this.broker) as Call);
        },
      },
    },
    created() {
      this.encoders = new EncoderPorts(config, this.broker, this.logger);
    },
    async started() {
      this.encoders.begin();
    },
    async stopped() {
      await this.encoders.stopAll(this.broker.call.bind(this.broker) as Call);
    },
  };
  return schema as unknown as ServiceSchema;
}

