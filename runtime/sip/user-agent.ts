/**
 * SIP user agent server over UDP (RFC 3261 §8.2 UAS behaviour, §12 dialogs, §13.3 INVITE UAS,
 * §15 BYE, §9.2 CANCEL, §11 OPTIONS; RFC 6086 INFO; RFC 3581 rport). It answers calls, never
 * places them: the only requests it sends are BYEs inside dialogs it accepted.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  formatVia,
  makeResponse,
  parseCSeq,
  parseNameAddr,
  parseSip,
  parseVia,
  REASON_PHRASES,
  badRequestFor,
  SipHeaders,
  tagOf,
  type SipRequest,
  type SipResponse,
} from '../../codecs/sip.ts';
import {
  DEFAULT_TIMERS,
  serverTransactionKey,
  systemClock,
  TransactionLayer,
  type Clock,
  type Endpoint,
  type Logger,
  type TimerConfig,
} from './transactions.ts';
import { UdpTransport } from './transport.ts';

/** Methods this UA implements (sent in Allow). */
export const ALLOWED_METHODS = 'INVITE, ACK, BYE, CANCEL, OPTIONS, INFO';
/** Bodies this UA understands (sent in Accept). */
export const ACCEPTED_BODIES = 'application/sdp, application/dtmf-relay, application/dtmf';

/** Why a call ended. */
export type TerminationReason = 'bye' | 'cancel' | 'hangup' | 'rejected' | 'ack-timeout';

/** Call state: proceeding until the ACK of our 2xx, confirmed after it. */
export type InboundCallState = 'proceeding' | 'confirmed' | 'terminated';

/** An INFO request received in the dialog (RFC 6086). */
export interface InfoEvent {
  contentType: string;
  body: string;
}

/** Events of InboundCall. */
export interface InboundCallEvents {
  /** The ACK for our 2xx arrived (§13.3.1.4). */
  confirmed: [];
  /** INFO in the dialog, already answered 200. */
  info: [info: InfoEvent];
  /** A re-INVITE: call respond(answerSdp) within reinviteTimeoutMs, else the UA answers 488. */
  reinvite: [offer: string | undefined, respond: (answerSdp: string) => void];
  /** Emitted exactly once. */
  terminated: [reason: TerminationReason];
}

/** Events of SipUserAgent. */
export interface SipUserAgentEvents {
  /** A new dialog-creating INVITE (100 Trying already sent). */
  invite: [call: InboundCall];
  /** A datagram that is not a valid SIP message (answered 400 when it had a Via). */
  'message-error': [info: { from: string; reason: string }];
}

/** Options of SipUserAgent.listen(). */
export interface SipUserAgentOptions {
  /** Address to bind (127.0.0.1 in tests). */
  host: string;
  /** UDP port; 0 picks a free one. */
  port: number;
  logger?: Logger;
  /** User-Agent / Server header value. Default 'jitcast'. */
  userAgent?: string;
  /** Transaction timers in ms. Default T1 500, T2 4000, T4 5000 (RFC 3261 §17.1.1.1). */
  timers?: Partial<TimerConfig>;
  /** How long a 'reinvite' listener may take before the UA answers 488. Default 1000 ms. */
  reinviteTimeoutMs?: number;
  /** Timer functions (specs). Default: the system clock. */
  clock?: Clock;
}

/** Counters of SipUserAgent.stats(). */
export interface SipUserAgentStats {
  datagrams: number;
  requests: number;
  responses: number;
  malformed: number;
  /** Calls (dialogs, early or confirmed) still held. */
  dialogs: number;
  /** Server and client transactions still running. */
  transactions: number;
  /** 2xx responses re-sent while waiting for an ACK (§13.3.1.4). */
  retransmitted2xx: number;
}

const noopLogger: Logger = { info() {}, warn() {}, debug() {} };

/** 32 random bits in hex: enough for tags (§19.3 asks for at least 32 bits). */
function newTag(): string {
  return randomBytes(6).toString('hex');
}

