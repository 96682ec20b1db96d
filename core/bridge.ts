/**
 * Bridged conferences across voice servers (issue 4, item 2), pure: who sends what to whom.
 *
 * Speakers of one event may land on different voice servers (two data centers, a redial through
 * the front door, a host dialling in twice for redundancy). Each such server runs its own
 * conference and feeds its own encoder, so the event has redundant streams; for every stream (and
 * every caller's mix-minus) to carry every speaker, the servers bridge their conferences:
 *
 * - Announce: every voice server broadcasts `BridgeAnnounce` (its node, the UDP address of its
 *   bridge socket, and per conference the event ID and the SSRC it sends that event's bridge audio
 *   with) every heartbeat and at once when a conference starts or ends. The list is complete, so an
 *   event missing from a peer's announcement means that peer's conference ended.
 * - Send: each 20 ms frame, a server sends the mix of its LOCAL callers only (ConferenceMixer's
 *   `local`) as RTP/PCMU to the bridge address of each peer announcing the same event. Audio
 *   received from a peer is never forwarded, so nothing loops, in a mesh of any size: every
 *   server hears every other server's speakers exactly once, one hop away.
 * - Receive: a peer is one more member of the mixer (`remote`), identified by the packet's source
 *   address and SSRC as announced; packets from anyone else are ignored.
 * - Forget: a peer is dropped when its node leaves the cluster (`$node.disconnected`), when its
 *   announcement no longer lists the event, or when no bridge RTP came from it for `silenceMs`
 *   (2 s) — the fastest sign of a SIGKILLed node. A later announcement adds it back.
 *
 * Only events with a local conference are tracked: a server with no caller of an event neither
 * sends nor receives its audio. When it gets one, it announces at once, and any peer that learns
 * of a new member announces back at once, so two servers find each other within one broadcast
 * round trip instead of a heartbeat.
 */

/** No bridge RTP from a peer for this long (ms) and it is dropped. */
export const BRIDGE_SILENCE_MS = 2000;

/** One conference of an announcing server. */
export interface BridgeConference {
  eventId: string;
  /** SSRC of the bridge RTP the server sends for this event. */
  ssrc: number;
}

/** A voice server's announcement of every conference it holds (broadcast). */
export interface BridgeAnnounce {
  nodeId: string;
  /** Where its bridge socket receives RTP. */
  host: string;
  port: number;
  conferences: BridgeConference[];
}

/** A peer server in one event's bridge. */
export interface BridgePeer {
  nodeId: string;
  host: string;
  port: number;
  ssrc: number;
  /** When it was added (ms); silence counts from here until its first packet. */
  since: number;
  /** Last bridge RTP from it (ms). */
  lastRtpAt?: number;
}

/** Why a peer left an event's bridge. */
export type BridgeDropReason = 'node-gone' | 'withdrawn' | 'silent' | 'replaced' | 'local-ended';

/** What the actor must do to its mixers. */
export type BridgeChange =
  | { type: 'added'; eventId: string; nodeId: string; peer: BridgePeer; memberId: string }
  | { type: 'removed'; eventId: string; nodeId: string; memberId: string; reason: BridgeDropReason };

/** Options of BridgeTable. */
export interface BridgeOptions {
  /** Silence (ms) after which a peer is dropped. Default BRIDGE_SILENCE_MS. */
  silenceMs?: number;
}

/** The mixer member ID of a peer server's audio. */
export function bridgeMemberId(nodeId: string): string {
  return `bridge:${nodeId}`;
}

/** Per event, the peer servers this server bridges with; fed announcements, departures and RTP. */
export class BridgeTable {
  readonly #self: string;
  readonly #silenceMs: number;
  /** eventId → nodeId → peer, for events with a local conference only. */
  readonly #events = new Map<string, Map<string, BridgePeer>>();
  /** `host:port/ssrc` → where a bridge packet belongs. */
  readonly #sources = new Map<string, { eventId: string; nodeId: string }>();

  constructor(selfNodeId: string, opts: BridgeOptions = {}) {
    this.#self = selfNodeId;
    this.#silenceMs = opts.silenceMs ?? BRIDGE_SILENCE_MS;
  }

