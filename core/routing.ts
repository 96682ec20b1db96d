/**
 * Just-in-time call routing of the `sip-router` front door (issue 3 item 3; the patent's automatic
 * routing): from the voice servers' broadcast statuses, pick the one that takes the next call.
 *
 * - Only servers heard within the heartbeat timeout, healthy, `in-service` and with a free port
 *   are candidates (suspended, maintenance and out-of-service ones are skipped).
 * - The caller's data center (the front door's own) first; another data center only when the
 *   caller's has no candidate.
 * - Among candidates the most free ports wins (balance by free ports); ties go to fewer busy
 *   channels, then to the node ID, so a choice is reproducible.
 * - Free ports are counted net of the calls this router sent since the status was made, and a
 *   server that would fall below its suspend threshold with one more call is skipped as the
 *   server itself would suspend, so a burst between two heartbeats does not overrun one server.
 * Pure: `now` comes from the caller; no sockets, timers or broker.
 */
import type { VoiceStatus } from '../runtime/contracts.ts';

/** One voice server as the router knows it. */
export interface RouteCandidate {
  status: VoiceStatus;
  /** When its last status arrived (router clock, ms). */
  heardAt: number;
  /** Calls routed to it that its status may not count yet. */
  pending: number;
  /** False after a failed health test (monitoring) until a passing one. */
  healthy: boolean;
  /** Set when it refused a call (503) or did not answer; cleared by its next status. */
  refused: boolean;
}

/** What chooseVoiceServer() decides. */
export interface RouteChoice {
  nodeId: string;
  dataCenter: string;
  sip: { host: string; port: number };
  /** True when the call leaves the caller's data center (fall-over). */
  crossDataCenter: boolean;
  /** Free ports counted for the choice. */
  freePorts: number;
}

/** Options of chooseVoiceServer(). */
export interface RouteOptions {
  /** The caller's data center (the front door's). */
  dataCenter: string;
  now: number;
  /** A status older than this (ms) no longer counts: the server is treated as gone. */
  timeoutMs: number;
  /** Node IDs already tried for this call. */
  exclude?: ReadonlySet<string>;
}

/** Free ports net of calls routed since the status. */
export function freePorts(c: RouteCandidate): number {
  return c.status.ports.available - c.pending;
}

/** Why a candidate cannot take a call now, or undefined when it can. */
export function unavailableBecause(c: RouteCandidate, o: Pick<RouteOptions, 'now' | 'timeoutMs' | 'exclude'>): string | undefined {
  if (o.exclude?.has(c.status.nodeId)) return 'already tried';
  if (o.now - c.heardAt > o.timeoutMs) return 'not heard within the heartbeat timeout';
  if (!c.healthy) return 'failed its health test';
  if (c.refused) return 'refused a call';
  if (c.status.state !== 'in-service') return c.status.state;
  const free = freePorts(c);
  if (free <= 0) return 'no free port';
  const { suspendBelow } = c.status.ports;
  // Once the calls sent since its status have landed, the server will have suspended itself.
  if (suspendBelow > 0 && free < suspendBelow) return 'about to suspend';
  return undefined;
}

function better(a: RouteCandidate, b: RouteCandidate): boolean {
  const fa = freePorts(a);
  const fb = freePorts(b);
  if (fa !== fb) return fa > fb;
  if (a.status.ports.busy !== b.status.ports.busy) return a.status.ports.busy < b.status.ports.busy;
  return a.status.nodeId < b.status.nodeId;
}

/** Picks the voice server for a new call, or undefined when none can take it. */
export function chooseVoiceServer(candidates: Iterable<RouteCandidate>, o: RouteOptions): RouteChoice | undefined {
  let home: RouteCandidate | undefined;
  let away: RouteCandidate | undefined;
  for (const c of candidates) {
    if (unavailableBecause(c, o) !== undefined) continue;
    if (c.status.dataCenter === o.dataCenter) {
      if (!home || better(c, home)) home = c;
    } else if (!away || better(c, away)) {
      away = c;
    }
  }
  const pick = home ?? away;
  if (!pick) return undefined;
  return {
    nodeId: pick.status.nodeId,
    dataCenter: pick.status.dataCenter,
    sip: { ...pick.status.sip },
    crossDataCenter: pick.status.dataCenter !== o.dataCenter,
    freePorts: freePorts(pick),
  };
}

/** Options of RoutingTable. */
export interface RoutingTableOptions {
  /** A server not heard for this long (ms) is dropped. */
  timeoutMs: number;
  /**
   * A call routed this recently (ms) still counts as pending after a new status arrives: the
   * status may have been made before the INVITE reached the server. Default 100.
   */
  pendingGraceMs?: number;
  /** How long a voice server's SIP address stays known for in-dialog requests after its last status (ms). Default 1 h. */
  rememberAddressMs?: number;
}

