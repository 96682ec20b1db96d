/**
 * SIP transactions over an unreliable transport (RFC 3261 §17, with the INVITE server
 * "Accepted" state of RFC 6026 §7.1). Each machine is pure: it takes an input (a message, a
 * response from the TU, a fired timer) and returns actions; TransactionLayer runs the actions
 * with real timers and a send function.
 */
import { parseCSeq, parseVia, serializeSip, type SipMessage, type SipRequest, type SipResponse } from '../../codecs/sip.ts';

/** Timer base values in ms (RFC 3261 §17.1.1.1, table 4). */
export interface TimerConfig {
  /** RTT estimate. Default 500. */
  T1: number;
  /** Longest retransmit interval of non-INVITE requests and INVITE responses. Default 4000. */
  T2: number;
  /** Longest time a message stays in the network. Default 5000. */
  T4: number;
}

/** RFC 3261 defaults. */
export const DEFAULT_TIMERS: TimerConfig = { T1: 500, T2: 4000, T4: 5000 };

/** Timer names of RFC 3261 §17 (table 4) plus L of RFC 6026. */
export type TimerName = 'E' | 'F' | 'G' | 'H' | 'I' | 'J' | 'K' | 'L';

/** What a machine asks its adapter to do. */
export type TxAction =
  | { kind: 'send'; message: SipMessage }
  | { kind: 'start-timer'; timer: TimerName; ms: number }
  | { kind: 'stop-timer'; timer: TimerName }
  /** Client: a response for the TU. */
  | { kind: 'deliver'; response: SipResponse }
  /** Client: Timer F fired (§17.1.2.2); server: Timer H fired without ACK (§17.2.1). */
  | { kind: 'timeout' }
  | { kind: 'terminated' };

/** State of an INVITE server transaction (§17.2.1, RFC 6026 §7.1). */
export type InviteServerState = 'proceeding' | 'accepted' | 'completed' | 'confirmed' | 'terminated';

/** INVITE server transaction (RFC 3261 §17.2.1, figure 7, as amended by RFC 6026 figure 5). */
export class InviteServerTransaction {
  readonly kind = 'invite-server';
  state: InviteServerState = 'proceeding';
  lastResponse: SipResponse | undefined;
  #g = 0;

  constructor(readonly request: SipRequest, readonly timers: TimerConfig) {}

  /** A retransmitted INVITE, or the ACK of a non-2xx final response. */
  receive(req: SipRequest): TxAction[] {
    if (req.method === 'ACK') {
      if (this.state !== 'completed') return [];
      // §17.2.1: ACK → Confirmed; Timer I absorbs further ACKs (T4 over UDP).
      this.state = 'confirmed';
      return [
        { kind: 'stop-timer', timer: 'G' },
        { kind: 'stop-timer', timer: 'H' },
        { kind: 'start-timer', timer: 'I', ms: this.timers.T4 },
      ];
    }
    // Retransmitted INVITE: re-send the last provisional (Proceeding) or final (Completed);
    // RFC 6026 §7.1: absorbed in Accepted, where the TU retransmits the 2xx itself.
    if ((this.state === 'proceeding' || this.state === 'completed') && this.lastResponse) {
      return [{ kind: 'send', message: this.lastResponse }];
    }
    return [];
  }

