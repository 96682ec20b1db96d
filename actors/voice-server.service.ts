/**
 * The `voice-server` actor: one voice server (SIP UAS, RTP, IVR, conference bridge).
 * It answers calls on the dial-in address, runs the IVR state machine for each caller, checks the
 * PIN from the cluster secret alone (constant time, throttled per event ID), binds the call
 * just-in-time to a port of its own pre-assigned range and, for the first caller of an event on
 * this server, to an encoder port; then mixes the conference (mix-minus) every 20 ms.
 *
 * In the cluster it reports itself every heartbeat, and at once on any state change, as a
 * `VoiceStatus` broadcast (`EVENTS.voiceStatus`) that the `sip-router`s route calls by. Its state
 * for new calls (core/voice-state.ts): in service; suspended when free ports run low (port
 * availability suspend, with hysteresis); maintenance after `voice-server.drain` (new INVITEs get
 * 503 with Retry-After, busy channels finish, then it reports drained) until `voice-server.resume`;
 * out of service while stopping.
 *
 * Bridged conferences (issue 4, core/bridge.ts): when callers of one event sit on several voice
 * servers, each server's conference also carries the others' speakers. Every server announces its
 * conferences and its bridge socket (`BRIDGE_ANNOUNCE_EVENT`), sends the mix of its own callers as
 * PCMU RTP to each peer of the same event, and mixes each peer in as one remote member; so each
 * server's stream, a redundant stream of the event, holds every speaker, and a listener whose
 * stream dies with its node hears the same conference on the other.
 */
