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
  /** The customer account that reserved the event; absent (older event-info) = `operator` (codecs/api-key.ts accountOf). */
  account?: string;
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
  /**
   * The last push monitoring saw (the dataset's own `lastSeenAt`). Shows where a stream that died
   * without a stop (ffmpeg or its node killed) really ended, so a restart's gap is visible.
   */
  lastSeenAt?: string;
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
  /** The encoder's node (`encoder-port.stop` goes there). */
  nodeId: string;
  rtpHost: string;
  rtpPort: number;
  /** RTP payload type the encoder expects (0 = PCMU). */
  payloadType: number;
}

// ---- voice servers in the cluster (issue 3) ------------------------------------------------

/**
 * State of a voice server for new calls. `in-service` takes them; `suspended` (port availability
 * suspend: free ports ran low) and `maintenance` (drained by the operator) take none, while busy
 * channels finish; `out-of-service` is stopping or failed.
 */
export type VoiceServerState = 'in-service' | 'maintenance' | 'suspended' | 'out-of-service';

/** State of one channel (one RTP port of the server's range). */
export type ChannelState = 'in-service' | 'maintenance' | 'out-of-service';

/** Channels of a voice server counted by state; `busy` channels (a call on them) are in service. */
export interface ChannelCounts {
  inService: number;
  busy: number;
  maintenance: number;
  outOfService: number;
}

/**
 * What every voice server broadcasts as `EVENTS.voiceStatus` each heartbeat and at once on any
 * state change; the `sip-router` routes calls from it, and `jitcast status` shows it.
 */
export interface VoiceStatus {
  nodeId: string;
  dataCenter: string;
  /** Where the voice server answers SIP (the router forwards INVITEs here). */
  sip: { host: string; port: number };
  state: VoiceServerState;
  /** In maintenance: true once the last busy channel has ended. */
  drained: boolean;
  ports: {
    capacity: number;
    /** Free right now (not busy, not resting after a call, not out of service). */
    available: number;
    busy: number;
    /** Below this many free ports the server suspends itself (0: never). */
    suspendBelow: number;
    /** A suspended server resumes once this many ports are free. */
    resumeAt: number;
  };
  channels: ChannelCounts;
  /** Counts up with every status this process sends; lets a receiver drop a late one. */
  seq: number;
  /** When the status was made (ISO). */
  updatedAt: string;
}

/** `EVENTS.assetHealth`: the verdict of a health test on an asset (monitoring's synthetic call). */
export interface AssetHealth {
  asset: 'voice-server' | 'encoder-port';
  nodeId: string;
  /** True while the asset is in its pool (after this test). */
  healthy: boolean;
  /** The test's outcome: a skipped test (asset draining or full) leaves `healthy` as it was. */
  outcome: 'pass' | 'fail' | 'skipped';
  /** Set when this test moved the asset out of its pool or back in. */
  change?: 'evicted' | 'readmitted';
  /** How long the test took (ms). */
  ms: number;
  /** When the test ended (ISO). */
  testedAt: string;
  /** The node whose monitoring ran the test. */
  testedBy: string;
  reason?: string;
}

/**
 * What every encoder-port actor broadcasts as `EVENTS.encoderStatus` each heartbeat: the encoder
 * pool voice servers bind streams from (core/encoder-pool.ts), and what monitoring tests.
 */
export interface EncoderStatus {
  nodeId: string;
  dataCenter: string;
  capacity: number;
  /** Ports free right now (not streaming, not resting). */
  free: number;
  /** Streams running. */
  running: number;
  seq: number;
  /** ISO */
  updatedAt: string;
}

/** `encoder-port.selfTest` reply: RTP in, a segment out, on one of the node's own ports. */
export interface EncoderSelfTestResult {
  ok: boolean;
  /** Set when the encoder had no free port: the test was not run. */
  skipped?: boolean;
  nodeId: string;
  rtpPort?: number;
  /** Time from the first RTP packet to the first segment listed (ms). */
  ms: number;
  packetsSent: number;
  packetsReceived: number;
  reason?: string;
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
  /** VoiceStatus: a voice server's heartbeat and state changes (broadcast). */
  voiceStatus: 'jitcast.voice.status',
  /** AssetHealth: an asset failed or passed its health test; a failed voice server gets no calls. */
  assetHealth: 'jitcast.asset.health',
  /** EncoderStatus: an encoder-port actor's heartbeat (broadcast). */
  encoderStatus: 'jitcast.encoder.status',
  /** ArchiveAnnounce: an archive coordinator's heartbeat for the leader election (broadcast; core/election.ts). */
  archiveAnnounce: 'jitcast.archive.announce',
  /** ApiKeyRecord (runtime/api-keys.ts): a key was created or revoked; every gateway takes it into its registry (broadcast). */
  apiKeyChanged: 'jitcast.apiKey.changed',
  /** UsageDelta (core/usage.ts): what a node's attendee access served since its last flush (broadcast, every second). */
  usageListeners: 'jitcast.usage.listeners',
  /** CallReport (core/usage.ts): a caller joined an event on a voice server (broadcast). */
  callStarted: 'jitcast.call.started',
  /** CallReport with `endedAtMs`: that call ended (broadcast). */
  callEnded: 'jitcast.call.ended',
} as const;

/** `encoder-port.liveFile` parameters: one file of a stream the asked node encodes (issue 3, files across nodes). */
export interface LiveFileParams {
  streamId: string;
  /** `index.m3u8` or `segNNNNN.ts` (runtime/live-files.ts LIVE_FILE_RE). */
  file: string;
}

/** `content-storage.beginStream` parameters: a finished stream its encoder is about to send file by file. */
export interface BeginStreamParams {
  eventId: string;
  streamId: string;
}

/** `content-storage.beginStream` reply: every further call of the upload goes to `nodeId` (Moleculer `nodeID` option). */
export interface BeginStreamResult {
  uploadId: string;
  nodeId: string;
}

/** `content-storage.putStreamFile` parameters: one chunk of one file, chunks of a file in order. */
export interface PutStreamFileParams {
  uploadId: string;
  file: string;
  /** Byte offset of this chunk in the file: the bytes received so far. */
  offset: number;
  /** The chunk, base64 (a Buffer would cross the JSON transporter as an array of numbers, ~4× larger). */
  data: string;
}

/** `content-storage.commitStream` parameters: every file of the stream with its size, checked before it is stored. */
export interface CommitStreamParams {
  uploadId: string;
  files: Record<string, number>;
}

/** `content-storage.abortStream` parameters. */
export interface AbortStreamParams {
  uploadId: string;
}

/** What content storage holds of a stream after `putStream` or `commitStream`. */
export interface StoredStreamTotals {
  files: number;
  bytes: number;
}

/**
 * Bridged conferences (issue 4): each voice server broadcasts `BridgeAnnounce` (core/bridge.ts) on
 * this event every heartbeat and whenever its conferences change, so the servers carrying callers
 * of one event send each other their local speakers' audio.
 */
export const BRIDGE_ANNOUNCE_EVENT = 'jitcast.voice.bridge';
export type { BridgeAnnounce } from '../core/bridge.ts';

/**
 * `EVENTS.archiveAnnounce`: what every archive coordinator broadcasts each heartbeat (DESIGN.md
 * "Archive leader election"). Receivers stamp it with their own clock; `sentAt` and `leader` are
 * for logs and status only.
 */
export interface ArchiveAnnounce {
  nodeId: string;
  /** The coordinator's IP address, the election's sort key. */
  address: string;
  /** Who the sender takes for leader now. */
  leader: string;
  /** Sender's clock (ISO), informational. */
  sentAt: string;
}
