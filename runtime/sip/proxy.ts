/**
 * The front door's SIP proxy over UDP: a stateless proxy (RFC 3261 §16.11) with a short memory.
 *
 * A new INVITE is bound just-in-time to a voice server chosen by `routes.pick()` and forwarded with
 * this proxy's Via on top (branch derived from the incoming branch and the target, §16.11, so a
 * retransmission maps to the same branch), Max-Forwards decremented (§16.6 step 3) and the
 * Request-URI retargeted to the voice server (§16.6 step 6). No Record-Route is added, so the
 * voice server's 2xx Contact takes the ACK and every later request of the dialog straight to it.
 * Responses come back through the proxy: its Via is popped and the response goes to the next Via's
 * received/rport (§16.7 step 3, §18.2.2).
 *
 * For ~32 s (64·T1) the proxy remembers each INVITE by Call-ID + incoming branch → target, so
 * INVITE retransmissions, CANCEL (§9.1) and the ACK of a non-2xx response (§17.1.1.3) go to the
 * same voice server. Two failure cases re-route the call:
 *  - the server does not answer at all: a retransmitted INVITE ≥ `silentMs` after the forward with
 *    no response yet goes to another server;
 *  - the server answers 503 (draining, out of ports): the proxy ACKs the 503 itself and forwards
 *    the INVITE to another server; only when none is left does the caller get a 503, with
 *    Retry-After (§16.7 step 6: a proxy forwards a 503 only when every other target would refuse too).
 * In-dialog requests that still reach the proxy (a UAC that sends its ACK or BYE to the address it
 * dialled) are forwarded by Request-URI, but only to known voice servers: never an open relay.
 */
import { createHash, randomBytes } from 'node:crypto';
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
  serializeSip,
  SipHeaders,
  tagOf,
  type SipRequest,
  type SipResponse,
  type Via,
} from '../../codecs/sip.ts';
import type { Endpoint, Logger } from './transactions.ts';
import { UdpTransport } from './transport.ts';

/** Methods the front door handles (sent in Allow). */
export const PROXY_ALLOWED_METHODS = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO';

/** A voice server to forward to. */
export interface ProxyTarget {
  nodeId: string;
  host: string;
  port: number;
  dataCenter?: string;
  /** True when the call leaves the caller's data center. */
  crossDataCenter?: boolean;
}

/** What the proxy needs from the routing logic (the narrow interface it declares). */
export interface ProxyRoutes {
  /** A voice server for a new call, skipping node IDs already tried; undefined when none can take it. */
  pick(exclude: ReadonlySet<string>): ProxyTarget | undefined;
  /** The node ID when host:port is a voice server the proxy may forward in-dialog requests to. */
  nodeAt(host: string, port: number): string | undefined;
  /** The node refused a call (503) or did not answer in time: route nothing more to it until it reports again. */
  refused(nodeId: string, why: 'refused' | 'silent'): void;
}

/** Options of SipProxy.listen(). */
export interface SipProxyOptions {
  host: string;
  /** UDP port; 0 picks a free one. */
  port: number;
  routes: ProxyRoutes;
  logger?: Logger;
  /** Server header of the proxy's own responses. Default `jitcast-router`. */
  userAgent?: string;
  /** Retry-After (s) of the 503 sent when no voice server can take a call. Default 5. */
  retryAfterS?: number;
  /** A target that has not answered this long (ms) when the caller retransmits is skipped. Default 1000. */
  silentMs?: number;
  /** How long (ms) an INVITE is remembered after its last message. Default 32 000 (64·T1). */
  memoryMs?: number;
  /** Voice servers tried per call at most. Default 3. */
  maxAttempts?: number;
  /** Clock (specs). Default Date.now. */
  now?: () => number;
}

/** Why a call went to a server. */
export type RouteReason = 'new' | 'refused' | 'silent';

/** Events of SipProxy. */
export interface SipProxyEvents {
  /** An INVITE was forwarded to a voice server (first time or re-routed). */
  routed: [info: { callId: string; target: ProxyTarget; attempt: number; reason: RouteReason }];
  /** No voice server could take a call: the caller got 503. */
  unavailable: [info: { callId: string; tried: string[] }];
  /** A datagram that is not a valid SIP message (answered 400 when it had a Via). */
  'message-error': [info: { from: string; reason: string }];
}