  /** A local conference started: its event's announcements count from now on (idempotent). */
  host(eventId: string): void {
    if (!this.#events.has(eventId)) this.#events.set(eventId, new Map());
  }

  /** The local conference ended: forget its peers. */
  unhost(eventId: string): BridgeChange[] {
    const peers = this.#events.get(eventId);
    if (!peers) return [];
    const out: BridgeChange[] = [];
    for (const nodeId of [...peers.keys()]) out.push(this.#remove(eventId, nodeId, 'local-ended'));
    this.#events.delete(eventId);
    return out;
  }

  /** Whether a local conference of `eventId` is tracked. */
  hosts(eventId: string): boolean {
    return this.#events.has(eventId);
  }

  /**
   * A peer's announcement: adds it to each hosted event it lists, replaces it where its address or
   * SSRC changed (a restarted node), and drops it from hosted events it no longer lists.
   */
  announce(a: BridgeAnnounce, now: number): BridgeChange[] {
    if (a.nodeId === this.#self) return [];
    const out: BridgeChange[] = [];
    const listed = new Map(a.conferences.map((c) => [c.eventId, c.ssrc]));
    for (const [eventId, peers] of this.#events) {
      const old = peers.get(a.nodeId);
      const ssrc = listed.get(eventId);
      if (ssrc === undefined) {
        if (old) out.push(this.#remove(eventId, a.nodeId, 'withdrawn'));
        continue;
      }
      if (old && old.host === a.host && old.port === a.port && old.ssrc === ssrc) continue;
      if (old) out.push(this.#remove(eventId, a.nodeId, 'replaced'));
      const peer: BridgePeer = { nodeId: a.nodeId, host: a.host, port: a.port, ssrc, since: now };
      peers.set(a.nodeId, peer);
      this.#sources.set(sourceKey(a.host, a.port, ssrc), { eventId, nodeId: a.nodeId });
      out.push({ type: 'added', eventId, nodeId: a.nodeId, peer: { ...peer }, memberId: bridgeMemberId(a.nodeId) });
    }
    return out;
  }

  /** A node left the cluster: it leaves every bridge. */
  nodeGone(nodeId: string): BridgeChange[] {
    const out: BridgeChange[] = [];
    for (const [eventId, peers] of this.#events) if (peers.has(nodeId)) out.push(this.#remove(eventId, nodeId, 'node-gone'));
    return out;
  }

  /**
   * A bridge packet arrived from `host:port` with `ssrc`: which event and mixer member it feeds,
   * or undefined for a source no hosted event expects (ignored).
   */
  rtp(host: string, port: number, ssrc: number, now: number): { eventId: string; memberId: string } | undefined {
    const src = this.#sources.get(sourceKey(host, port, ssrc));
    if (!src) return undefined;
    const peer = this.#events.get(src.eventId)?.get(src.nodeId);
    if (!peer) return undefined;
    peer.lastRtpAt = now;
    return { eventId: src.eventId, memberId: bridgeMemberId(src.nodeId) };
  }

  /** Drops peers silent for the silence limit (counted from when they were added until their first packet). */
  expire(now: number): BridgeChange[] {
    const out: BridgeChange[] = [];
    for (const [eventId, peers] of this.#events) {
      for (const p of [...peers.values()]) {
        if (now - (p.lastRtpAt ?? p.since) > this.#silenceMs) out.push(this.#remove(eventId, p.nodeId, 'silent'));
      }
    }
    return out;
  }

  /** Where this server sends the local mix of `eventId` (every peer of the event). */
  targets(eventId: string): Array<{ nodeId: string; host: string; port: number }> {
    return [...(this.#events.get(eventId)?.values() ?? [])].map((p) => ({ nodeId: p.nodeId, host: p.host, port: p.port }));
  }

  /** The peers of `eventId` (copies). */
  peers(eventId: string): BridgePeer[] {
    return [...(this.#events.get(eventId)?.values() ?? [])].map((p) => ({ ...p }));
  }

  #remove(eventId: string, nodeId: string, reason: BridgeDropReason): BridgeChange {
    const peers = this.#events.get(eventId)!;
    const p = peers.get(nodeId)!;
    peers.delete(nodeId);
    this.#sources.delete(sourceKey(p.host, p.port, p.ssrc));
    return { type: 'removed', eventId, nodeId, memberId: bridgeMemberId(nodeId), reason };
  }
}

/** Whether an announcement names a conference worth answering at once (any change added a peer). */
export function shouldAnswer(changes: BridgeChange[]): boolean {
  return changes.some((c) => c.type === 'added');
}

function sourceKey(host: string, port: number, ssrc: number): string {
  return `${host}:${port}/${ssrc >>> 0}`;
}
