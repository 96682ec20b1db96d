/**
 * RTP fixed header, RFC 3550 §5.1, with the header extension of §5.3.1 and padding:
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                           timestamp                           |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |           synchronization source (SSRC) identifier            |
 *  +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
 *  |            contributing source (CSRC) identifiers             |
 *  |                             ....                              |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |      defined by profile       |           length              |  (if X, §5.3.1;
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   length counts
 *  |                        header extension                       |   32-bit words)
 *  |                             ....                              |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                            payload  ...  | padding | count    |  (if P: last octet
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   counts padding)
 */
import { CodecError } from './errors.ts';

/** One RTP packet; `payload` and `extension.data` are views into the parsed buffer (no copy). */
export interface RtpPacket {
  marker: boolean;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  csrcs: number[];
  extension?: { profile: number; data: Buffer };
  /** Octets of padding after the payload, including the count octet itself; 0 when P is clear. */
  paddingLength: number;
  payload: Buffer;
}

/** A datagram that is not a well-formed RTP packet; `code` says which check failed. */
export class RtpParseError extends CodecError {}

/** An RtpPacket whose fields cannot be put on the wire (out of range, misaligned extension). */
export class RtpSerializeError extends CodecError {}

/** Size of the fixed header without CSRCs (RFC 3550 §5.1). */
export const RTP_HEADER_SIZE = 12;

/** Parses an RTP packet (RFC 3550 §5.1), checking the length rules of §A.1. */
export function parseRtp(buf: Buffer): RtpPacket {
  if (buf.length < RTP_HEADER_SIZE) {
    throw new RtpParseError(`RTP packet too short [length:${buf.length}]`, 'RTP_TOO_SHORT');
  }
  const b0 = buf[0];
  const version = b0 >> 6;
  if (version !== 2) {
    throw new RtpParseError(`RTP version is not 2 [version:${version}]`, 'RTP_BAD_VERSION');
  }
  const hasPadding = (b0 & 0x20) !== 0;
  const hasExtension = (b0 & 0x10) !== 0;
  const csrcCount = b0 & 0x0f;
  const b1 = buf[1];

  let offset = RTP_HEADER_SIZE + 4 * csrcCount;
  if (offset > buf.length) {
    throw new RtpParseError(
      `CSRC list overruns the packet [csrcCount:${csrcCount} length:${buf.length}]`,
      'RTP_CSRC_OVERRUN',
    );
  }
  const csrcs: number[] = [];
  for (let i = 0; i < csrcCount; i++) csrcs.push(buf.readUInt32BE(RTP_HEADER_SIZE + 4 * i));

  let extension: RtpPacket['extension'];
  if (hasExtension) {
    if (offset + 4 > buf.length) {
      throw new RtpParseError(`extension header overruns the packet [length:${buf.length}]`, 'RTP_EXTENSION_OVERRUN');
    }
    const profile = buf.readUInt16BE(offset);
    const words = buf.readUInt16BE(offset + 2);
    const end = offset + 4 + 4 * words;
    if (end > buf.length) {
      throw new RtpParseError(
        `extension overruns the packet [words:${words} length:${buf.length}]`,
        'RTP_EXTENSION_OVERRUN',
      );
    }
    extension = { profile, data: buf.subarray(offset + 4, end) };
    offset = end;
  }

  let paddingLength = 0;
  if (hasPadding) {
    // §5.1: the last octet counts the padding octets including itself, so it cannot be 0.
    paddingLength = buf[buf.length - 1];
    if (paddingLength === 0) {
      throw new RtpParseError('padding bit set but padding count is 0', 'RTP_BAD_PADDING');
    }
    if (offset + paddingLength > buf.length) {
      throw new RtpParseError(
        `padding overruns the packet [padding:${paddingLength} header:${offset} length:${buf.length}]`,
        'RTP_BAD_PADDING',
      );
    }
  }

  return {
    marker: (b1 & 0x80) !== 0,
    payloadType: b1 & 0x7f,
    sequenceNumber: buf.readUInt16BE(2),
    timestamp: buf.readUInt32BE(4),
    ssrc: buf.readUInt32BE(8),
    csrcs,
    ...(extension ? { extension } : {}),
    paddingLength,
    payload: buf.subarray(offset, buf.length - paddingLength),
  };
}