/** Counters of SipProxy.stats(). */
export interface SipProxyStats {
  datagrams: number;
  requests: number;
  responses: number;
  malformed: number;
  /** New INVITEs seen (not retransmissions). */
  invites: number;
  /** INVITEs forwarded to a second or third server. */
  rerouted: number;
  /** Calls answered 503 by the proxy (no server). */
  unavailable: number;
  /** INVITEs remembered right now. */
  remembered: number;
}

/** One INVITE transaction as the proxy remembers it. */
interface InviteEntry {
  key: string;
  callId: string;
  /** The INVITE as received (top Via stamped with received/rport). */
  invite: SipRequest;
  target?: ProxyTarget;
  branch?: string;
  /** The forwarded INVITE, kept for retransmissions. */
  wire?: Buffer;
  forwardedUri?: string;
  attempt: number;
  tried: Set<string>;
  sentAt: number;
  /** Any response from the current target. */
  responded: boolean;
  final?: number;
  /** The proxy's own final response (503), re-sent on retransmissions. */
  local?: Buffer;
  /** Branches of abandoned attempts → their targets. */
  abandoned: Map<string, ProxyTarget>;
  expiresAt: number;
}

const noopLogger: Logger = { info() {}, warn() {}, debug() {} };

function hash(s: string, len: number): string {
  return createHash('sha256').update(s).digest('base64url').slice(0, len);
}

/** Where a response goes by a Via (RFC 3261 §18.2.2, RFC 3581 §4). */
export function responseDestination(via: Via): Endpoint {
  const received = typeof via.params.received === 'string' ? via.params.received : undefined;
  const rport = typeof via.params.rport === 'string' && /^\d+$/.test(via.params.rport) ? Number(via.params.rport) : undefined;
  return { address: (received ?? via.host).replace(/^\[|\]$/g, ''), port: rport ?? via.port ?? 5060 };
}

/** Host and port of a sip/sips URI (5060 when absent), or undefined. */
export function uriHostPort(uri: string): { host: string; port: number } | undefined {
  const m = /^sips?:(?:[^@;?>]*@)?(\[[^\]]+\]|[^:;?>]+)(?::(\d+))?/i.exec(uri);
  if (!m) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 5060 };
}

/** The Request-URI with its host and port replaced by the target's (user part and parameters kept). */
export function retarget(uri: string, target: { host: string; port: number }): string {
  const hostPart = target.host.includes(':') ? `[${target.host}]` : target.host;
  const sip = /^(sips?:)(?:([^@;?>]*)@)?(?:\[[^\]]+\]|[^:;?>]+)(?::\d+)?(.*)$/i.exec(uri);
  if (sip) return `${sip[1]}${sip[2] !== undefined ? `${sip[2]}@` : ''}${hostPart}:${target.port}${sip[3]}`;
  // tel:+15551234;phone-context=… → the number as the user part of a sip URI.
  const tel = /^tel:([^;]+)/i.exec(uri);
  return `sip:${tel ? tel[1] : 'jitcast'}@${hostPart}:${target.port}`;
}

/** The stateless front-door proxy. */
export class SipProxy extends EventEmitter<SipProxyEvents> {
  readonly #transport: UdpTransport;
  readonly #routes: ProxyRoutes;
  readonly #log: Logger;
  readonly #ua: string;
  readonly #retryAfterS: number;
  readonly #silentMs: number;
  readonly #memoryMs: number;
  readonly #maxAttempts: number;
  readonly #now: () => number;
  readonly #sentBy: string;
  readonly #host: string;
  readonly #port: number;
  readonly #salt = randomBytes(8).toString('hex');
  readonly #invites = new Map<string, InviteEntry>();
  readonly #byBranch = new Map<string, InviteEntry>();
  readonly #counters = { datagrams: 0, requests: 0, responses: 0, malformed: 0, invites: 0, rerouted: 0, unavailable: 0 };
  readonly #sweep: NodeJS.Timeout;
  #closing: Promise<void> | undefined;