/** A branch with the RFC 3261 magic cookie (§8.1.1.7). */
export function newBranch(): string {
  return `z9hG4bK${randomBytes(9).toString('base64url')}`;
}

function isIpLiteral(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || /^\[[0-9A-Fa-f:.]+\]$/.test(host);
}

/** Host and port of a sip: URI, or undefined for other schemes. */
function hostPortOf(uri: string): { host: string; port: number } | undefined {
  const m = /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;?>]+)(?::(\d+))?/i.exec(uri);
  if (!m) return undefined;
  return { host: m[1], port: m[2] ? Number(m[2]) : 5060 };
}

/** What an InboundCall needs from its user agent. */
interface CallHost {
  readonly layer: TransactionLayer;
  readonly clock: Clock;
  readonly timers: TimerConfig;
  readonly log: Logger;
  readonly contact: string;
  readonly viaSentBy: string;
  readonly userAgent: string;
  readonly reinviteTimeoutMs: number;
  count2xxRetransmission(): void;
  forget(call: InboundCall): void;
  trackInvite(key: string, call: InboundCall): void;
  untrackInvite(key: string): void;
}

interface Pending2xx {
  response: SipResponse;
  seq: number;
  initial: boolean;
  retransmit: unknown;
  giveUp: unknown;
}

/** One incoming call (the UAS side of one INVITE dialog). */
export class InboundCall extends EventEmitter<InboundCallEvents> {
  /** Call-ID of the dialog. */
  readonly callId: string;
  /** From header value of the INVITE, as received. */
  readonly from: string;
  /** To header value of the INVITE, as received (without our tag). */
  readonly to: string;
  /** URI of the caller (From). */
  readonly fromUri: string;
  /** Where the INVITE came from; responses go there (RFC 3581). */
  readonly remote: Endpoint;
  /** The SDP offer of the INVITE. */
  readonly offer: string | undefined;
  /** Our tag (To of our responses). */
  readonly localTag: string;
  /** The caller's tag (From). */
  readonly remoteTag: string;
  #state: InboundCallState = 'proceeding';
  readonly #host: CallHost;
  readonly #invite: SipRequest;
  readonly #inviteKey: string;
  #remoteTarget: string;
  readonly #routeSet: string[];
  #localSeq = randomInt(1, 1 << 20);
  #remoteSeq: number;
  #finalSent = false;
  #answered = false;
  #acked = false;
  #pending2xx: Pending2xx | undefined;
  #reinvite: { key: string; request: SipRequest; timer: unknown } | undefined;
  #terminatedReason: TerminationReason | undefined;
  #byeAfterAck = false;
  #bye: Promise<void> | undefined;

  /** @internal Created by SipUserAgent for each new INVITE. */
  constructor(host: CallHost, invite: SipRequest, inviteKey: string, remote: Endpoint) {
    super();
    this.#host = host;
    this.#invite = invite;
    this.#inviteKey = inviteKey;
    const h = invite.headers;
    this.callId = h.get('Call-ID')!;
    this.from = h.get('From')!;
    this.to = h.get('To')!;
    this.fromUri = parseNameAddr(this.from).uri;
    this.remote = remote;
    this.offer = invite.body === '' ? undefined : invite.body;
    this.localTag = newTag();
    this.remoteTag = tagOf(this.from) ?? '';
    const contact = h.get('Contact');
    // §12.1.1: remote target from Contact, route set from Record-Route in order.
    this.#remoteTarget = contact && contact !== '*' ? parseNameAddr(contact).uri : this.fromUri;
    this.#routeSet = h.getAll('Record-Route');
    this.#remoteSeq = parseCSeq(h.get('CSeq')!).seq;
  }

  /** Current state. */
  get state(): InboundCallState {
    return this.#state;
  }

  /** True once a 2xx was sent. */
  get answered(): boolean {
    return this.#answered;
  }

  /** @internal Key of the dialog in the UA's table. */
  get dialogKey(): string {
    return `${this.callId}|${this.localTag}|${this.remoteTag}`;
  }

