/**
 * Archive leader election (DESIGN.md "Archive leader election", the seed's gossip rule): every
 * archive coordinator announces itself (node ID, IP address) each heartbeat; each one merges what it
 * hears, drops peers silent for longer than the silence limit, sorts the rest by IP address and takes
 * the first as leader. Nodes on one machine share an address (the usual case on a test cluster), so
 * ties go to the lower node ID; the order is total, and two coordinators that hear the same peers
 * pick the same leader.
 *
 * Pure: no timers, sockets or clocks. The actor feeds it its own announce, each announce it hears
 * (stamped with the local receive time, never the sender's clock: machines' clocks differ), a
 * node that left the cluster cleanly, and ticks; it answers with the new state and, when the leader
 * changed, from whom to whom. The node itself is never dropped: a coordinator cut off from every
 * other leads alone (two leaders for a moment are harmless, archive work being idempotent per event).
 */

/** One coordinator as this node knows it. */
export interface ElectionPeer {
  nodeId: string;
  /** IPv4 or IPv6 address the coordinator announced. */
  address: string;
  /** When this node last heard it (local ms clock). */
  heardAt: number;
}

/** What one coordinator knows. Treat as immutable: every step returns a new state. */
export interface ElectionState {
  readonly self: ElectionPeer;
  /** Every coordinator heard within the silence limit, self included, by node ID. */
  readonly peers: ReadonlyMap<string, ElectionPeer>;
  /** A peer heard last longer ago than this is dropped (ms). */
  readonly silenceLimitMs: number;
  /** Node ID of the leader: the first of `peers` in `comparePeers` order. */
  readonly leader: string;
}

/** An input of the election. */
export type ElectionInput =
  /** This node announces itself (each heartbeat); `address` may change (an interface came up). */
  | { type: 'announce'; at: number; address?: string }
  /** An announce from another coordinator, received at `at`. */
  | { type: 'heard'; nodeId: string; address: string; at: number }
  /** A coordinator left the cluster cleanly (its broker said goodbye): no need to wait out its silence. */
  | { type: 'gone'; nodeId: string }
  /** Time passes: drop peers silent for longer than the limit. */
  | { type: 'tick'; at: number };

/** One step's outcome. */
export interface ElectionStep {
  state: ElectionState;
  /** Set when the leader changed. */
  changed?: { from: string; to: string };
  /** Node IDs dropped by this step (silent past the limit, or gone). */
  dropped: string[];
  /** Set when the step heard a coordinator it did not know (new, or back after being dropped). */
  joined?: string;
}

/**
 * The address as 16 bytes (IPv4 as the IPv4-mapped IPv6 `::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so
 * IPv4 and IPv6 compare numerically in one order; undefined for anything that is not an IP address.
 */
export function addressBytes(address: string): Uint8Array | undefined {
  const a = address.trim().replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const v4 = parseIpv4(a);
  if (v4) return Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4]);
  if (!a.includes(':')) return undefined;
  let head = a;
  let tail4: number[] = [];
  // An IPv6 address may end in a dotted IPv4 (`::ffff:10.0.0.1`, RFC 4291 §2.2 form 3).
  const lastColon = a.lastIndexOf(':');
  if (a.slice(lastColon + 1).includes('.')) {
    const v = parseIpv4(a.slice(lastColon + 1));
    if (!v) return undefined;
    tail4 = v;
    head = a.slice(0, lastColon + 1) + '0:0';
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const left = groups(halves[0]!);
  const right = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...right];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  if (tail4.length) out.set(tail4, 12);
  return out;
}

function parseIpv4(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** Numeric order of two IP addresses (10.0.0.9 before 10.0.0.10); what is not an address sorts after every address, by text. */
export function compareAddresses(a: string, b: string): number {
  const x = addressBytes(a);
  const y = addressBytes(b);
  if (x && y) {
    for (let i = 0; i < 16; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return 0;
  }
  if (x) return -1;
  if (y) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The election order: by IP address, then by node ID (plain code-unit order, the same on every node whatever its locale). */
export function comparePeers(a: Pick<ElectionPeer, 'nodeId' | 'address'>, b: Pick<ElectionPeer, 'nodeId' | 'address'>): number {
  return compareAddresses(a.address, b.address) || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0);
}

/** Peers in election order, the leader first. */
export function ranked(state: ElectionState): ElectionPeer[] {
  return [...state.peers.values()].sort(comparePeers);
}

function withPeers(state: ElectionState, peers: Map<string, ElectionPeer>, self = state.self): ElectionState {
  const leader = [...peers.values()].reduce((best, p) => (comparePeers(p, best) < 0 ? p : best), self).nodeId;
  return { self, peers, silenceLimitMs: state.silenceLimitMs, leader };
}

/** A node that has heard no one yet: it leads alone until it hears better. */
export function startElection(self: { nodeId: string; address: string }, silenceLimitMs: number, now: number): ElectionState {
  if (!(silenceLimitMs > 0)) throw new RangeError(`silenceLimitMs must be greater than zero, got ${silenceLimitMs}`);
  const me: ElectionPeer = { nodeId: self.nodeId, address: self.address, heardAt: now };
  return { self: me, peers: new Map([[me.nodeId, me]]), silenceLimitMs, leader: me.nodeId };
}

/** Applies one input. */
export function stepElection(state: ElectionState, input: ElectionInput): ElectionStep {
  const before = state.leader;
  const dropped: string[] = [];
  let joined: string | undefined;
  let next = state;
  switch (input.type) {
    case 'announce': {
      const self: ElectionPeer = { ...state.self, address: input.address ?? state.self.address, heardAt: Math.max(state.self.heardAt, input.at) };
      const peers = new Map(state.peers);
      peers.set(self.nodeId, self);
      next = withPeers(state, peers, self);
      break;
    }
    case 'heard': {
      // Our own broadcast comes back to us; another node claiming our ID is a misconfiguration that
      // must not unseat us (nodeId is unique per cluster, cluster.config.ts).
      if (input.nodeId === state.self.nodeId) break;
      const known = state.peers.get(input.nodeId);
      // A late delivery older than the limit says nothing about the peer being alive now.
      if (!known && input.at < latest(state) - state.silenceLimitMs) break;
      if (!known) joined = input.nodeId;
      const peers = new Map(state.peers);
      peers.set(input.nodeId, { nodeId: input.nodeId, address: input.address, heardAt: Math.max(known?.heardAt ?? input.at, input.at) });
      next = withPeers(state, peers);
      break;
    }
    case 'gone': {
      if (input.nodeId === state.self.nodeId || !state.peers.has(input.nodeId)) break;
      const peers = new Map(state.peers);
      peers.delete(input.nodeId);
      dropped.push(input.nodeId);
      next = withPeers(state, peers);
      break;
    }
    case 'tick': {
      let peers: Map<string, ElectionPeer> | undefined;
      for (const p of state.peers.values()) {
        if (p.nodeId === state.self.nodeId) continue;
        if (input.at - p.heardAt > state.silenceLimitMs) {
          peers ??= new Map(state.peers);
          peers.delete(p.nodeId);
          dropped.push(p.nodeId);
        }
      }
      if (peers) next = withPeers(state, peers);
      break;
    }
  }
  const step: ElectionStep = { state: next, dropped };
  if (joined) step.joined = joined;
  if (next.leader !== before) step.changed = { from: before, to: next.leader };
  return step;
}

/** The latest instant the state has seen (for ignoring stale deliveries). */
function latest(state: ElectionState): number {
  let t = state.self.heardAt;
  for (const p of state.peers.values()) if (p.heardAt > t) t = p.heardAt;
  return t;
}
