/**
 * SDP (RFC 4566 §5) and the offer/answer model (RFC 3264) for one G.711 audio stream with
 * RFC 4733 telephone-events. Pure: text in, values and text out.
 *
 *   session: v= o= s= [i= u= e= p=] [c=] [b=] t= [r= z= k=] *a= *media
 *   media:   m=<media> <port>[/<count>] <proto> <fmt> ... [i=] [c=] [b=] [k=] *a=
 */
import { CodecError } from './errors.ts';

/** SDP text that does not follow RFC 4566 §5; `code` names the rule that failed. */
export class SdpParseError extends CodecError {}

/** An offer we cannot answer (RFC 3264 §6: the UAS answers 488); `code` says why. */
export class SdpNegotiationError extends CodecError {}

/** c= (RFC 4566 §5.7). */
export interface SdpConnection {
  netType: string;
  addrType: string;
  address: string;
}

/** o= (RFC 4566 §5.2); session id and version kept as decimal strings (they may exceed 2**53). */
export interface SdpOrigin {
  username: string;
  sessionId: string;
  sessionVersion: string;
  netType: string;
  addrType: string;
  address: string;
}

/** a=name[:value] (RFC 4566 §5.13). */
export interface SdpAttribute {
  name: string;
  value?: string;
}

/** Any other line (i= u= e= p= b= r= z= k=), kept to round-trip. */
export interface SdpLine {
  type: string;
  value: string;
}

/** One m= section (RFC 4566 §5.14). */
export interface MediaDescription {
  media: string;
  port: number;
  portCount?: number;
  protocol: string;
  formats: string[];
  connection?: SdpConnection;
  attributes: SdpAttribute[];
  other: SdpLine[];
}

/** A parsed session description. */
export interface SessionDescription {
  version: number;
  origin: SdpOrigin;
  sessionName: string;
  connection?: SdpConnection;
  timing: Array<{ start: string; stop: string }>;
  attributes: SdpAttribute[];
  other: SdpLine[];
  media: MediaDescription[];
}

/** Media direction (RFC 3264 §5.1, RFC 4566 §6). */
export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

const DIRECTIONS: ReadonlySet<string> = new Set(['sendrecv', 'sendonly', 'recvonly', 'inactive']);
/** Order of the optional lines around c= and t= (RFC 4566 §5). */
const BEFORE_C = ['i', 'u', 'e', 'p'];
const AFTER_T = ['r', 'z', 'k'];

function parseConnection(value: string): SdpConnection {
  const parts = value.trim().split(/ +/);
  if (parts.length !== 3 || parts[2] === '') throw new SdpParseError(`bad c= line '${value}'`, 'BAD_CONNECTION');
  // §5.7: a multicast address may carry /ttl[/count]; kept as written for round trips.
  return { netType: parts[0], addrType: parts[1], address: parts[2] };
}