import type { Socket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import type { Context, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import type { RemoteInfo } from 'node:dgram';
import { decodeUlaw, encodeUlaw } from '../codecs/g711.ts';
import { pinMatches } from '../codecs/pin.ts';
import { isRtcp, parseRtp, serializeRtp } from '../codecs/rtp.ts';
import { BridgeTable, shouldAnswer, type BridgeAnnounce, type BridgeChange } from '../core/bridge.ts';
import { ConferenceMixer, FRAME_SAMPLES } from '../core/conference.ts';
import { initialIvrState, stepIvr, type IvrEffect, type IvrInput, type IvrState, type VerifyFailure } from '../core/ivr.ts';
import { PortPool } from '../core/port-pool.ts';
import { FailureThrottle } from '../core/throttle.ts';
import { admitsCalls, channelCounts, initialVoiceState, resumeThreshold, stepVoiceState, voiceServerState, type VoiceInput, type VoicePorts, type VoiceState } from '../core/voice-state.ts';
import { EncoderPool } from '../core/encoder-pool.ts';
import { BRIDGE_ANNOUNCE_EVENT, EVENTS, type AssetHealth, type ChannelCounts, type EncoderStartResult, type EncoderStatus, type JoinResult, type VoiceServerState, type VoiceStatus } from '../runtime/contracts.ts';
import { MediaClock } from '../runtime/media-clock.ts';
import { loadPrompts, type PromptAudio } from '../runtime/prompts.ts';
import { SipUserAgent, type InboundCall } from '../runtime/sip/index.ts';
import { HEALTH_USER } from '../runtime/sip/probe.ts';
import { Channel, type ChannelView } from '../runtime/voice/channel.ts';
import { bindUdp } from '../runtime/udp.ts';

/** One event's conference on this voice server, and the stream it feeds. */
interface Conference {
  eventId: string;
  /** The voice-server port the stream is bound to (the first caller's). */
  port: number;
  mixer: ConferenceMixer;
  members: Set<string>;
  encoder?: EncoderStartResult;
  /** The node of the encoder port (stop goes there). */
  encoderNodeId?: string;
  /** Set while an encoder start is in flight or failed recently. */
  encoderPending: boolean;
  ssrc: number;
  seq: number;
  ts: number;
  /** RTP state of the bridge audio (this server's callers) sent to peer servers of the event. */
  bridge: { ssrc: number; seq: number; ts: number };
}

interface CallState {
  channel: Channel;
  ivr: IvrState;
  digitTimer?: NodeJS.Timeout;
  /** When the caller joined its event (ms), for usage reports' call minutes (EVENTS.callStarted/callEnded). */
  joinedAtMs?: number;
}

/** Retry-After (s) of the 503 a draining or stopping server answers a new INVITE with. */
const MAINTENANCE_RETRY_AFTER_S = 30;
/** Retry-After (s) of the 503 when no RTP port is free. */
const NO_PORT_RETRY_AFTER_S = 5;

/** What `voice-server.status` (and drain / resume) return. */
export interface VoiceServerStatus {
  nodeId: string;
  dataCenter: string;
  sip: { host: string; port: number };
  /** State for new calls (see core/voice-state.ts). */
  state: VoiceServerState;
  /** In maintenance: true once the last busy channel has ended. */
  drained: boolean;
  portRange: { min: number; max: number };
  ports: { capacity: number; busy: number; resting: number; available: number; outOfService: number; suspendBelow: number; resumeAt: number };
  /** Channels (ports) by state. */
  channelStates: ChannelCounts;
  channels: ChannelView[];
  conferences: Array<{ eventId: string; port: number; members: number; streamId?: string; bridgedWith: string[] }>;
  /** Where this server receives bridge audio from peer servers. */
  bridge?: { host: string; port: number };
  lateFrames: number;
}

/** Creates the voice-server actor for this node. */
export function createVoiceServerService(config: JitcastConfig): ServiceSchema {
  const ivrOpts = { maxFailures: 3, endCode: config.endCode };
  const stateOpts = { suspendBelow: config.portSuspendBelow, resumeAt: config.portResumeAt };

  return {
    name: 'voice-server',

    created() {
      this.pool = new PortPool(config.rtpPorts.min, config.rtpPorts.max, config.portReuseTimeoutS * 1000);
      this.throttle = new FailureThrottle(config.pinFailLimit, config.pinFailWindowS * 1000);
      this.calls = new Map<string, CallState>();
      this.conferences = new Map<string, Conference>();
      this.clock = new MediaClock(() => this.onFrame());
      this.counter = 0;
      /** Ports that could not be bound: out of service until they may be tried again (port → ms). */
      this.quarantined = new Map<number, number>();
      this.statusSeq = 0;
      this.encoderPool = new EncoderPool({ timeoutMs: config.heartbeatTimeoutS * 1000 });
      this.voiceState = initialVoiceState(this.portCounts(), stateOpts);
      this.bridge = new BridgeTable(config.nodeId);
      this.frameCount = 0;
    },

    async started() {
      this.prompts = (await loadPrompts(config.dataDir, config.ffmpegPath, this.logger)) as PromptAudio;
      this.castSocket = await bindUdp(config.sipHost);
      // Bridge audio from peer voice servers arrives here; it is also the socket bridge audio leaves
      // from, so peers recognise the sender by the address announced.
      this.bridgeSocket = await bindUdp(config.sipHost);
      (this.bridgeSocket as Socket).on('message', (msg: Buffer, rinfo: RemoteInfo) => this.onBridgePacket(msg, rinfo));
      this.ua = await SipUserAgent.listen({ host: config.sipHost, port: config.sipPort, logger: this.logger, userAgent: 'jitcast' });
      this.ua.on('invite', (call: InboundCall) => this.onInvite(call).catch((err: Error) => this.logger.error(`call setup failed [call:${call.callId}]`, err)));
      this.ua.on('message-error', (info: { from: string; reason: string }) => this.logger.warn(`malformed SIP [from:${info.from}] ${info.reason}`));
      this.clock.start();
      this.sweep = setInterval(() => this.sweepSilent(), 1000);
      this.beat = setInterval(() => this.heartbeat(), config.heartbeatS * 1000);
      const pool = this.pool as PortPool;
      if (config.portSuspendBelow > 0 && pool.capacity <= config.portSuspendBelow) {
        this.logger.warn(`RTP range holds ${pool.capacity} ports, not more than portSuspendBelow (${config.portSuspendBelow}): this server stays suspended [rtp:${config.rtpPorts.min}-${config.rtpPorts.max}]`);
      }
      this.logger.info(`voice server up [sip:${config.sipHost}:${config.sipPort} rtp:${config.rtpPorts.min}-${config.rtpPorts.max} ports:${pool.capacity} state:${voiceServerState(this.voiceState)}]`);
      this.publishStatus();
    },

    async stopped() {
      clearInterval(this.beat);
      // Out of service first, so routers stop sending calls before the socket closes.
      this.applyVoice({ type: 'stop' });
      clearInterval(this.sweep);
      this.clock.stop();
      await Promise.allSettled([...(this.calls as Map<string, CallState>).values()].map((c) => c.channel.call.hangup()));
      for (const c of (this.calls as Map<string, CallState>).values()) this.teardown(c, 'shutdown');
      await this.ua?.close();
      // Idempotent: a second stop must not throw on the closed socket.
      this.castSocket?.close();
      this.castSocket = undefined;
      this.bridgeSocket?.close();
      this.bridgeSocket = undefined;
    },

    events: {
      [EVENTS.encoderStatus]: {
        handler(this: any, ctx: Context<EncoderStatus>) {
          const s = ctx.params;
          if (typeof s?.nodeId !== 'string' || typeof s.free !== 'number' || typeof s.seq !== 'number') return;
          (this.encoderPool as EncoderPool).update(s, Date.now());
        },
      },
      [EVENTS.assetHealth]: {
        handler(this: any, ctx: Context<AssetHealth>) {
          const h = ctx.params;
          if (h?.asset !== 'encoder-port' || typeof h.nodeId !== 'string' || typeof h.healthy !== 'boolean') return;
          (this.encoderPool as EncoderPool).setHealth(h.nodeId, h.healthy);
          if (h.change) this.logger.info(`encoder ${h.change === 'evicted' ? 'left' : 'is back in'} the pool [node:${h.nodeId}]${h.reason ? ` ${h.reason}` : ''}`);
        },
      },
      '$node.disconnected': {
        handler(this: any, ctx: Context<{ node: { id: string } }>) {
          (this.encoderPool as EncoderPool).remove(ctx.params.node.id);
          this.applyBridge((this.bridge as BridgeTable).nodeGone(ctx.params.node.id));
        },
      },
      [BRIDGE_ANNOUNCE_EVENT]: {
        handler(this: any, ctx: Context<BridgeAnnounce>) {
          const a = ctx.params;
          if (typeof a?.nodeId !== 'string' || typeof a.host !== 'string' || typeof a.port !== 'number' || !Array.isArray(a.conferences)) return;
          const changes = (this.bridge as BridgeTable).announce(a, Date.now());
          this.applyBridge(changes);
          // A peer new to one of our conferences learns of us at once instead of at our next heartbeat.
          if (shouldAnswer(changes)) this.announceBridge();
        },
      },
      [EVENTS.eventEnded]: {
        handler(this: any, ctx: Context<{ eventId: string }>) {
          const { eventId } = ctx.params;
          for (const c of (this.calls as Map<string, CallState>).values()) {
            if (c.channel.eventId === eventId) this.input(c, { type: 'event-ended' });
          }
          const conf = (this.conferences as Map<string, Conference>).get(eventId);
          if (conf) this.dropConference(conf);
        },
      },
    },

    actions: {
      /** Maintenance: refuse new calls, let busy channels finish, then report drained. Call with `{nodeID}`. */
      drain: {
        handler(this: any): VoiceServerStatus {
          const before = voiceServerState(this.voiceState);
          this.applyVoice({ type: 'drain' });
          this.logger.info(`drain requested [node:${config.nodeId} was:${before} busy:${(this.pool as PortPool).busy}]`);
          return this.fullStatus();
        },
      },
      /** Back in service after a drain. Call with `{nodeID}`. */
      resume: {
        handler(this: any): VoiceServerStatus {
          const before = voiceServerState(this.voiceState);
          this.applyVoice({ type: 'resume' });
          this.logger.info(`resume requested [node:${config.nodeId} was:${before} now:${voiceServerState(this.voiceState)}]`);
          return this.fullStatus();
        },
      },
      status: {
        handler(this: any): VoiceServerStatus {
          return this.fullStatus();
        },
      },
    },

    methods: {
      /** Ports of the range as the state machine counts them. */
      portCounts(this: any): VoicePorts {
        const now = Date.now();
        const pool = this.pool as PortPool;
        const quarantined = this.quarantined as Map<number, number>;
        for (const [port, until] of quarantined) if (until <= now) quarantined.delete(port);
        return { capacity: pool.capacity, available: pool.available(now), busy: pool.busy, outOfService: quarantined.size };
      },

      /** Steps the state machine; logs and broadcasts at once on a change. Returns whether it broadcast. */
      applyVoice(this: any, input: VoiceInput): boolean {
        const { state, effects } = stepVoiceState(this.voiceState as VoiceState, input, stateOpts);
        this.voiceState = state;
        const p = state.ports;
        for (const fx of effects) {
          if (fx.type === 'state-changed') {
            this.logger.info(`voice server ${fx.to} [node:${config.nodeId} was:${fx.from} free:${p.available} busy:${p.busy} capacity:${p.capacity}]`);
          } else {
            this.logger.info(`voice server drained: no busy channel left [node:${config.nodeId}]`);
          }
        }
        if (effects.length === 0) return false;
        this.publishStatus();
        return true;
      },

      /** Port counts changed (a call came or went, a port woke from rest). */
      refreshPorts(this: any): boolean {
        return this.applyVoice({ type: 'ports', ports: this.portCounts() });
      },

      heartbeat(this: any) {
        if (!this.refreshPorts()) this.publishStatus();
        this.announceBridge();
      },

      /** Broadcasts this server's conferences and bridge address (core/bridge.ts). */
      announceBridge(this: any) {
        const sock = this.bridgeSocket as Socket | undefined;
        if (!sock) return;
        const a: BridgeAnnounce = {
          nodeId: config.nodeId,
          host: config.sipHost,
          port: sock.address().port,
          conferences: [...(this.conferences as Map<string, Conference>).values()].map((c) => ({ eventId: c.eventId, ssrc: c.bridge.ssrc })),
        };
        Promise.resolve(this.broker.broadcast(BRIDGE_ANNOUNCE_EVENT, a)).catch((err: Error) => {
          this.logger.debug(`bridge announce failed [node:${config.nodeId}] ${err.message}`);
        });
      },

      /** Carries the bridge table's changes out on the mixers. */
      applyBridge(this: any, changes: BridgeChange[]) {
        for (const ch of changes) {
          const conf = (this.conferences as Map<string, Conference>).get(ch.eventId);
          if (ch.type === 'added') {
            conf?.mixer.add(ch.memberId, { remote: true });
            this.logger.info(`conference bridged [event:${ch.eventId} peer:${ch.peer.nodeId} at:${ch.peer.host}:${ch.peer.port}]`);
          } else {
            conf?.mixer.remove(ch.memberId);
            this.logger.info(`bridge peer dropped [event:${ch.eventId} peer:${ch.nodeId} reason:${ch.reason}]`);
          }
        }
      },

      /** Bridge RTP from a peer server: its callers' audio, one remote member of our conference. */
      onBridgePacket(this: any, msg: Buffer, rinfo: RemoteInfo) {
        if (isRtcp(msg)) return;
        let pkt;
        try {
          pkt = parseRtp(msg);
        } catch {
          return;
        }
        if (pkt.payloadType !== 0) return;
        const src = (this.bridge as BridgeTable).rtp(rinfo.address, rinfo.port, pkt.ssrc, Date.now());
        if (!src) return;
        (this.conferences as Map<string, Conference>).get(src.eventId)?.mixer.push(src.memberId, decodeUlaw(pkt.payload));
      },

      /** The compact status routers route by. */
      voiceStatus(this: any): VoiceStatus {
        const s = this.voiceState as VoiceState;
        return {
          nodeId: config.nodeId,
          dataCenter: config.dataCenter,
          sip: { host: config.sipHost, port: config.sipPort },
          state: voiceServerState(s),
          drained: s.drained,
          ports: { capacity: s.ports.capacity, available: s.ports.available, busy: s.ports.busy, suspendBelow: stateOpts.suspendBelow, resumeAt: resumeThreshold(s.ports, stateOpts) },
          channels: channelCounts(s),
          seq: ++this.statusSeq,
          updatedAt: new Date().toISOString(),
        };
      },

      publishStatus(this: any) {
        const status = this.voiceStatus();
        Promise.resolve(this.broker.broadcast(EVENTS.voiceStatus, status)).catch((err: Error) => {
          this.logger.debug(`status broadcast failed [node:${config.nodeId}] ${err.message}`);
        });
      },

      /** Everything `jitcast status` shows of this server. */
      fullStatus(this: any): VoiceServerStatus {
        this.refreshPorts();
        const pool = this.pool as PortPool;
        const s = this.voiceState as VoiceState;
        return {
          nodeId: config.nodeId,
          dataCenter: config.dataCenter,
          sip: { host: config.sipHost, port: config.sipPort },
          state: voiceServerState(s),
          drained: s.drained,
          portRange: { min: config.rtpPorts.min, max: config.rtpPorts.max },
          ports: {
            capacity: pool.capacity,
            busy: pool.busy,
            resting: pool.resting,
            available: s.ports.available,
            outOfService: s.ports.outOfService,
            suspendBelow: stateOpts.suspendBelow,
            resumeAt: resumeThreshold(s.ports, stateOpts),
          },
          channelStates: channelCounts(s),
          channels: [...(this.calls as Map<string, CallState>).values()].map((c) => c.channel.view()),
          conferences: [...(this.conferences as Map<string, Conference>).values()].map((c) => ({
            eventId: c.eventId,
            port: c.port,
            members: c.members.size,
            streamId: c.encoder?.streamId,
            bridgedWith: (this.bridge as BridgeTable).targets(c.eventId).map((t) => t.nodeId),
          })),
          bridge: this.bridgeSocket ? { host: config.sipHost, port: (this.bridgeSocket as Socket).address().port } : undefined,
          lateFrames: (this.clock as MediaClock).lateFrames,
        };
      },

      /** A new INVITE: take a port, answer, start the IVR. */
      async onInvite(this: any, call: InboundCall) {
        if (!admitsCalls(this.voiceState as VoiceState)) {
          this.logger.info(`call refused: ${voiceServerState(this.voiceState)} [call:${call.callId} from:${call.fromUri}]`);
          call.reject(503, 'Service Unavailable', [['Retry-After', String(MAINTENANCE_RETRY_AFTER_S)]]);
          return;
        }
        const pool = this.pool as PortPool;
        let channel: Channel | undefined;
        for (let tries = 0; !channel && tries < 5; tries++) {
          const port = pool.acquire(Date.now());
          if (port === undefined) break;
          this.refreshPorts();
          try {
            channel = await Channel.open({ channelId: `${config.nodeId}:${port}:${++this.counter}`, port, host: config.sipHost, call });
          } catch (err) {
            // Another process holds the port: keep it out of the pool (out of service) for a while.
            this.logger.warn(`RTP port unavailable [port:${port}] ${(err as Error).message}`);
            pool.quarantine(port, Date.now());
            this.quarantined.set(port, Date.now() + config.portReuseTimeoutS * 1000);
            this.refreshPorts();
          }
        }
        if (!channel) {
          this.logger.warn(`no free RTP port: call refused [call:${call.callId} from:${call.fromUri}]`);
          call.reject(503, 'Service Unavailable', [['Retry-After', String(NO_PORT_RETRY_AFTER_S)]]);
          return;
        }
        try {
          channel.answer();
        } catch (err) {
          this.logger.warn(`offer refused [call:${call.callId}] ${(err as Error).message}`);
          channel.close();
          pool.release(channel.port, Date.now());
          this.refreshPorts();
          call.reject(488, 'Not Acceptable Here');
          return;
        }
        const state: CallState = { channel, ivr: initialIvrState() };
        this.calls.set(channel.channelId, state);
        this.logger[isHealthCall(call) ? 'debug' : 'info'](`call answered [call:${call.callId} from:${call.fromUri} port:${channel.port} codec:${channel.codec}]`);
        channel.onDigit = (d, via) => {
          this.logger.debug(`digit [port:${channel!.port} via:${via}] ${d}`);
          this.input(state, { type: 'digit', digit: d });
        };
        channel.onPromptsDone = () => {
          if (channel!.hangupAfterPrompts) void this.hangup(state, 'ivr');
        };
        call.once('terminated', (reason: string) => this.teardown(state, reason));
        channel.phase = state.ivr.phase;
        this.input(state, { type: 'start' });
      },

      /** Feeds an input to the caller's IVR and carries out the effects. */
      input(this: any, c: CallState, inp: IvrInput) {
        const { state, effects } = stepIvr(c.ivr, inp, ivrOpts);
        c.ivr = state;
        c.channel.phase = state.phase;
        for (const fx of effects) this.effect(c, fx);
      },

      effect(this: any, c: CallState, fx: IvrEffect) {
        const ch = c.channel;
        switch (fx.type) {
          case 'play':
            ch.play((this.prompts as PromptAudio)[fx.prompt]);
            break;
          case 'stop-prompts':
            ch.stopPrompts();
            break;
          case 'start-digit-timer':
            clearTimeout(c.digitTimer);
            // The caller gets the full timeout after the prompts have finished.
            c.digitTimer = setTimeout(() => this.input(c, { type: 'digit-timeout' }), (config.digitTimeoutS + ch.promptSecondsLeft) * 1000);
            break;
          case 'clear-digit-timer':
            clearTimeout(c.digitTimer);
            break;
          case 'verify':
            this.verify(c, fx.eventId, fx.pin).then(
              (r: { ok: true } | { ok: false; reason: VerifyFailure }) => this.input(c, { type: 'verified', ...r } as IvrInput),
              (err: Error) => {
                this.logger.error(`verify failed [event:${fx.eventId} port:${ch.port}]`, err);
                this.input(c, { type: 'verified', ok: false, reason: 'service-unavailable' });
              },
            );
            break;
          case 'end-event':
            this.logger.info(`end code keyed [event:${fx.eventId} port:${ch.port}]`);
            this.broker.call('event.end', { eventId: fx.eventId, reason: 'end-code' }).catch((err: Error) => {
              this.logger.warn(`end code not applied [event:${fx.eventId}] ${err.message}`);
            });
            break;
          case 'hangup':
            ch.hangupAfterPrompts = true;
            if (!ch.playing) void this.hangup(c, fx.reason);
            break;
        }
      },

      /** Checks the PIN without DB or storage, then joins the event (just-in-time binding). */
      async verify(this: any, c: CallState, eventId: string, pin: string): Promise<{ ok: true } | { ok: false; reason: VerifyFailure }> {
        const throttle = this.throttle as FailureThrottle;
        const now = Date.now();
        if (throttle.locked(eventId, now)) {
          this.logger.warn(`PIN attempts throttled [event:${eventId} port:${c.channel.port}]`);
          return { ok: false, reason: 'throttled' };
        }
        if (!pinMatches(config.secret, eventId, pin)) {
          throttle.fail(eventId, now);
          this.logger.warn(`wrong PIN [event:${eventId} port:${c.channel.port} from:${c.channel.call.fromUri}]`);
          return { ok: false, reason: 'wrong-pin' };
        }
        const res = (await this.broker.call(
          'event.join',
          { eventId, nodeId: config.nodeId, channelId: c.channel.channelId, port: c.channel.port },
          { timeout: 5000 },
        )) as JoinResult;
        if (!res.ok) {
          this.logger.info(`join refused [event:${eventId} status:${res.status}] ${res.reason}`);
          return { ok: false, reason: 'event-unavailable' };
        }
        if (!this.calls.has(c.channel.channelId)) return { ok: false, reason: 'event-unavailable' }; // hung up meanwhile
        c.channel.eventId = eventId;
        c.joinedAtMs = Date.now();
        this.reportCall(EVENTS.callStarted, c);
        this.joinConference(c, eventId);
        this.logger.info(`caller live [event:${eventId} port:${c.channel.port} call:${c.channel.call.callId}]`);
        return { ok: true };
      },

      joinConference(this: any, c: CallState, eventId: string) {
        let conf = (this.conferences as Map<string, Conference>).get(eventId);
        if (!conf) {
          conf = {
            eventId,
            port: c.channel.port,
            mixer: new ConferenceMixer(),
            members: new Set(),
            encoderPending: false,
            ssrc: randomInt(1, 2 ** 32 - 1),
            seq: randomInt(0, 65536),
            ts: randomInt(0, 2 ** 32 - 1),
            bridge: { ssrc: randomInt(1, 2 ** 32 - 1), seq: randomInt(0, 65536), ts: randomInt(0, 2 ** 32 - 1) },
          };
          this.conferences.set(eventId, conf);
          (this.bridge as BridgeTable).host(eventId);
          this.startEncoder(conf);
          this.announceBridge();
        }
        conf.members.add(c.channel.channelId);
        conf.mixer.add(c.channel.channelId);
        c.channel.onAudio = (pcm) => conf!.mixer.push(c.channel.channelId, pcm);
      },

      /**
       * Binds an encoder port to the conference, from the encoder pool (core/encoder-pool.ts: healthy
       * first, this node, then this data center); an encoder that refuses is skipped for the next.
       * Before any encoder status was heard the broker's balancer picks. Retried every few seconds
       * until one answers.
       */
      async startEncoder(this: any, conf: Conference) {
        if (conf.encoderPending || conf.encoder) return;
        conf.encoderPending = true;
        try {
          const pool = this.encoderPool as EncoderPool;
          const params = { eventId: conf.eventId, format: 'hls', port: conf.port, voiceNodeId: config.nodeId };
          const tried = new Set<string>();
          let enc: EncoderStartResult | undefined;
          let nodeId: string | undefined;
          while (!enc) {
            const choice = pool.pick({ nodeId: config.nodeId, dataCenter: config.dataCenter, now: Date.now(), exclude: tried });
            if (!choice && tried.size > 0) throw new Error(`every encoder in the pool refused [tried:${[...tried].join(',')}]`);
            if (choice && !choice.healthy) this.logger.warn(`no healthy encoder with a free port: trying one that failed its health test [event:${conf.eventId} encoder:${choice.nodeId}]`);
            try {
              enc = (await this.broker.call('encoder-port.start', params, { timeout: 10_000, ...(choice ? { nodeID: choice.nodeId } : {}) })) as EncoderStartResult;
              nodeId = enc.nodeId ?? choice?.nodeId;
            } catch (err) {
              if (!choice) throw err;
              pool.refuse(choice.nodeId);
              tried.add(choice.nodeId);
              this.logger.warn(`encoder refused the stream, trying the next [event:${conf.eventId} encoder:${choice.nodeId}] ${(err as Error).message}`);
            }
          }
          if (this.conferences.get(conf.eventId) !== conf) {
            // Everyone left while the encoder was starting.
            await this.broker.call('encoder-port.stop', { streamId: enc.streamId }, { nodeID: nodeId }).catch(() => {});
            return;
          }
          conf.encoder = enc;
          conf.encoderNodeId = nodeId;
          this.logger.info(`stream bound [event:${conf.eventId} port:${conf.port} stream:${enc.streamId} encoder:${nodeId ?? '?'}@${enc.rtpHost}:${enc.rtpPort}]`);
        } catch (err) {
          this.logger.error(`no encoder for the conference, retrying in 3 s [event:${conf.eventId} port:${conf.port}] ${(err as Error).message}`);
          setTimeout(() => {
            if (this.conferences.get(conf.eventId) === conf) this.startEncoder(conf);
          }, 3000).unref();
        } finally {
          conf.encoderPending = false;
        }
      },

      /** One 20 ms frame: mix every conference, feed its encoder and bridge peers, send each caller its audio. */
      onFrame(this: any) {
        const minus = new Map<string, Int16Array>();
        const bridge = this.bridge as BridgeTable;
        // Silent peers (a SIGKILLed node) leave the mixers within BRIDGE_SILENCE_MS + 200 ms.
        if (++this.frameCount % 10 === 0) this.applyBridge(bridge.expire(Date.now()));
        for (const conf of (this.conferences as Map<string, Conference>).values()) {
          const mix = conf.mixer.tick();
          const targets = bridge.targets(conf.eventId);
          conf.bridge.ts = (conf.bridge.ts + FRAME_SAMPLES) >>> 0;
          conf.bridge.seq = (conf.bridge.seq + 1) & 0xffff;
          if (targets.length > 0 && this.bridgeSocket) {
            // Only this server's callers (mix.local): audio received from a peer is never sent on.
            const pkt = serializeRtp({
              marker: false,
              payloadType: 0,
              sequenceNumber: conf.bridge.seq,
              timestamp: conf.bridge.ts,
              ssrc: conf.bridge.ssrc,
              csrcs: [],
              paddingLength: 0,
              payload: encodeUlaw(mix.local),
            });
            for (const t of targets) (this.bridgeSocket as Socket).send(pkt, t.port, t.host);
          }
          for (const [id, pcm] of mix.minus) minus.set(id, pcm);
          conf.ts = (conf.ts + FRAME_SAMPLES) >>> 0;
          conf.seq = (conf.seq + 1) & 0xffff;
          if (conf.encoder) {
            const pkt = serializeRtp({
              marker: false,
              payloadType: 0,
              sequenceNumber: conf.seq,
              timestamp: conf.ts,
              ssrc: conf.ssrc,
              csrcs: [],
              paddingLength: 0,
              payload: encodeUlaw(mix.cast),
            });
            (this.castSocket as Socket).send(pkt, conf.encoder.rtpPort, conf.encoder.rtpHost);
          }
        }
        for (const c of (this.calls as Map<string, CallState>).values()) {
          c.channel.sendFrame(minus.get(c.channel.channelId));
        }
      },

      /** Releases callers that have sent no RTP for the silence timeout. */
      sweepSilent(this: any) {
        const limit = Date.now() - config.rtpSilenceTimeoutS * 1000;
        for (const c of (this.calls as Map<string, CallState>).values()) {
          if (c.channel.lastRtpAt < limit) {
            this.logger.warn(`caller silent for ${config.rtpSilenceTimeoutS} s: released [port:${c.channel.port} call:${c.channel.call.callId}]`);
            void this.hangup(c, 'rtp-timeout');
          }
        }
        (this.throttle as FailureThrottle).sweep(Date.now());
      },

      async hangup(this: any, c: CallState, reason: string) {
        this.logger[isHealthCall(c.channel.call) ? 'debug' : 'info'](`hanging up [port:${c.channel.port} call:${c.channel.call.callId} reason:${reason}]`);
        try {
          await c.channel.call.hangup();
        } finally {
          this.teardown(c, reason);
        }
      },

      /** Frees everything a call held (idempotent): conference seat, event membership, port. */
      teardown(this: any, c: CallState, reason: string) {
        const ch = c.channel;
        if (!this.calls.delete(ch.channelId)) return;
        clearTimeout(c.digitTimer);
        ch.close();
        const eventId = ch.eventId;
        // Every port rests for the reuse timeout, except after monitoring's synthetic call, which never
        // joined an event (no auth code can name its port): a health test must not cost capacity.
        if (!eventId && isHealthCall(ch.call)) (this.pool as PortPool).releaseUnused(ch.port);
        else (this.pool as PortPool).release(ch.port, Date.now());
        this.refreshPorts();
        this.logger[isHealthCall(ch.call) ? 'debug' : 'info'](`call ended [port:${ch.port} call:${ch.call.callId} reason:${reason} rtpIn:${ch.stats.rtpIn} foreign:${ch.stats.rtpForeign}]`);
        if (!eventId) return;
        this.reportCall(EVENTS.callEnded, c, Date.now());
        this.broker.call('event.leave', { eventId, channelId: ch.channelId }).catch((err: Error) => {
          this.logger.warn(`leave not recorded [event:${eventId} port:${ch.port}] ${err.message}`);
        });
        const conf = (this.conferences as Map<string, Conference>).get(eventId);
        if (!conf) return;
        conf.members.delete(ch.channelId);
        conf.mixer.remove(ch.channelId);
        if (conf.members.size === 0) this.dropConference(conf);
      },

      /** Tells the usage actors a call joined or left its event (core/usage.ts CallReport); never throws. */
      reportCall(this: any, name: string, c: CallState, endedAtMs?: number) {
        const eventId = c.channel.eventId;
        if (!eventId || c.joinedAtMs === undefined) return;
        const report = { eventId, channelId: c.channel.channelId, nodeId: config.nodeId, startedAtMs: c.joinedAtMs, ...(endedAtMs !== undefined ? { endedAtMs } : {}) };
        Promise.resolve(this.broker.broadcast(name, report)).catch((err: Error) => this.logger.debug(`call report not broadcast [event:${eventId} port:${c.channel.port}] ${err.message}`));
      },

      /** Ends a conference's stream on this server. */
      dropConference(this: any, conf: Conference) {
        if (this.conferences.get(conf.eventId) !== conf) return;
        this.conferences.delete(conf.eventId);
        (this.bridge as BridgeTable).unhost(conf.eventId);
        this.announceBridge();
        if (conf.encoder) {
          const { streamId } = conf.encoder;
          this.broker.call('encoder-port.stop', { streamId }, { timeout: 30_000, ...(conf.encoderNodeId ? { nodeID: conf.encoderNodeId } : {}) }).catch((err: Error) => {
            this.logger.warn(`encoder stop failed [event:${conf.eventId} stream:${streamId}] ${err.message}`);
          });
        }
      },
    },
  } as ServiceSchema;
}

/** Monitoring's synthetic call (runtime/sip/probe.ts): logged at debug, since it comes every test interval. */
function isHealthCall(call: InboundCall): boolean {
  return call.fromUri.includes(`sip:${HEALTH_USER}@`);
}