  private constructor(transport: UdpTransport, opts: SipProxyOptions) {
    super();
    this.#transport = transport;
    this.#routes = opts.routes;
    this.#log = opts.logger ?? noopLogger;
    this.#ua = opts.userAgent ?? 'jitcast-router';
    this.#retryAfterS = opts.retryAfterS ?? 5;
    this.#silentMs = opts.silentMs ?? 1000;
    this.#memoryMs = opts.memoryMs ?? 32_000;
    this.#maxAttempts = opts.maxAttempts ?? 3;
    this.#now = opts.now ?? Date.now;
    const { host, port } = transport.address;
    this.#host = host;
    this.#port = port;
    this.#sentBy = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    transport.on('message', (buf, from) => this.#onDatagram(buf, from));
    this.#sweep = setInterval(() => this.#forget(), 1000);
    this.#sweep.unref();
  }

  /** Binds the UDP socket and starts proxying; rejects if the port is taken. */
  static async listen(opts: SipProxyOptions): Promise<SipProxy> {
    const transport = await UdpTransport.open(opts.host, opts.port, opts.logger);
    return new SipProxy(transport, opts);
  }

  /** Where the proxy listens. */
  get address(): { host: string; port: number } {
    return { host: this.#host, port: this.#port };
  }

  /** Counters and the size of the INVITE memory. */
  stats(): SipProxyStats {
    return { ...this.#counters, remembered: this.#invites.size };
  }

  /** Stops: forgets every INVITE and closes the socket. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sweep);
      this.#invites.clear();
      this.#byBranch.clear();
      await this.#transport.close();
    })();
    return this.#closing;
  }

  #forget(): void {
    const now = this.#now();
    for (const [key, e] of this.#invites) {
      if (e.expiresAt > now) continue;
      this.#invites.delete(key);
      if (e.branch) this.#byBranch.delete(e.branch);
      for (const b of e.abandoned.keys()) this.#byBranch.delete(b);
    }
  }

  #send(buf: Buffer, to: Endpoint): void {
    this.#transport.send(buf, to);
  }

  #onDatagram(buf: Buffer, from: Endpoint): void {
    this.#counters.datagrams++;
    // RFC 5626 §4.4.1 keep-alives (CRLF) are not messages.
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
        this.#onResponse(msg);
      } else {
        this.#counters.requests++;
        this.#onRequest(msg, from);
      }
    } catch (err) {
      this.#log.warn(`SIP message handling failed [from:${from.address}:${from.port} ${(err as Error).stack ?? err}]`);
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
    // §16.3: a stateless proxy's tag must be the same for a retransmission, hence a hash.
    const res = badRequestFor(buf, reason, { server: this.#ua, toTag: () => hash(buf.toString('latin1'), 10) });
    if (res) this.#send(serializeSip(res), from);
  }

  // ---- responses -------------------------------------------------------------------------

  #isOurs(via: Via): boolean {
    return via.host.replace(/^\[|\]$/g, '').toLowerCase() === this.#host.toLowerCase() && (via.port ?? 5060) === this.#port;
  }

  #onResponse(res: SipResponse): void {
    const vias = res.headers.getAll('Via');
    const top = parseVia(vias[0]!);
    if (!this.#isOurs(top)) {
      this.#log.debug(`response not for this proxy dropped [status:${res.status} call:${res.headers.get('Call-ID')}]`);
      return;
    }
    const branch = typeof top.params.branch === 'string' ? top.params.branch : '';
    const entry = this.#byBranch.get(branch);
    if (entry && parseCSeq(res.headers.get('CSeq')!).method === 'INVITE') {
      entry.expiresAt = this.#now() + this.#memoryMs;
      const old = entry.abandoned.get(branch);
      if (old) {
        // An attempt already given up on: close what it opened, forward nothing.
        if (res.status >= 300) this.#ackDownstream(entry, res, old, branch);
        else if (res.status >= 200) this.#releaseLate(res, old);
        return;
      }
      if (entry.local) {
        // The caller already has the proxy's own 503: absorb this server's final answer.
        if (res.status >= 300 && entry.target) this.#ackDownstream(entry, res, entry.target, branch);
        else if (res.status >= 200 && entry.target) this.#releaseLate(res, entry.target);
        return;
      }
      entry.responded = true;
      if (res.status === 503 && entry.final === undefined && entry.target) {
        const target = entry.target;
        this.#ackDownstream(entry, res, target, branch);
        this.#routes.refused(target.nodeId, 'refused');
        this.#log.info(`voice server refused the call, trying another [call:${entry.callId} node:${target.nodeId}]`);
        if (entry.attempt < this.#maxAttempts && this.#forwardInvite(entry, 'refused')) return;
        this.#answerLocally(entry);
        return;
      }
      if (res.status >= 200) entry.final = res.status;
    }
    vias.shift();
    if (vias.length === 0) return; // a response to a request the proxy made itself (late BYE)
    res.headers.delete('Via');
    for (const v of vias) res.headers.append('Via', v);
    this.#send(serializeSip(res), responseDestination(parseVia(vias[0]!)));
  }

  /** ACK for a non-2xx final response to a forwarded INVITE (§17.1.1.3: same branch, one Via). */
  #ackDownstream(entry: InviteEntry, res: SipResponse, target: ProxyTarget, branch: string): void {
    const h = new SipHeaders();
    h.append('Via', `SIP/2.0/UDP ${this.#sentBy};branch=${branch};rport`);
    h.append('Max-Forwards', '70');
    h.append('From', entry.invite.headers.get('From')!);
    h.append('To', res.headers.get('To')!);
    h.append('Call-ID', entry.callId);
    h.append('CSeq', `${parseCSeq(entry.invite.headers.get('CSeq')!).seq} ACK`);
    h.append('Content-Length', '0');
    const uri = retarget(entry.invite.uri, target);
    this.#send(serializeSip({ kind: 'request', method: 'ACK', uri, headers: h, body: '' }), { address: target.host, port: target.port });
  }

  /** A 2xx from an attempt already given up on: ACK it and hang it up, so the server frees its port. */
  #releaseLate(res: SipResponse, target: ProxyTarget): void {
    const contact = res.headers.get('Contact');
    const uri = contact && contact !== '*' ? parseNameAddr(contact).uri : `sip:jitcast@${target.host}:${target.port}`;
    const seq = parseCSeq(res.headers.get('CSeq')!).seq;
    for (const [method, n] of [['ACK', seq], ['BYE', seq + 1]] as const) {
      const h = new SipHeaders();
      h.append('Via', `SIP/2.0/UDP ${this.#sentBy};branch=z9hG4bK${randomBytes(9).toString('base64url')};rport`);
      h.append('Max-Forwards', '70');
      h.append('From', res.headers.get('From')!);
      h.append('To', res.headers.get('To')!);
      h.append('Call-ID', res.headers.get('Call-ID')!);
      h.append('CSeq', `${n} ${method}`);
      h.append('Content-Length', '0');
      this.#send(serializeSip({ kind: 'request', method, uri, headers: h, body: '' }), { address: target.host, port: target.port });
    }
    this.#log.info(`late answer from an abandoned attempt hung up [call:${res.headers.get('Call-ID')} node:${target.nodeId}]`);
  }