interface Entry {
  status: VoiceStatus;
  heardAt: number;
  routedAt: number[];
  healthy: boolean;
  refused: boolean;
}

/** The router's table of voice-server statuses; every method is pure given `now`. */
export class RoutingTable {
  readonly #entries = new Map<string, Entry>();
  /** `host:port` → last heard, for in-dialog requests to servers that are draining or just gone quiet. */
  readonly #addresses = new Map<string, { nodeId: string; heardAt: number }>();
  /** Verdicts that arrived before the server's first status. */
  readonly #health = new Map<string, boolean>();
  readonly #timeoutMs: number;
  readonly #graceMs: number;
  readonly #rememberMs: number;

  constructor(opts: RoutingTableOptions) {
    this.#timeoutMs = opts.timeoutMs;
    this.#graceMs = opts.pendingGraceMs ?? 100;
    this.#rememberMs = opts.rememberAddressMs ?? 3_600_000;
  }

  /** A status arrived. Returns false when it was older than the one held (dropped). */
  update(status: VoiceStatus, now: number): boolean {
    const old = this.#entries.get(status.nodeId);
    // seq restarts with the process; a lower seq with a newer timestamp is a restarted server.
    if (old && status.seq <= old.status.seq && status.updatedAt <= old.status.updatedAt) return false;
    const routedAt = (old?.routedAt ?? []).filter((t) => now - t < this.#graceMs);
    this.#entries.set(status.nodeId, {
      status,
      heardAt: now,
      routedAt,
      healthy: this.#health.get(status.nodeId) ?? old?.healthy ?? true,
      refused: false,
    });
    this.#addresses.set(addressKey(status.sip.host, status.sip.port), { nodeId: status.nodeId, heardAt: now });
    return true;
  }

  /** Forgets a node at once (it left the cluster, or said it is out of service). */
  remove(nodeId: string): boolean {
    return this.#entries.delete(nodeId);
  }

  /** A health verdict from monitoring. */
  setHealth(nodeId: string, healthy: boolean): void {
    this.#health.set(nodeId, healthy);
    const e = this.#entries.get(nodeId);
    if (e) e.healthy = healthy;
  }

  /** A call was routed to the node: count it until a status can have seen it. */
  routed(nodeId: string, now: number): void {
    this.#entries.get(nodeId)?.routedAt.push(now);
  }

  /** The node refused a call or did not answer: no calls until its next status. */
  refuse(nodeId: string): void {
    const e = this.#entries.get(nodeId);
    if (e) e.refused = true;
  }

  /** Drops servers not heard within the timeout; returns their node IDs. */
  expire(now: number): string[] {
    const gone: string[] = [];
    for (const [id, e] of this.#entries) {
      if (now - e.heardAt > this.#timeoutMs) {
        this.#entries.delete(id);
        gone.push(id);
      }
    }
    for (const [k, a] of this.#addresses) if (now - a.heardAt > this.#rememberMs) this.#addresses.delete(k);
    return gone;
  }

  /** The candidates as chooseVoiceServer() takes them. */
  candidates(): RouteCandidate[] {
    return [...this.#entries.values()].map((e) => ({
      status: e.status,
      heardAt: e.heardAt,
      pending: e.routedAt.length,
      healthy: e.healthy,
      refused: e.refused,
    }));
  }

  /** Picks the server for a new call (see chooseVoiceServer) and counts the call against it. */
  pick(o: Omit<RouteOptions, 'timeoutMs'>): RouteChoice | undefined {
    const choice = chooseVoiceServer(this.candidates(), { ...o, timeoutMs: this.#timeoutMs });
    if (choice) this.routed(choice.nodeId, o.now);
    return choice;
  }

  /** The node ID of a voice server that answers SIP at host:port (heard within the last hour), if any. */
  nodeAt(host: string, port: number): string | undefined {
    return this.#addresses.get(addressKey(host, port))?.nodeId;
  }

  /** The status held for a node. */
  get(nodeId: string): VoiceStatus | undefined {
    return this.#entries.get(nodeId)?.status;
  }

  /** Number of servers held. */
  get size(): number {
    return this.#entries.size;
  }

  /** For status pages: every server with why it would or would not take a call now. */
  view(now: number, dataCenter: string): Array<{ nodeId: string; dataCenter: string; state: string; freePorts: number; heardMsAgo: number; routable: boolean; because?: string; home: boolean }> {
    return this.candidates().map((c) => {
      const because = unavailableBecause(c, { now, timeoutMs: this.#timeoutMs });
      return {
        nodeId: c.status.nodeId,
        dataCenter: c.status.dataCenter,
        state: c.status.state,
        freePorts: freePorts(c),
        heardMsAgo: now - c.heardAt,
        routable: because === undefined,
        ...(because === undefined ? {} : { because }),
        home: c.status.dataCenter === dataCenter,
      };
    });
  }
}

function addressKey(host: string, port: number): string {
  return `${host.toLowerCase()}:${port}`;
}
