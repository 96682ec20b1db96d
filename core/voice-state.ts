/**
 * A voice server's state for new calls, and the states of its channels (issue 3, items 4–5).
 *
 *   admin (operator / lifecycle)      in-service ──drain──▶ maintenance ──resume──▶ in-service
 *                                     any ──stop──▶ out-of-service
 *   port availability suspend         free ports < suspendBelow ──▶ suspended
 *                                     free ports ≥ resumeAt     ──▶ not suspended (hysteresis)
 *
 * The state the cluster sees is the strongest of these: out-of-service, then maintenance, then
 * suspended, then in-service. In maintenance busy channels finish; once none is busy the server
 * is drained. Suspend is advice to the `sip-router`s (route elsewhere): a call that reaches a
 * suspended server while it still has a free port is taken, since refusing it frees nothing.
 * Pure: the actor feeds port counts and operator commands, and carries out the effects.
 */
import type { ChannelCounts, VoiceServerState } from '../runtime/contracts.ts';

/** Port counts of the server's range. */
export interface VoicePorts {
  capacity: number;
  /** Free right now. */
  available: number;
  busy: number;
  /** Ports that could not be bound (another process holds them), kept out for a while. */
  outOfService: number;
}

/** Thresholds of port availability suspend. */
export interface VoiceStateOptions {
  /** Suspend when fewer ports than this are free; 0 never suspends. */
  suspendBelow: number;
  /** Resume once at least this many are free (capped at the usable ports). */
  resumeAt: number;
}

/** What the operator or the lifecycle set. */
export type AdminState = 'in-service' | 'maintenance' | 'out-of-service';

/** The whole state. */
export interface VoiceState {
  admin: AdminState;
  suspended: boolean;
  /** Set once a maintenance server has no busy channel left (reported once). */
  drained: boolean;
  ports: VoicePorts;
}

/** Inputs: fresh port counts, or an operator / lifecycle command. */
export type VoiceInput = { type: 'ports'; ports: VoicePorts } | { type: 'drain' } | { type: 'resume' } | { type: 'stop' };

/** Effects for the actor: broadcast at once on a change, log the drained moment. */
export type VoiceEffect = { type: 'state-changed'; from: VoiceServerState; to: VoiceServerState } | { type: 'drained'; busy: 0 };

/** The state the cluster sees. */
export function voiceServerState(s: VoiceState): VoiceServerState {
  if (s.admin !== 'in-service') return s.admin;
  return s.suspended ? 'suspended' : 'in-service';
}

/** Whether a new INVITE is taken (maintenance and out-of-service refuse it; suspend is advice). */
export function admitsCalls(s: VoiceState): boolean {
  return s.admin === 'in-service';
}

/** The free-port count at which a suspended server resumes: resumeAt, capped at the usable ports. */
export function resumeThreshold(ports: VoicePorts, opts: VoiceStateOptions): number {
  const usable = Math.max(0, ports.capacity - ports.outOfService);
  return Math.max(opts.suspendBelow, Math.min(opts.resumeAt, usable));
}

function nextSuspended(suspended: boolean, ports: VoicePorts, opts: VoiceStateOptions): boolean {
  if (opts.suspendBelow <= 0) return false;
  if (!suspended) return ports.available < opts.suspendBelow;
  return ports.available < resumeThreshold(ports, opts);
}

/** The state of a server that has just started with these ports. */
export function initialVoiceState(ports: VoicePorts, opts: VoiceStateOptions): VoiceState {
  return { admin: 'in-service', suspended: nextSuspended(false, ports, opts), drained: false, ports: { ...ports } };
}

/** One step: the next state and what to do about it. */
export function stepVoiceState(s: VoiceState, input: VoiceInput, opts: VoiceStateOptions): { state: VoiceState; effects: VoiceEffect[] } {
  const next: VoiceState = { ...s, ports: { ...s.ports } };
  switch (input.type) {
    case 'ports':
      next.ports = { ...input.ports };
      break;
    case 'drain':
      if (next.admin === 'in-service') next.admin = 'maintenance';
      break;
    case 'resume':
      if (next.admin === 'maintenance') next.admin = 'in-service';
      break;
    case 'stop':
      next.admin = 'out-of-service';
      break;
  }
  next.suspended = nextSuspended(s.suspended, next.ports, opts);
  const wasDrained = s.drained;
  next.drained = next.admin === 'maintenance' && next.ports.busy === 0;
  const effects: VoiceEffect[] = [];
  const from = voiceServerState(s);
  const to = voiceServerState(next);
  if (from !== to) effects.push({ type: 'state-changed', from, to });
  if (next.drained && !wasDrained) effects.push({ type: 'drained', busy: 0 });
  return { state: next, effects };
}

/** Channels by state: in maintenance idle channels are in maintenance and busy ones still in service. */
export function channelCounts(s: VoiceState): ChannelCounts {
  const { capacity, busy, outOfService } = s.ports;
  if (s.admin === 'out-of-service') return { inService: 0, busy, maintenance: 0, outOfService: capacity };
  const usable = Math.max(0, capacity - outOfService);
  if (s.admin === 'maintenance') return { inService: busy, busy, maintenance: Math.max(0, usable - busy), outOfService };
  return { inService: usable, busy, maintenance: 0, outOfService };
}