  #ctx(): string {
    return `call:${this.callId}`;
  }

  #respond(key: string, req: SipRequest, status: number, reason?: string, extra: Array<[string, string]> = [], body?: string): SipResponse {
    const opts: Parameters<typeof makeResponse>[3] = {
      toTag: this.localTag,
      headers: [['Server', this.#host.userAgent], ...extra],
    };
    if (body !== undefined) {
      opts.body = body;
      opts.contentType = 'application/sdp';
    }
    const res = makeResponse(req, status, reason ?? REASON_PHRASES[status] ?? 'Unknown', opts);
    this.#host.layer.respond(key, res);
    return res;
  }

  /** Send 180 Ringing (creates the early dialog, §13.3.1.1). */
  ringing(): void {
    if (this.#state !== 'proceeding' || this.#finalSent) return;
    this.#respond(this.#inviteKey, this.#invite, 180, undefined, [['Contact', this.#host.contact]]);
  }

  /** Send 200 OK with our SDP answer; retransmitted until the ACK (§13.3.1.4). */
  answer(sdp: string): void {
    if (this.#state !== 'proceeding' || this.#finalSent) {
      this.#host.log.debug(`answer() ignored, call already ${this.#state} [${this.#ctx()}]`);
      return;
    }
    this.#finalSent = true;
    this.#answered = true;
    const res = this.#respond(
      this.#inviteKey,
      this.#invite,
      200,
      'OK',
      [
        ['Contact', this.#host.contact],
        ['Allow', ALLOWED_METHODS],
      ],
      sdp,
    );
    this.#host.untrackInvite(this.#inviteKey);
    this.#start2xx(res, this.#remoteSeq, true);
  }

  /** Send a final non-2xx response (retransmitted by Timer G until the ACK, §17.2.1); `headers` e.g. Retry-After. */
  reject(status: number, reason?: string, headers: Array<[string, string]> = []): void {
    this.#rejectWith(status, reason, 'rejected', headers);
  }

  #rejectWith(status: number, reason: string | undefined, why: TerminationReason, headers: Array<[string, string]> = []): void {
    if (!Number.isInteger(status) || status < 300 || status > 699) throw new RangeError(`reject() needs a status 300–699, got ${status}`);
    if (this.#state !== 'proceeding' || this.#finalSent) return;
    this.#finalSent = true;
    this.#respond(this.#inviteKey, this.#invite, status, reason, headers);
    this.#terminate(why);
  }

  /**
   * End the call: BYE through a non-INVITE client transaction (request built from the dialog,
   * §12.2.1.1); resolves on its final response or Timer F. Before the 2xx: reject(480).
   */
  hangup(): Promise<void> {
    if (this.#bye) return this.#bye;
    if (!this.#finalSent) {
      this.#rejectWith(480, undefined, 'hangup');
      return Promise.resolve();
    }
    if (this.#state === 'terminated' || !this.#answered) return Promise.resolve();
    if (!this.#acked) {
      // §15: the callee MUST NOT send BYE before the ACK of its 2xx (or the 2xx timeout).
      this.#byeAfterAck = true;
      this.#bye = new Promise<void>((resolve) => this.#ackWaiters.push(resolve));
      this.#terminate('hangup');
      return this.#bye;
    }
    this.#terminate('hangup');
    this.#bye = this.#sendBye();
    return this.#bye;
  }

  #ackWaiters: Array<() => void> = [];

  #buildBye(): { request: SipRequest; to: Endpoint } {
    this.#localSeq += 1;
    const h = new SipHeaders();
    h.append('Via', `SIP/2.0/UDP ${this.#host.viaSentBy};branch=${newBranch()};rport`);
    h.append('Max-Forwards', '70');
    // §12.2.1.1: From = our URI with our tag, To = theirs with their tag.
    const ourTo = tagOf(this.to) === undefined ? `${this.to};tag=${this.localTag}` : this.to;
    h.append('From', ourTo);
    h.append('To', this.from);
    h.append('Call-ID', this.callId);
    h.append('CSeq', `${this.#localSeq} BYE`);
    let uri = this.#remoteTarget;
    let nextHop = this.#remoteTarget;
    if (this.#routeSet.length > 0) {
      const first = parseNameAddr(this.#routeSet[0]).uri;
      nextHop = first;
      if (/;lr(?=[;=?]|$)/i.test(first)) {
        for (const r of this.#routeSet) h.append('Route', r);
      } else {
        // §12.2.1.1 strict routing: first route becomes the Request-URI, the target goes last.
        uri = first;
        for (const r of this.#routeSet.slice(1)) h.append('Route', r);
        h.append('Route', `<${this.#remoteTarget}>`);
      }
    }
    h.append('User-Agent', this.#host.userAgent);
    h.append('Content-Length', '0');
    const hp = hostPortOf(nextHop);
    // No DNS here (§8.1.2 would resolve per RFC 3263): a host name falls back to where the INVITE came from.
    const to = hp && isIpLiteral(hp.host) ? { address: hp.host.replace(/^\[|\]$/g, ''), port: hp.port } : this.remote;
    return { request: { kind: 'request', method: 'BYE', uri, headers: h, body: '' }, to };
  }

  async #sendBye(): Promise<void> {
    const { request, to } = this.#buildBye();
    this.#host.log.debug(`sending BYE [${this.#ctx()} to:${to.address}:${to.port}]`);
    const res = await this.#host.layer.request(request, to);
    if (!res) this.#host.log.info(`BYE timed out [${this.#ctx()}]`);
    this.#host.forget(this);
  }

  #start2xx(response: SipResponse, seq: number, initial: boolean): void {
    const { T1, T2 } = this.#host.timers;
    const clock = this.#host.clock;
    let interval = T1;
    const p: Pending2xx = { response, seq, initial, retransmit: undefined, giveUp: undefined };
    const tick = (): void => {
      this.#host.count2xxRetransmission();
      this.#host.layer.sendRaw(response, this.remote);
      interval = Math.min(2 * interval, T2);
      p.retransmit = clock.setTimeout(tick, interval);
    };
    p.retransmit = clock.setTimeout(tick, interval);
    p.giveUp = clock.setTimeout(() => this.#ackTimeout(), 64 * T1);
    this.#pending2xx = p;
  }

  #stop2xx(): void {
    const p = this.#pending2xx;
    if (!p) return;
    this.#host.clock.clearTimeout(p.retransmit);
    this.#host.clock.clearTimeout(p.giveUp);
    this.#pending2xx = undefined;
  }

  #ackTimeout(): void {
    const p = this.#pending2xx;
    this.#stop2xx();
    if (!p) return;
    this.#host.log.warn(`no ACK for 2xx within 64*T1, sending BYE [${this.#ctx()} cseq:${p.seq}]`);
    // §13.3.1.4: the dialog is confirmed but the session SHOULD be ended with a BYE.
    this.#acked = true;
    this.#terminate('ack-timeout');
    const bye = this.#sendBye();
    this.#bye ??= bye;
    const waiters = this.#ackWaiters.splice(0);
    void bye.then(() => waiters.forEach((w) => w()));
  }

  #terminate(reason: TerminationReason): void {
    if (this.#terminatedReason !== undefined) return;
    this.#terminatedReason = reason;
    this.#state = 'terminated';
    if (this.#reinvite) {
      this.#host.clock.clearTimeout(this.#reinvite.timer);
      this.#reinvite = undefined;
    }
    this.#host.log.info(`call terminated [${this.#ctx()} reason:${reason}]`);
    // A BYE of ours keeps the dialog until it completes (a crossing BYE still gets 200).
    if (!(this.#answered && (reason === 'hangup' || reason === 'ack-timeout'))) this.#host.forget(this);
    try {
      this.emit('terminated', reason);
    } catch (err) {
      this.#host.log.warn(`'terminated' listener threw [${this.#ctx()} ${(err as Error).message}]`);
    }
  }

  /** @internal An ACK matched to this dialog (2xx ACK, §13.3.1.4). */
  receiveAck(ack: SipRequest): void {
    const p = this.#pending2xx;
    if (!p || parseCSeq(ack.headers.get('CSeq')!).seq !== p.seq) return;
    this.#stop2xx();
    if (!p.initial) return;
    this.#acked = true;
    if (this.#byeAfterAck) {
      const waiters = this.#ackWaiters.splice(0);
      const bye = this.#sendBye();
      void bye.then(() => waiters.forEach((w) => w()));
      return;
    }
    if (this.#state !== 'proceeding') return;
    this.#state = 'confirmed';
    this.emit('confirmed');
  }

  /** @internal A CANCEL matched to the INVITE (or a re-INVITE) of this call (§9.2). */
  receiveCancel(inviteKey: string): void {
    if (inviteKey === this.#inviteKey) {
      if (this.#finalSent || this.#state !== 'proceeding') return;
      this.#finalSent = true;
      this.#respond(this.#inviteKey, this.#invite, 487);
      this.#terminate('cancel');
      return;
    }
    const r = this.#reinvite;
    if (r && r.key === inviteKey) {
      this.#host.clock.clearTimeout(r.timer);
      this.#reinvite = undefined;
      this.#respond(r.key, r.request, 487);
      this.#host.untrackInvite(r.key);
    }
  }

  /** @internal An in-dialog request other than ACK and CANCEL; false when out of order (§12.2.2). */
  checkSequence(req: SipRequest): boolean {
    const seq = parseCSeq(req.headers.get('CSeq')!).seq;
    if (seq < this.#remoteSeq) return false;
    this.#remoteSeq = seq;
    return true;
  }

  /** @internal BYE from the caller (§15.1.2). */
  receiveBye(key: string, req: SipRequest): void {
    this.#respond(key, req, 200);
    if (this.#state === 'terminated') return;
    this.#stop2xx();
    if (!this.#finalSent) {
      // §15.1.2: pending requests of the dialog still get a response; 487 is RECOMMENDED.
      this.#finalSent = true;
      this.#respond(this.#inviteKey, this.#invite, 487);
    }
    this.#terminate('bye');
  }

  /** @internal INFO in the dialog (RFC 6086 §4.2): answered 200, then 'info'. */
  receiveInfo(key: string, req: SipRequest): void {
    this.#respond(key, req, 200);
    if (this.#state === 'terminated') return;
    this.emit('info', { contentType: req.headers.get('Content-Type') ?? '', body: req.body });
  }

  /** @internal A re-INVITE (§14.2). */
  receiveReInvite(key: string, req: SipRequest): void {
    if (this.#state === 'terminated') {
      this.#respond(key, req, 481);
      return;
    }
    if (this.#reinvite || (this.#pending2xx && this.#pending2xx.initial) || !this.#finalSent) {
      // §14.2: an INVITE while another is pending gets 500 with a random Retry-After of 0–10 s.
      this.#respond(key, req, 500, undefined, [['Retry-After', String(randomInt(0, 11))]]);
      return;
    }
    this.#respond(key, req, 100);
    const contact = req.headers.get('Contact');
    if (contact && contact !== '*') this.#remoteTarget = parseNameAddr(contact).uri; // §12.2.2 target refresh
    this.#host.trackInvite(key, this);
    const seq = parseCSeq(req.headers.get('CSeq')!).seq;
    const fail = (why: string): void => {
      if (this.#reinvite?.key !== key) return;
      this.#host.clock.clearTimeout(this.#reinvite.timer);
      this.#reinvite = undefined;
      this.#host.untrackInvite(key);
      this.#host.log.info(`re-INVITE refused, ${why} [${this.#ctx()} cseq:${seq}]`);
      this.#respond(key, req, 488, undefined, [['Warning', `399 jitcast "${why}"`]]);
    };
    const timer = this.#host.clock.setTimeout(() => fail('no answer from the application'), this.#host.reinviteTimeoutMs);
    this.#reinvite = { key, request: req, timer };
    const respond = (answerSdp: string): void => {
      if (this.#reinvite?.key !== key) return;
      this.#host.clock.clearTimeout(this.#reinvite.timer);
      this.#reinvite = undefined;
      this.#host.untrackInvite(key);
      const res = this.#respond(key, req, 200, 'OK', [['Contact', this.#host.contact], ['Allow', ALLOWED_METHODS]], answerSdp);
      this.#start2xx(res, seq, false);
    };
    const offer = req.body === '' ? undefined : req.body;
    try {
      if (!this.emit('reinvite', offer, respond)) fail('no re-INVITE handler');
    } catch (err) {
      fail(`handler failed: ${(err as Error).message}`.replace(/"/g, "'"));
    }
  }

  /** @internal Best-effort end on SipUserAgent.close(): one BYE or 503, no retransmissions. */
  abort(): void {
    this.#stop2xx();
    if (this.#reinvite) this.#host.clock.clearTimeout(this.#reinvite.timer);
    if (this.#state === 'terminated') return;
    if (!this.#finalSent) {
      this.#finalSent = true;
      this.#respond(this.#inviteKey, this.#invite, 503);
    } else {
      const { request, to } = this.#buildBye();
      this.#host.layer.sendRaw(request, to);
    }
    this.#byeAfterAck = false;
    this.#terminate('hangup');
  }
}

/** The SIP UAS: one UDP socket, transactions, dialogs, and an 'invite' event per new call. */
export class SipUserAgent extends EventEmitter<SipUserAgentEvents> {
  readonly #transport: UdpTransport;
  readonly #layer: TransactionLayer;
  readonly #log: Logger;
  readonly #dialogs = new Map<string, InboundCall>();
  readonly #invites = new Map<string, InboundCall>();
  readonly #host: CallHost;
  readonly #counters = { datagrams: 0, requests: 0, responses: 0, malformed: 0, retransmitted2xx: 0 };
  #closing: Promise<void> | undefined;

  private constructor(transport: UdpTransport, opts: SipUserAgentOptions) {
    super();
    this.#transport = transport;
    this.#log = opts.logger ?? noopLogger;
    const timers: TimerConfig = { ...DEFAULT_TIMERS, ...opts.timers };
    const clock = opts.clock ?? systemClock;
    this.#layer = new TransactionLayer({ send: (buf, to) => transport.send(buf, to), timers, clock, logger: this.#log });
    const { host, port } = transport.address;
    const hostPart = host.includes(':') ? `[${host}]` : host;
    this.#host = {
      layer: this.#layer,
      clock,
      timers,
      log: this.#log,
      contact: `<sip:jitcast@${hostPart}:${port}>`,
      viaSentBy: `${hostPart}:${port}`,
      userAgent: opts.userAgent ?? 'jitcast',
      reinviteTimeoutMs: opts.reinviteTimeoutMs ?? 1000,
      count2xxRetransmission: () => void this.#counters.retransmitted2xx++,
      forget: (call) => this.#forget(call),
      trackInvite: (key, call) => void this.#invites.set(key, call),
      untrackInvite: (key) => void this.#invites.delete(key),
    };
    transport.on('message', (buf, from) => this.#onDatagram(buf, from));
  }

  /** Bind the UDP socket and start answering; rejects if the port is taken. */
  static async listen(opts: SipUserAgentOptions): Promise<SipUserAgent> {
    const transport = await UdpTransport.open(opts.host, opts.port, opts.logger);
    return new SipUserAgent(transport, opts);
  }

  /** Where the UA listens. */
  get address(): { host: string; port: number } {
    return this.#transport.address;
  }

  /** Counters and table sizes (dialogs and transactions drop to 0 once calls and timers end). */
  stats(): SipUserAgentStats {
    return { ...this.#counters, dialogs: this.#dialogs.size, transactions: this.#layer.size };
  }

  /** Stop: calls get a best-effort BYE (or 503 if unanswered), timers stop, the socket closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const call of [...this.#dialogs.values()]) call.abort();
      this.#dialogs.clear();
      this.#invites.clear();
      this.#layer.close();
      await this.#transport.close();
    })();
    return this.#closing;
  }

  #forget(call: InboundCall): void {
    this.#dialogs.delete(call.dialogKey);
    for (const [key, c] of this.#invites) if (c === call) this.#invites.delete(key);
  }

  #onDatagram(buf: Buffer, from: Endpoint): void {
    this.#counters.datagrams++;
    // RFC 5626 §4.4.1 keep-alives (CRLF) and stray whitespace are not messages.
    if (buf.every((b) => b === 0x0d || b === 0x0a || b === 0x20)) return;
    let msg;
    try {
      msg = parseSip(buf);
    } catch (err) {
      this.#malformed(buf, from, (err as Error).message);
      return;
    }
    try {
      if (msg.kind === 'response') {
        this.#counters.responses++;
        if (!this.#layer.receiveResponse(msg)) {
          this.#log.debug(`stray response dropped [status:${msg.status} call:${msg.headers.get('Call-ID')}]`);
        }
        return;
      }
      this.#counters.requests++;
      this.#onRequest(msg, from);
    } catch (err) {
      this.#log.warn(`request handling failed [from:${from.address}:${from.port} ${(err as Error).stack ?? err}]`);
    }
  }

  #malformed(buf: Buffer, from: Endpoint, reason: string): void {
    this.#counters.malformed++;
    const where = `${from.address}:${from.port}`;
    this.#log.info(`malformed datagram [from:${where} bytes:${buf.length} ${reason}]`);
    try {
      this.emit('message-error', { from: where, reason });
    } catch (err) {
      this.#log.warn(`'message-error' listener threw [${(err as Error).message}]`);
    }
    const res = badRequestFor(buf, reason, { server: this.#host.userAgent, toTag: newTag });
    if (res) this.#layer.sendRaw(res, from);
  }

  #reply(key: string, req: SipRequest, status: number, extra: Array<[string, string]> = [], toTag?: string): void {
    const opts: Parameters<typeof makeResponse>[3] = { headers: [['Server', this.#host.userAgent], ...extra] };
    opts.toTag = toTag ?? newTag();
    this.#layer.respond(key, makeResponse(req, status, REASON_PHRASES[status] ?? 'Unknown', opts));
  }

  #findDialog(req: SipRequest): InboundCall | undefined {
    const h = req.headers;
    return this.#dialogs.get(`${h.get('Call-ID')}|${tagOf(h.get('To')) ?? ''}|${tagOf(h.get('From')) ?? ''}`);
  }

  #onRequest(req: SipRequest, from: Endpoint): void {
    // RFC 3261 §18.2.1 and RFC 3581 §4: note where the request really came from.
    const vias = req.headers.getAll('Via');
    const top = parseVia(vias[0]);
    if ('rport' in top.params) {
      top.params.rport = String(from.port);
      top.params.received = from.address;
    } else if (top.host.replace(/^\[|\]$/g, '') !== from.address) {
      top.params.received = from.address;
    }
    vias[0] = formatVia(top);
    req.headers.set('Via', vias.join(', '));

    const key = serverTransactionKey(req);
    const branch = typeof top.params.branch === 'string' ? top.params.branch : '';
    const ctx = `call:${req.headers.get('Call-ID')} branch:${branch}`;

    if (req.method === 'ACK') {
      const tx = this.#layer.findServer(key);
      // RFC 6026 §7.1: in Accepted the ACK (of the 2xx) goes to the TU; otherwise the transaction absorbs it.
      if (tx && !(tx.kind === 'invite-server' && tx.state === 'accepted')) {
        this.#layer.receiveRequest(key, req);
        return;
      }
      const call = this.#findDialog(req);
      if (call) call.receiveAck(req);
      else this.#log.debug(`ACK for unknown dialog dropped [${ctx}]`);
      return;
    }

    if (this.#layer.findServer(key)) {
      this.#log.debug(`${req.method} retransmitted [${ctx}]`);
      this.#layer.receiveRequest(key, req);
      return;
    }
    this.#layer.createServer(key, req, from);

    // §8.2.2.1: Request-URI scheme.
    if (!/^(sips?|tel):/i.test(req.uri)) return this.#reply(key, req, 416);
    // §8.2.1: method inspection.
    if (!['INVITE', 'BYE', 'CANCEL', 'OPTIONS', 'INFO'].includes(req.method)) {
      return this.#reply(key, req, 405, [['Allow', ALLOWED_METHODS]]);
    }
    if (req.method === 'OPTIONS') {
      // §11.2: the same answer in or out of a dialog.
      return this.#reply(key, req, 200, [
        ['Allow', ALLOWED_METHODS],
        ['Accept', ACCEPTED_BODIES],
        ['Accept-Language', 'en'],
      ]);
    }
    if (req.method === 'CANCEL') return this.#onCancel(key, req, ctx);

    const toTag = tagOf(req.headers.get('To'));
    const call = toTag === undefined ? undefined : this.#findDialog(req);
    if (toTag !== undefined && !call) {
      // §12.2.2: a request in a dialog we do not know.
      return this.#reply(key, req, 481, [], toTag);
    }
    if (toTag === undefined && req.method !== 'INVITE') return this.#reply(key, req, 481);

    // §8.2.2.3: option tags in Require that we do not support (we support none).
    const required = req.headers
      .getAll('Require')
      .flatMap((v) => v.split(','))
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (required.length > 0) return this.#reply(key, req, 420, [['Unsupported', required.join(', ')]], toTag);

    if (call) {
      if (!call.checkSequence(req)) return this.#reply(key, req, 500, [], toTag);
      if (req.method === 'BYE') return call.receiveBye(key, req);
      if (req.method === 'INFO') return call.receiveInfo(key, req);
      return call.receiveReInvite(key, req);
    }
    this.#onInvite(key, req, from, ctx);
  }

  #onCancel(key: string, req: SipRequest, ctx: string): void {
    // §9.2: the CANCEL matches the INVITE server transaction with the same branch.
    const inviteKey = serverTransactionKey(req, 'INVITE');
    const invite = this.#layer.findServer(inviteKey);
    if (!invite) return this.#reply(key, req, 481);
    const call = this.#invites.get(inviteKey);
    this.#log.debug(`CANCEL [${ctx} known:${call !== undefined}]`);
    this.#reply(key, req, 200, [], call?.localTag);
    call?.receiveCancel(inviteKey);
  }

  #onInvite(key: string, req: SipRequest, from: Endpoint, ctx: string): void {
    const contentType = (req.headers.get('Content-Type') ?? '').split(';')[0].trim().toLowerCase();
    if (req.body !== '' && contentType !== 'application/sdp') {
      return this.#reply(key, req, 415, [['Accept', 'application/sdp']]);
    }
    if (req.body === '') {
      // Late offer (§13.2.1, offer in the 2xx) is not supported: the IVR needs the caller's codecs.
      return this.#reply(key, req, 488, [['Warning', '399 jitcast "INVITE without SDP offer not supported"']]);
    }
    this.#reply(key, req, 100, [], undefined);
    const call = new InboundCall(this.#host, req, key, from);
    this.#dialogs.set(call.dialogKey, call);
    this.#invites.set(key, call);
    this.#log.info(`incoming call [${ctx} from:${call.fromUri}]`);
    let handled = false;
    try {
      handled = this.emit('invite', call);
    } catch (err) {
      this.#log.warn(`'invite' listener threw [${ctx} ${(err as Error).message}]`);
      call.reject(500);
      return;
    }
    if (!handled) call.reject(480);
  }
}