function checkRange(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RtpSerializeError(`'${name}' must be an integer 0-${max} [${name}:${value}]`, 'RTP_FIELD_RANGE');
  }
}

/** Serialises an RTP packet (RFC 3550 §5.1); padding is zeros followed by the count octet. */
export function serializeRtp(p: RtpPacket): Buffer {
  checkRange('payloadType', p.payloadType, 0x7f);
  checkRange('sequenceNumber', p.sequenceNumber, 0xffff);
  checkRange('timestamp', p.timestamp, 0xffffffff);
  checkRange('ssrc', p.ssrc, 0xffffffff);
  checkRange('paddingLength', p.paddingLength, 0xff);
  if (p.csrcs.length > 15) {
    throw new RtpSerializeError(`at most 15 CSRCs fit the CC field [csrcs:${p.csrcs.length}]`, 'RTP_FIELD_RANGE');
  }
  p.csrcs.forEach((c, i) => checkRange(`csrcs[${i}]`, c, 0xffffffff));
  const ext = p.extension;
  if (ext) {
    checkRange('extension.profile', ext.profile, 0xffff);
    // §5.3.1: the extension length is a count of 32-bit words.
    if (ext.data.length % 4 !== 0 || ext.data.length / 4 > 0xffff) {
      throw new RtpSerializeError(
        `extension data must be a multiple of 4 octets [length:${ext.data.length}]`,
        'RTP_EXTENSION_ALIGNMENT',
      );
    }
  }

  const headerLength = RTP_HEADER_SIZE + 4 * p.csrcs.length + (ext ? 4 + ext.data.length : 0);
  const out = Buffer.alloc(headerLength + p.payload.length + p.paddingLength);
  out[0] = 0x80 | (p.paddingLength > 0 ? 0x20 : 0) | (ext ? 0x10 : 0) | p.csrcs.length;
  out[1] = (p.marker ? 0x80 : 0) | p.payloadType;
  out.writeUInt16BE(p.sequenceNumber, 2);
  out.writeUInt32BE(p.timestamp, 4);
  out.writeUInt32BE(p.ssrc, 8);
  let offset = RTP_HEADER_SIZE;
  for (const csrc of p.csrcs) {
    out.writeUInt32BE(csrc, offset);
    offset += 4;
  }
  if (ext) {
    out.writeUInt16BE(ext.profile, offset);
    out.writeUInt16BE(ext.data.length / 4, offset + 2);
    ext.data.copy(out, offset + 4);
    offset += 4 + ext.data.length;
  }
  p.payload.copy(out, offset);
  if (p.paddingLength > 0) out[out.length - 1] = p.paddingLength;
  return out;
}

/**
 * Tells RTCP from RTP on a shared port (RFC 5761 §4): RTCP packet types 192-223 put the second
 * octet where RTP would have marker + payload type 64-95, which RTP must not use when muxed.
 */
export function isRtcp(buf: Buffer): boolean {
  if (buf.length < 2 || buf[0] >> 6 !== 2) return false;
  const pt = buf[1];
  return pt >= 192 && pt <= 223;
}

/**
 * Signed distance from sequence number `a` to `b` modulo 2^16 (RFC 3550 §A.1), in -32768…32767:
 * positive when `b` is newer, so `seqDistance(65535, 0)` is 1.
 */
export function seqDistance(a: number, b: number): number {
  return ((((b - a) & 0xffff) + 0x8000) & 0xffff) - 0x8000;
}

/** Signed distance from RTP timestamp `a` to `b` modulo 2^32, positive when `b` is later. */
export function timestampDistance(a: number, b: number): number {
  return (b - a) | 0;
}