/** Parse SDP text (CRLF or, leniently, LF line ends); throws SdpParseError. */
export function parseSdp(text: string): SessionDescription {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  if (lines[0] !== 'v=0') throw new SdpParseError(`SDP must start with v=0, not '${lines[0] ?? ''}'`, 'BAD_VERSION');
  let origin: SdpOrigin | undefined;
  let sessionName: string | undefined;
  let connection: SdpConnection | undefined;
  const timing: Array<{ start: string; stop: string }> = [];
  const attributes: SdpAttribute[] = [];
  const other: SdpLine[] = [];
  const media: MediaDescription[] = [];
  let current: MediaDescription | undefined;

  for (const line of lines.slice(1)) {
    const m = /^([a-z])=(.*)$/.exec(line);
    if (!m) throw new SdpParseError(`bad SDP line '${line}'`, 'BAD_LINE');
    const [, type, value] = m;
    if (type === 'm') {
      const mm = /^(\S+) (\d+)(?:\/(\d+))? (\S+)((?: \S+)*) *$/.exec(value);
      if (!mm) throw new SdpParseError(`bad m= line '${value}'`, 'BAD_MEDIA');
      const port = Number(mm[2]);
      if (port > 65535) throw new SdpParseError(`bad port in m= line '${value}'`, 'BAD_MEDIA');
      current = {
        media: mm[1],
        port,
        protocol: mm[4],
        formats: mm[5].trim() === '' ? [] : mm[5].trim().split(/ +/),
        attributes: [],
        other: [],
      };
      if (mm[3] !== undefined) current.portCount = Number(mm[3]);
      media.push(current);
      continue;
    }
    if (type === 'a') {
      const colon = value.indexOf(':');
      const attr: SdpAttribute = colon < 0 ? { name: value } : { name: value.slice(0, colon), value: value.slice(colon + 1) };
      (current ? current.attributes : attributes).push(attr);
      continue;
    }
    if (type === 'c') {
      const c = parseConnection(value);
      if (current) current.connection = c;
      else connection = c;
      continue;
    }
    if (current) {
      current.other.push({ type, value });
      continue;
    }
    if (type === 'o') {
      const p = value.split(/ +/);
      if (p.length !== 6 || !/^\d+$/.test(p[1]) || !/^\d+$/.test(p[2])) {
        throw new SdpParseError(`bad o= line '${value}'`, 'BAD_ORIGIN');
      }
      origin = { username: p[0], sessionId: p[1], sessionVersion: p[2], netType: p[3], addrType: p[4], address: p[5] };
    } else if (type === 's') {
      sessionName = value;
    } else if (type === 't') {
      const p = value.split(/ +/);
      if (p.length !== 2 || !p.every((x) => /^\d+$/.test(x))) throw new SdpParseError(`bad t= line '${value}'`, 'BAD_TIMING');
      timing.push({ start: p[0], stop: p[1] });
    } else if (type === 'v') {
      throw new SdpParseError('second v= line', 'BAD_LINE');
    } else {
      other.push({ type, value });
    }
  }
  if (!origin) throw new SdpParseError('missing o= line', 'MISSING_ORIGIN');
  if (sessionName === undefined) throw new SdpParseError('missing s= line', 'MISSING_SESSION_NAME');
  for (const md of media) {
    // §5.7: c= at session level or in every m= section.
    if (!md.connection && !connection) {
      throw new SdpParseError(`m=${md.media} has no c= and the session has none`, 'MISSING_CONNECTION');
    }
  }
  const sd: SessionDescription = { version: 0, origin, sessionName, timing, attributes, other, media };
  if (connection) sd.connection = connection;
  return sd;
}

function formatAttr(a: SdpAttribute): string {
  return a.value === undefined ? `a=${a.name}` : `a=${a.name}:${a.value}`;
}

function formatConnection(c: SdpConnection): string {
  return `c=${c.netType} ${c.addrType} ${c.address}`;
}

/** Serialize in the order RFC 4566 §5 prescribes, CRLF line ends. */
export function serializeSdp(s: SessionDescription): string {
  const out: string[] = [`v=${s.version}`];
  const o = s.origin;
  out.push(`o=${o.username} ${o.sessionId} ${o.sessionVersion} ${o.netType} ${o.addrType} ${o.address}`);
  out.push(`s=${s.sessionName}`);
  for (const t of BEFORE_C) for (const l of s.other) if (l.type === t) out.push(`${l.type}=${l.value}`);
  if (s.connection) out.push(formatConnection(s.connection));
  for (const l of s.other) if (l.type === 'b') out.push(`b=${l.value}`);
  for (const t of s.timing) out.push(`t=${t.start} ${t.stop}`);
  for (const t of AFTER_T) for (const l of s.other) if (l.type === t) out.push(`${l.type}=${l.value}`);
  for (const l of s.other) if (![...BEFORE_C, ...AFTER_T, 'b'].includes(l.type)) out.push(`${l.type}=${l.value}`);
  out.push(...s.attributes.map(formatAttr));
  for (const m of s.media) {
    const port = m.portCount === undefined ? `${m.port}` : `${m.port}/${m.portCount}`;
    out.push(`m=${[m.media, port, m.protocol, ...m.formats].join(' ')}`);
    for (const l of m.other) if (l.type === 'i') out.push(`i=${l.value}`);
    if (m.connection) out.push(formatConnection(m.connection));
    for (const l of m.other) if (l.type !== 'i') out.push(`${l.type}=${l.value}`);
    out.push(...m.attributes.map(formatAttr));
  }
  return `${out.join('\r\n')}\r\n`;
}