  /** A response from the TU. */
  respond(res: SipResponse): TxAction[] {
    if (this.state === 'accepted' && res.status >= 200 && res.status < 300) {
      // RFC 6026 §7.1: 2xx retransmissions from the TU pass through.
      return [{ kind: 'send', message: res }];
    }
    if (this.state !== 'proceeding') return [];
    this.lastResponse = res;
    if (res.status < 200) return [{ kind: 'send', message: res }];
    if (res.status < 300) {
      this.state = 'accepted';
      return [{ kind: 'send', message: res }, { kind: 'start-timer', timer: 'L', ms: 64 * this.timers.T1 }];
    }
    this.state = 'completed';
    this.#g = this.timers.T1;
    return [
      { kind: 'send', message: res },
      { kind: 'start-timer', timer: 'G', ms: this.#g },
      { kind: 'start-timer', timer: 'H', ms: 64 * this.timers.T1 },
    ];
  }

  /** A timer fired. */
  fire(timer: TimerName): TxAction[] {
    if (timer === 'G' && this.state === 'completed' && this.lastResponse) {
      // §17.2.1: retransmit, doubling the interval up to T2.
      this.#g = Math.min(2 * this.#g, this.timers.T2);
      return [{ kind: 'send', message: this.lastResponse }, { kind: 'start-timer', timer: 'G', ms: this.#g }];
    }
    if (timer === 'H' && this.state === 'completed') {
      this.state = 'terminated';
      return [{ kind: 'timeout' }, { kind: 'terminated' }];
    }
    if ((timer === 'I' && this.state === 'confirmed') || (timer === 'L' && this.state === 'accepted')) {
      this.state = 'terminated';
      return [{ kind: 'terminated' }];
    }
    return [];
  }
}

/** State of a non-INVITE server transaction (§17.2.2). */
export type NonInviteServerState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** Non-INVITE server transaction (RFC 3261 §17.2.2, figure 8). */
export class NonInviteServerTransaction {
  readonly kind = 'non-invite-server';
  state: NonInviteServerState = 'trying';
  lastResponse: SipResponse | undefined;

  constructor(readonly request: SipRequest, readonly timers: TimerConfig) {}

  /** A retransmission of the request: absorbed in Trying, answered with the last response later. */
  receive(_req: SipRequest): TxAction[] {
    if ((this.state === 'proceeding' || this.state === 'completed') && this.lastResponse) {
      return [{ kind: 'send', message: this.lastResponse }];
    }
    return [];
  }

  /** A response from the TU. */
  respond(res: SipResponse): TxAction[] {
    if (this.state !== 'trying' && this.state !== 'proceeding') return [];
    this.lastResponse = res;
    if (res.status < 200) {
      this.state = 'proceeding';
      return [{ kind: 'send', message: res }];
    }
    // §17.2.2: Completed keeps the final response for retransmissions until Timer J (64·T1).
    this.state = 'completed';
    return [{ kind: 'send', message: res }, { kind: 'start-timer', timer: 'J', ms: 64 * this.timers.T1 }];
  }

  /** A timer fired. */
  fire(timer: TimerName): TxAction[] {
    if (timer === 'J' && this.state === 'completed') {
      this.state = 'terminated';
      return [{ kind: 'terminated' }];
    }
    return [];
  }
}

/** State of a non-INVITE client transaction (§17.1.2). */
export type NonInviteClientState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** Non-INVITE client transaction (RFC 3261 §17.1.2, figure 6). */
export class NonInviteClientTransaction {
  readonly kind = 'non-invite-client';
  state: NonInviteClientState = 'trying';
  #e = 0;

  constructor(readonly request: SipRequest, readonly timers: TimerConfig) {}

  /** Send the request and arm Timers E and F. */
  start(): TxAction[] {
    this.#e = this.timers.T1;
    return [
      { kind: 'send', message: this.request },
      { kind: 'start-timer', timer: 'E', ms: this.#e },
      { kind: 'start-timer', timer: 'F', ms: 64 * this.timers.T1 },
    ];
  }

  /** A response matched to this transaction (§17.1.3). */
  receive(res: SipResponse): TxAction[] {
    if (this.state !== 'trying' && this.state !== 'proceeding') return [];
    if (res.status < 200) {
      this.state = 'proceeding';
      return [{ kind: 'deliver', response: res }];
    }
    this.state = 'completed';
    return [
      { kind: 'stop-timer', timer: 'E' },
      { kind: 'stop-timer', timer: 'F' },
      { kind: 'deliver', response: res },
      // §17.1.2.2: Timer K (T4 over UDP) absorbs retransmitted responses.
      { kind: 'start-timer', timer: 'K', ms: this.timers.T4 },
    ];
  }

  /** A timer fired. */
  fire(timer: TimerName): TxAction[] {
    if (timer === 'E' && (this.state === 'trying' || this.state === 'proceeding')) {
      // §17.1.2.2: doubling up to T2 in Trying, T2 flat in Proceeding.
      this.#e = this.state === 'trying' ? Math.min(2 * this.#e, this.timers.T2) : this.timers.T2;
      return [{ kind: 'send', message: this.request }, { kind: 'start-timer', timer: 'E', ms: this.#e }];
    }
    if (timer === 'F' && (this.state === 'trying' || this.state === 'proceeding')) {
      this.state = 'terminated';
      return [{ kind: 'stop-timer', timer: 'E' }, { kind: 'timeout' }, { kind: 'terminated' }];
    }
    if (timer === 'K' && this.state === 'completed') {
      this.state = 'terminated';
      return [{ kind: 'terminated' }];
    }
    return [];
  }
}

/** Any server transaction. */
export type ServerTransaction = InviteServerTransaction | NonInviteServerTransaction;

/** A UDP peer. */
export interface Endpoint {
  address: string;
  port: number;
}

/** Timer functions; specs may hand in a fake. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. */
export const systemClock: Clock = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Key of a server transaction (RFC 3261 §17.2.3): top Via branch + sent-by + method, with ACK
 * matching its INVITE. Requests without an RFC 3261 branch (no z9hG4bK) fall back to the §17.2.3
 * RFC 2543 rule approximated by Call-ID + From tag + CSeq number.
 */
export function serverTransactionKey(req: SipRequest, method = req.method === 'ACK' ? 'INVITE' : req.method): string {
  const via = parseVia(req.headers.get('Via')!);
  const branch = typeof via.params.branch === 'string' ? via.params.branch : '';
  const sentBy = `${via.host}:${via.port ?? 5060}`;
  if (branch.startsWith('z9hG4bK')) return `${branch}|${sentBy}|${method}`;
  const cseq = parseCSeq(req.headers.get('CSeq')!);
  return `2543|${req.headers.get('Call-ID')}|${req.headers.get('From')}|${cseq.seq}|${sentBy}|${branch}|${method}`;
}

/** Key of a client transaction (§17.1.3): top Via branch + CSeq method. */
export function clientTransactionKey(msg: SipMessage): string {
  const via = parseVia(msg.headers.get('Via')!);
  const branch = typeof via.params.branch === 'string' ? via.params.branch : '';
  return `${branch}|${parseCSeq(msg.headers.get('CSeq')!).method}`;
}

type Machine = ServerTransaction | NonInviteClientTransaction;

interface Entry {
  key: string;
  machine: Machine;
  remote: Endpoint;
  timers: Map<TimerName, unknown>;
  onDone?: (res: SipResponse | undefined) => void;
  onTimeout?: () => void;
}

/** Minimal logger. */
export interface Logger {
  info(...a: unknown[]): void;
  warn(...a: unknown[]): void;
  debug(...a: unknown[]): void;
}

/** Runs transaction machines: real timers, sending, and the server/client transaction tables. */
export class TransactionLayer {
  readonly #servers = new Map<string, Entry>();
  readonly #clients = new Map<string, Entry>();
  readonly #wire = new WeakMap<SipMessage, Buffer>();
  readonly #send: (buf: Buffer, to: Endpoint) => void;
  readonly #clock: Clock;
  readonly #log: Logger | undefined;
  #closed = false;

  constructor(opts: { send: (buf: Buffer, to: Endpoint) => void; timers: TimerConfig; clock?: Clock; logger?: Logger }) {
    this.#send = opts.send;
    this.timers = opts.timers;
    this.#clock = opts.clock ?? systemClock;
    this.#log = opts.logger;
  }

  /** Timer values in use. */
  readonly timers: TimerConfig;

  /** Number of live transactions (server + client). */
  get size(): number {
    return this.#servers.size + this.#clients.size;
  }

  /** The server transaction a request belongs to, if any. */
  findServer(key: string): ServerTransaction | undefined {
    return this.#servers.get(key)?.machine as ServerTransaction | undefined;
  }

  /** Create the server transaction of a new request (not for ACK). */
  createServer(key: string, req: SipRequest, remote: Endpoint, onTimeout?: () => void): ServerTransaction {
    const machine =
      req.method === 'INVITE' ? new InviteServerTransaction(req, this.timers) : new NonInviteServerTransaction(req, this.timers);
    const entry: Entry = { key, machine, remote, timers: new Map() };
    if (onTimeout) entry.onTimeout = onTimeout;
    this.#servers.set(key, entry);
    return machine;
  }

  /** Hand a retransmitted request or a non-2xx ACK to its server transaction. */
  receiveRequest(key: string, req: SipRequest): boolean {
    const entry = this.#servers.get(key);
    if (!entry) return false;
    this.#run(entry, (entry.machine as ServerTransaction).receive(req));
    return true;
  }

  /** Send a response through a server transaction. */
  respond(key: string, res: SipResponse): void {
    const entry = this.#servers.get(key);
    if (!entry) {
      this.#log?.debug(`response ${res.status} for a finished transaction dropped [key:${key}]`);
      return;
    }
    this.#run(entry, (entry.machine as ServerTransaction).respond(res));
  }

  /**
   * Send a non-INVITE request through a client transaction; resolves with the final response,
   * or undefined on Timer F timeout or close().
   */
  request(req: SipRequest, remote: Endpoint): Promise<SipResponse | undefined> {
    return new Promise((resolve) => {
      if (this.#closed) return resolve(undefined);
      const key = clientTransactionKey(req);
      const machine = new NonInviteClientTransaction(req, this.timers);
      const entry: Entry = { key, machine, remote, timers: new Map(), onDone: resolve };
      this.#clients.set(key, entry);
      this.#run(entry, machine.start());
    });
  }

  /** Match a response to a client transaction (§17.1.3); false when none matches. */
  receiveResponse(res: SipResponse): boolean {
    const entry = this.#clients.get(clientTransactionKey(res));
    if (!entry) return false;
    this.#run(entry, (entry.machine as NonInviteClientTransaction).receive(res));
    return true;
  }

  /** Send a message outside any transaction (2xx retransmissions, ACK-less replies). */
  sendRaw(msg: SipMessage, to: Endpoint): void {
    if (!this.#closed) this.#send(this.#bytes(msg), to);
  }

  /** Stop every timer and drop every transaction; pending requests resolve undefined. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const table of [this.#servers, this.#clients]) {
      for (const entry of table.values()) {
        for (const h of entry.timers.values()) this.#clock.clearTimeout(h);
        entry.onDone?.(undefined);
      }
      table.clear();
    }
  }

  #bytes(msg: SipMessage): Buffer {
    let buf = this.#wire.get(msg);
    if (!buf) {
      buf = serializeSip(msg);
      this.#wire.set(msg, buf);
    }
    return buf;
  }

  #run(entry: Entry, actions: TxAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'send':
          if (!this.#closed) this.#send(this.#bytes(a.message), entry.remote);
          break;
        case 'start-timer': {
          const old = entry.timers.get(a.timer);
          if (old !== undefined) this.#clock.clearTimeout(old);
          const handle = this.#clock.setTimeout(() => {
            entry.timers.delete(a.timer);
            if (this.#closed) return;
            this.#run(entry, entry.machine.fire(a.timer));
          }, a.ms);
          entry.timers.set(a.timer, handle);
          break;
        }
        case 'stop-timer': {
          const h = entry.timers.get(a.timer);
          if (h !== undefined) this.#clock.clearTimeout(h);
          entry.timers.delete(a.timer);
          break;
        }
        case 'deliver':
          if (a.response.status >= 200) {
            const done = entry.onDone;
            entry.onDone = undefined;
            done?.(a.response);
          }
          break;
        case 'timeout': {
          this.#log?.debug(`transaction timed out [key:${entry.key}]`);
          entry.onTimeout?.();
          const done = entry.onDone;
          entry.onDone = undefined;
          done?.(undefined);
          break;
        }
        case 'terminated':
          for (const h of entry.timers.values()) this.#clock.clearTimeout(h);
          entry.timers.clear();
          if (entry.machine.kind === 'non-invite-client') this.#clients.delete(entry.key);
          else this.#servers.delete(entry.key);
          break;
      }
    }
  }
}