  // ---- requests --------------------------------------------------------------------------

  /** §16.11: the same incoming transaction and target always give the same branch. */
  #branchFor(key: string, nodeId: string, attempt: number): string {
    return `z9hG4bKjr${hash(`${this.#salt}|${key}|${nodeId}|${attempt}`, 22)}`;
  }

  /** Key of the incoming transaction: Call-ID + branch (+ sent-by), or the RFC 2543 fields (§17.2.3); the same for INVITE, its CANCEL and its non-2xx ACK. */
  #txKey(req: SipRequest, top: Via): string {
    const callId = req.headers.get('Call-ID')!;
    const branch = typeof top.params.branch === 'string' ? top.params.branch : '';
    const sentBy = `${top.host}:${top.port ?? 5060}`;
    if (branch.startsWith('z9hG4bK')) return `${callId}|${branch}|${sentBy}`;
    const cseq = parseCSeq(req.headers.get('CSeq')!).seq;
    return `2543|${callId}|${tagOf(req.headers.get('From')) ?? ''}|${cseq}|${sentBy}|${branch}|${req.uri}`;
  }

  #onRequest(req: SipRequest, from: Endpoint): void {
    // §18.2.1, RFC 3581 §4: note where the request really came from, so responses find their way back.
    const vias = req.headers.getAll('Via');
    const top = parseVia(vias[0]!);
    if ('rport' in top.params) {
      top.params.rport = String(from.port);
      top.params.received = from.address;
    } else if (top.host.replace(/^\[|\]$/g, '') !== from.address) {
      top.params.received = from.address;
    }
    vias[0] = formatVia(top);
    req.headers.delete('Via');
    for (const v of vias) req.headers.append('Via', v);

    const mf = req.headers.get('Max-Forwards');
    if (req.method === 'ACK') {
      if (mf !== '0') this.#onAck(req, top);
      return;
    }
    // §16.3: request validation.
    if (!/^(sips?|tel):/i.test(req.uri)) return this.#reply(req, 416);
    if (vias.some((v) => this.#isOurs(parseVia(v)))) return this.#reply(req, 482); // §16.3 step 4
    const proxyRequire = req.headers.getAll('Proxy-Require').flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
    if (proxyRequire.length > 0) return this.#reply(req, 420, [['Unsupported', proxyRequire.join(', ')]]);

    const hp = uriHostPort(req.uri);
    const nodeId = hp ? this.#routes.nodeAt(hp.host, hp.port) : undefined;
    const toTag = tagOf(req.headers.get('To'));
    if (req.method === 'OPTIONS' && nodeId === undefined) {
      // §11.2: OPTIONS addressed to the front door itself (Max-Forwards 0 included, §16.3 step 3).
      return this.#reply(req, 200, [['Allow', PROXY_ALLOWED_METHODS], ['Accept', 'application/sdp']]);
    }
    if (mf === '0') return this.#reply(req, 483);
    if (req.method === 'INVITE' && toTag === undefined) return this.#onNewInvite(req, top);
    if (req.method === 'CANCEL') return this.#onCancel(req, top, nodeId);
    if (nodeId !== undefined && hp) return this.#forwardByUri(req, top, nodeId, hp);
    if (toTag !== undefined) return this.#reply(req, 481);
    return this.#reply(req, 405, [['Allow', PROXY_ALLOWED_METHODS]]);
  }

  /** A response of the proxy's own, to the sender of the request (stateless: same request, same bytes). */
  #reply(req: SipRequest, status: number, extra: Array<[string, string]> = []): void {
    this.#send(serializeSip(this.#response(req, status, extra)), responseDestination(parseVia(req.headers.get('Via')!)));
  }

  #response(req: SipRequest, status: number, extra: Array<[string, string]>): SipResponse {
    const top = parseVia(req.headers.get('Via')!);
    const toTag = hash(`${this.#salt}|${this.#txKey(req, top)}`, 12);
    return makeResponse(req, status, REASON_PHRASES[status] ?? 'Unknown', { toTag, headers: [['Server', this.#ua], ...extra] });
  }

  /** Copy of a request to forward (§16.6): our Via on top, Max-Forwards decremented, Request-URI as given. */
  #forwardCopy(req: SipRequest, branch: string, uri: string): Buffer {
    const h = req.headers.clone();
    const mf = h.get('Max-Forwards');
    h.set('Max-Forwards', String(mf === undefined ? 70 : Number(mf) - 1));
    h.prepend('Via', `SIP/2.0/UDP ${this.#sentBy};branch=${branch};rport`);
    return serializeSip({ kind: 'request', method: req.method, uri, headers: h, body: req.body });
  }

  #onNewInvite(req: SipRequest, top: Via): void {
    const key = this.#txKey(req, top);
    const now = this.#now();
    const known = this.#invites.get(key);
    if (known) {
      known.expiresAt = now + this.#memoryMs;
      if (known.local) return this.#send(known.local, responseDestination(top));
      if (!known.responded && known.target && now - known.sentAt >= this.#silentMs && known.attempt < this.#maxAttempts) {
        const silent = known.target;
        this.#routes.refused(silent.nodeId, 'silent');
        this.#log.warn(`voice server silent for ${now - known.sentAt} ms, re-routing [call:${known.callId} node:${silent.nodeId}]`);
        if (this.#forwardInvite(known, 'silent')) return;
      }
      if (known.wire && known.target) this.#send(known.wire, { address: known.target.host, port: known.target.port });
      return;
    }
    this.#counters.invites++;
    const entry: InviteEntry = {
      key,
      callId: req.headers.get('Call-ID')!,
      invite: req,
      attempt: 0,
      tried: new Set(),
      sentAt: now,
      responded: false,
      abandoned: new Map(),
      expiresAt: now + this.#memoryMs,
    };
    this.#invites.set(key, entry);
    if (!this.#forwardInvite(entry, 'new')) this.#answerLocally(entry);
  }

  /** Forwards the INVITE to the next server; false when none can take it. */
  #forwardInvite(entry: InviteEntry, reason: RouteReason): boolean {
    const target = this.#routes.pick(entry.tried);
    if (!target) return false;
    if (entry.branch && entry.target) entry.abandoned.set(entry.branch, entry.target);
    if (reason !== 'new') this.#counters.rerouted++;
    entry.attempt += 1;
    entry.target = target;
    entry.tried.add(target.nodeId);
    entry.branch = this.#branchFor(entry.key, target.nodeId, entry.attempt);
    entry.forwardedUri = retarget(entry.invite.uri, target);
    entry.wire = this.#forwardCopy(entry.invite, entry.branch, entry.forwardedUri);
    entry.responded = false;
    entry.sentAt = this.#now();
    this.#byBranch.set(entry.branch, entry);
    this.#send(entry.wire, { address: target.host, port: target.port });
    try {
      this.emit('routed', { callId: entry.callId, target, attempt: entry.attempt, reason });
    } catch (err) {
      this.#log.warn(`'routed' listener threw [${(err as Error).message}]`);
    }
    return true;
  }

  /** No server can take the call: 503 with Retry-After from the proxy, re-sent on retransmissions. */
  #answerLocally(entry: InviteEntry): void {
    this.#counters.unavailable++;
    const res = this.#response(entry.invite, 503, [
      ['Retry-After', String(this.#retryAfterS)],
      ['Warning', '399 jitcast "no voice server can take the call now"'],
    ]);
    entry.final = 503;
    entry.local = serializeSip(res);
    this.#send(entry.local, responseDestination(parseVia(entry.invite.headers.get('Via')!)));
    try {
      this.emit('unavailable', { callId: entry.callId, tried: [...entry.tried] });
    } catch (err) {
      this.#log.warn(`'unavailable' listener threw [${(err as Error).message}]`);
    }
  }

  #onCancel(req: SipRequest, top: Via, nodeId: string | undefined): void {
    const entry = this.#invites.get(this.#txKey(req, top));
    if (!entry) {
      // The CANCEL of an in-dialog re-INVITE forwarded statelessly: same key, same branch.
      const hp = uriHostPort(req.uri);
      if (nodeId !== undefined && hp) return this.#forwardByUri(req, top, nodeId, hp);
      return this.#reply(req, 481);
    }
    entry.expiresAt = this.#now() + this.#memoryMs;
    if (entry.local || !entry.target || !entry.branch || !entry.forwardedUri) return this.#reply(req, 200);
    // §9.1, §16.10: same Request-URI and branch as the INVITE it cancels, to the same server.
    this.#send(this.#forwardCopy(req, entry.branch, entry.forwardedUri), { address: entry.target.host, port: entry.target.port });
  }

  #onAck(req: SipRequest, top: Via): void {
    const entry = this.#invites.get(this.#txKey(req, top));
    if (entry) {
      entry.expiresAt = this.#now() + this.#memoryMs;
      if (entry.local) return; // the ACK of the proxy's own 503
      if (entry.target && entry.branch && entry.forwardedUri && entry.final !== undefined && entry.final >= 300) {
        // §17.1.1.3: the ACK of a non-2xx goes where the INVITE went, in its transaction.
        this.#send(this.#forwardCopy(req, entry.branch, entry.forwardedUri), { address: entry.target.host, port: entry.target.port });
        return;
      }
    }
    // The ACK of a 2xx sent here rather than to the Contact: forward by Request-URI.
    const hp = uriHostPort(req.uri);
    const nodeId = hp ? this.#routes.nodeAt(hp.host, hp.port) : undefined;
    if (nodeId !== undefined && hp) this.#forwardByUri(req, top, nodeId, hp);
    else this.#log.debug(`ACK for no known transaction dropped [call:${req.headers.get('Call-ID')}]`);
  }

  /** Stateless forward of an in-dialog request to the voice server its Request-URI names (§16.11). */
  #forwardByUri(req: SipRequest, top: Via, nodeId: string, hp: { host: string; port: number }): void {
    const branch = this.#branchFor(this.#txKey(req, top), nodeId, 0);
    this.#send(this.#forwardCopy(req, branch, req.uri), { address: hp.host, port: hp.port });
  }
}