/** Codecs this stack can answer with. */
export type G711 = 'PCMU' | 'PCMA';

/** Our side of the answer. */
export interface LocalMedia {
  /** Address RTP is received on (c= and o=). */
  address: string;
  /** RTP port of the audio stream. */
  port: number;
  /** o= session id (decimal). */
  sessionId: string;
  /** o= version; the caller increments it for each new answer in the dialog (RFC 3264 §8). */
  version: number;
  /** Codecs we accept, default ['PCMU', 'PCMA']. */
  codecs?: G711[];
}

/** The outcome of negotiateAnswer(). */
export interface Negotiated {
  /** The SDP answer text. */
  answer: string;
  /** The codec both sides use, with the offer's payload type. */
  codec: { name: G711; payloadType: number };
  /** First telephone-event/8000 payload type of the offer, if any (RFC 4733 §7.1.1). */
  telephoneEventPt?: number;
  /** Every telephone-event/8000 payload type of the offer, in order (empty when none). */
  telephoneEventPts: number[];
  /** Where to send RTP. */
  remote: { address: string; port: number };
  /** Our direction as written in the answer: recvonly/inactive mean we must not send RTP. */
  direction: Direction;
  /** The offer's direction for the stream (after the c=0.0.0.0 hold convention). */
  offerDirection: Direction;
  /** True when the offer puts us on hold (sendonly, inactive or c=0.0.0.0; RFC 3264 §8.4). */
  hold: boolean;
  /** Packetization time we send with (a=ptime of the offer, default 20). */
  ptimeMs: number;
}

const STATIC_PT: Record<number, G711> = { 0: 'PCMU', 8: 'PCMA' };
const ANSWER_DIRECTION: Record<Direction, Direction> = {
  sendrecv: 'sendrecv',
  sendonly: 'recvonly',
  recvonly: 'sendonly',
  inactive: 'inactive',
};

function rtpmaps(m: MediaDescription): Map<number, { encoding: string; clock: number; channels?: number }> {
  const out = new Map<number, { encoding: string; clock: number; channels?: number }>();
  for (const a of m.attributes) {
    if (a.name !== 'rtpmap' || a.value === undefined) continue;
    const r = /^(\d+) +([^/\s]+)\/(\d+)(?:\/(\d+))?\s*$/.exec(a.value);
    if (!r) throw new SdpParseError(`bad rtpmap '${a.value}'`, 'BAD_RTPMAP');
    out.set(Number(r[1]), { encoding: r[2], clock: Number(r[3]), ...(r[4] ? { channels: Number(r[4]) } : {}) });
  }
  return out;
}

function directionOf(attrs: SdpAttribute[]): Direction | undefined {
  for (const a of attrs) if (DIRECTIONS.has(a.name)) return a.name as Direction;
  return undefined;
}

/**
 * Answer an offer (RFC 3264 §6) with one audio stream: the first PCMU/PCMA of the offer that we
 * support, every telephone-event/8000 of the offer (its payload types and fmtp echoed), and a
 * port-0 m= line for every other stream. Throws SdpParseError or SdpNegotiationError.
 */
