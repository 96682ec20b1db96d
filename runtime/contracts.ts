/**
 * Wire contracts between actors: the data each action takes and returns. Actors talk only through
 * the broker (`ctx.call('event.join', …)`), never by importing each other, so these types are the
 * whole of what one actor knows of another.
 */

/** Event lifecycle states (DESIGN.md "event"). */
export type EventStatus = 'reserved' | 'live' | 'ended' | 'archiving' | 'archived' | 'archive-error' | 'cancelled';

/** Output format of an event's streams. Only HLS with AAC is built so far. */
export type StreamFormat = 'hls';

/** One fragment of the virtual archive: a stretch of one recorded stream (seconds from the stream's start). */
export interface ArchiveFragment {
  streamId: string;
  /** Offset into the stream in seconds where this fragment starts. */
  start: number;
  /** Offset into the stream in seconds where this fragment ends. */
  end: number;
}

/** What event-info.xml holds (DESIGN.md "Content storage layout"). */
export interface EventInfo {
  eventId: string;
  title: string;
  format: StreamFormat;
  /** ISO 8601; a guideline, never enforced. */
  startsAt?: string;
  createdAt: string;
  updatedAt: string;
  /** Retention of the archive in days. */
  archiveDays: number;
  /** Whether the attendee link also needs a password (its HMAC is inside the token). */
  hasPassword: boolean;
  attendeeUrl: string;
  hostUrl: string;
  status: EventStatus;
  /** When the event went live first (ISO), once it has. */
  liveAt?: string;
  /** When the event ended (ISO), once it has. */
  endedAt?: string;
  /** The virtual archive, once built. */
  archive?: ArchiveFragment[];
  /** Why the archive could not be built, when status is archive-error. */
  archiveError?: string;
}

/** A live stream as monitoring sees it (DESIGN.md "monitoring data"). */
export interface StreamDataset {
  streamId: string;
  eventId: string;
  format: StreamFormat;
  /** The voice-server port (RTP) whose conference feeds this stream. */
  port: number;
  nodeId: string;
  dataCenter: string;
  /** Path of the stream's media playlist on the node that serves it (auth code added by attendee access). */
  url: string;
  startedAt: string;
  lastSeenAt: string;
}

/** A stream's whole life, kept for the archive (monitoring "stream history"). */
export interface StreamRecord {
  streamId: string;
  eventId: string;
  nodeId: string;
  dataCenter: string;
  port: number;
  startedAt: string;
  endedAt?: string;
  /** Seconds of media the encoder wrote. */
  durationS?: number;
  /** True once the raw files are in content storage. */
  stored?: boolean;
}

/** `event.get` and the REST view of an event. */
export interface EventView extends EventInfo {
  pin?: string;
  streams: Array<Pick<StreamDataset, 'streamId' | 'nodeId' | 'dataCenter' | 'port' | 'format' | 'url' | 'startedAt'>>;
  /** Callers currently in the conference, over all voice servers. */
  callers: number;
}

// ---- action parameters -------------------------------------------------------------------

/** `reservation.create` */
export interface ReserveParams {
  title: string;
  startsAt?: string;
  format?: StreamFormat;
  archiveDays?: number;
  password?: string;
}

/** `event.join`: a caller whose PIN checked joins the event's conference. */
export interface JoinParams {
  eventId: string;
  nodeId: string;
  channelId: string;
  port: number;
}

/** `event.join` reply: refused when the event is cancelled, ended or archived. */
export type JoinResult = { ok: true; status: EventStatus } | { ok: false; status: EventStatus | 'unknown'; reason: string };

/** `event.leave` */
export interface LeaveParams {
  eventId: string;
  channelId: string;
}

/** `encoder-port.start`: start one live stream of one event, fed by RTP (PCMU) from a voice server. */
export interface EncoderStartParams {
  eventId: string;
  format: StreamFormat;
  /** The voice-server port whose conference feeds the stream. */
  port: number;
  voiceNodeId: string;
}

/** `encoder-port.start` reply: where to send RTP. */
export interface EncoderStartResult {
  streamId: string;
  rtpHost: string;
  rtpPort: number;
  /** RTP payload type the encoder expects (0 = PCMU). */
  payloadType: number;
}

/** Broker events (emit/broadcast) by name. */
export const EVENTS = {
  /** `{eventId, reason}`: every voice server hangs up the event's calls, every encoder stops its streams. */
  eventEnded: 'jitcast.event.ended',
  /** `{eventId, status}` */
  eventStatus: 'jitcast.event.status',
  /** StreamDataset: an encoder's heartbeat push. */
  streamDataset: 'jitcast.stream.dataset',
  /** StreamRecord: an encoder's stream stopped (and its files are stored when `stored`). */
  streamStopped: 'jitcast.stream.stopped',
} as const;