export function negotiateAnswer(offerText: string, local: LocalMedia): Negotiated {
  const offer = parseSdp(offerText);
  const supported = local.codecs ?? ['PCMU', 'PCMA'];
  let chosen:
    | { index: number; codec: { name: G711; payloadType: number }; events: number[]; md: MediaDescription }
    | undefined;

  for (const [index, md] of offer.media.entries()) {
    if (chosen || md.media !== 'audio' || md.port === 0) continue;
    // RFC 3264 §6: only plain RTP/AVP(F) can be answered without SRTP keys.
    if (md.protocol !== 'RTP/AVP' && md.protocol !== 'RTP/AVPF') continue;
    const maps = rtpmaps(md);
    let codec: { name: G711; payloadType: number } | undefined;
    const events: number[] = [];
    for (const fmt of md.formats) {
      if (!/^\d+$/.test(fmt)) continue;
      const pt = Number(fmt);
      const map = maps.get(pt);
      const name = map ? map.encoding.toUpperCase() : STATIC_PT[pt];
      const clock = map ? map.clock : 8000;
      if (clock !== 8000) continue;
      if (name === 'TELEPHONE-EVENT') events.push(pt);
      else if (!codec && (name === 'PCMU' || name === 'PCMA') && supported.includes(name)) codec = { name, payloadType: pt };
    }
    if (codec) chosen = { index, codec, events, md };
  }
  if (!chosen) {
    const audio = offer.media.filter((m) => m.media === 'audio');
    if (audio.length === 0) throw new SdpNegotiationError('the offer has no audio stream', 'NO_AUDIO');
    if (audio.every((m) => m.port === 0)) throw new SdpNegotiationError('every audio stream of the offer is disabled (port 0)', 'NO_ACTIVE_AUDIO');
    throw new SdpNegotiationError(`no common codec: we accept ${supported.join(', ')}`, 'NO_COMMON_CODEC');
  }

  const { md, codec, events } = chosen;
  const conn = (md.connection ?? offer.connection)!;
  const declared = directionOf(md.attributes) ?? directionOf(offer.attributes) ?? 'sendrecv';
  // RFC 3264 §8.4: c=0.0.0.0 is the RFC 2543 way of putting a stream on hold.
  const address = conn.address.split('/')[0];
  const nullAddress = address === '0.0.0.0';
  let offerDirection = declared;
  if (nullAddress && declared === 'sendrecv') offerDirection = 'sendonly';
  if (nullAddress && declared === 'recvonly') offerDirection = 'inactive';
  const direction = ANSWER_DIRECTION[offerDirection];
  const ptimeAttr = md.attributes.find((a) => a.name === 'ptime') ?? offer.attributes.find((a) => a.name === 'ptime');
  const ptimeMs = ptimeAttr?.value && /^\d+$/.test(ptimeAttr.value.trim()) ? Number(ptimeAttr.value.trim()) : 20;

  const addrType = local.address.includes(':') ? 'IP6' : 'IP4';
  const codecName = codec.name;
  const audioAttrs: SdpAttribute[] = [{ name: 'rtpmap', value: `${codec.payloadType} ${codecName}/8000` }];
  for (const pt of events) {
    audioAttrs.push({ name: 'rtpmap', value: `${pt} telephone-event/8000` });
    const fmtp = md.attributes.find((a) => a.name === 'fmtp' && a.value !== undefined && a.value.startsWith(`${pt} `));
    if (fmtp) audioAttrs.push({ name: 'fmtp', value: fmtp.value });
  }
  audioAttrs.push({ name: 'ptime', value: String(ptimeMs) }, { name: direction });

  const answer: SessionDescription = {
    version: 0,
    origin: {
      username: 'jitcast',
      sessionId: local.sessionId,
      sessionVersion: String(local.version),
      netType: 'IN',
      addrType,
      address: local.address,
    },
    sessionName: 'jitcast',
    connection: { netType: 'IN', addrType, address: local.address },
    timing: [{ start: '0', stop: '0' }],
    attributes: [],
    other: [],
    media: offer.media.map((m, i): MediaDescription => {
      if (i === chosen!.index) {
        const formats = m.formats.filter((f) => f === String(codec.payloadType) || events.includes(Number(f)));
        return { media: 'audio', port: local.port, protocol: m.protocol, formats, attributes: audioAttrs, other: [] };
      }
      // RFC 3264 §6: a stream we do not accept is answered with port 0 and the offer's formats.
      return { media: m.media, port: 0, protocol: m.protocol, formats: m.formats.length ? m.formats : ['0'], attributes: [], other: [] };
    }),
  };

  const negotiated: Negotiated = {
    answer: serializeSdp(answer),
    codec,
    telephoneEventPts: events,
    remote: { address, port: md.port },
    direction,
    offerDirection,
    hold: offerDirection === 'sendonly' || offerDirection === 'inactive',
    ptimeMs,
  };
  if (events.length > 0) negotiated.telephoneEventPt = events[0];
  return negotiated;
}
