/**
 * Writes RTP into pcap files for sipp's `play_pcap_audio`: a caller's whole media (a test tone
 * and RFC 4733 key presses with their own sequence numbers and timestamps — FIELD-NOTES: replaying
 * sipp's bundled captures repeats identical packets, which a correct receiver takes as one key).
 * Packets are Ethernet/IPv4/UDP with correct checksums, since sipp adjusts them incrementally.
 */
import { writeFileSync } from 'node:fs';
import { encodeUlaw } from '../../codecs/g711.ts';
import { serializeRtp } from '../../codecs/rtp.ts';
import { serializeTelephoneEvent, digitToEvent } from '../../codecs/rfc4733.ts';

/** One packet to write: RTP bytes and when to send it (ms from the start). */
export interface TimedPacket {
  atMs: number;
  rtp: Buffer;
}

function csum(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

function frame(rtp: Buffer, srcPort = 40000, dstPort = 40002): Buffer {
  const udpLen = 8 + rtp.length;
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + udpLen, 2);
  ip[8] = 64;
  ip[9] = 17;
  Buffer.from([127, 0, 0, 1]).copy(ip, 12);
  Buffer.from([127, 0, 0, 1]).copy(ip, 16);
  ip.writeUInt16BE(~csum(ip) & 0xffff, 10);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(srcPort, 0);
  udp.writeUInt16BE(dstPort, 2);
  udp.writeUInt16BE(udpLen, 4);
  const pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 17]), Buffer.from([udpLen >> 8, udpLen & 0xff])]);
  const sum = csum(Buffer.concat([pseudo, udp, rtp]));
  udp.writeUInt16BE(~sum & 0xffff || 0xffff, 6);
  const eth = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00]);
  return Buffer.concat([eth, ip, udp, rtp]);
}

/** Writes a classic pcap (LINKTYPE_ETHERNET) of the packets. */
export function writePcap(file: string, packets: TimedPacket[]): void {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(65535, 16);
  head.writeUInt32LE(1, 20);
  const parts: Buffer[] = [head];
  for (const p of packets) {
    const f = frame(p.rtp);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(Math.floor(p.atMs / 1000), 0);
    rec.writeUInt32LE(Math.round((p.atMs % 1000) * 1000), 4);
    rec.writeUInt32LE(f.length, 8);
    rec.writeUInt32LE(f.length, 12);
    parts.push(rec, f);
  }
  writeFileSync(file, Buffer.concat(parts));
}

/** A caller's media plan: audio throughout, key presses at given times. */
export interface CallMedia {
  /** Total length in ms. */
  durationMs: number;
  /** PCM for the caller's audio (8 kHz), looped; silence when absent. */
  audio: (sampleIndex: number) => number;
  /** Keys to press: `[{ atMs, digits }]`; each key 100 ms with 100 ms between keys. */
  keys: Array<{ atMs: number; digits: string }>;
  /** RTP payload type of telephone-event (101 as most phones offer). Undefined: keys are not sent as events. */
  eventPt?: number;
}

/** Builds the RTP packets of a call: PCMU audio every 20 ms, RFC 4733 events for the keys. */
export function callPackets(m: CallMedia): TimedPacket[] {
  const ssrc = 0x1a2b3c4d;
  let seq = 1000;
  const out: TimedPacket[] = [];
  // Key press windows: during a key, audio packets pause (as phones do with RFC 4733).
  const presses: Array<{ start: number; digit: string }> = [];
  for (const k of m.keys) {
    [...k.digits].forEach((d, i) => presses.push({ start: k.atMs + i * 200, digit: d }));
  }
  const pressAt = (t: number) => presses.find((p) => t >= p.start && t < p.start + 100);
  for (let t = 0; t < m.durationMs; t += 20) {
    const ts = (t * 8) >>> 0;
    const press = m.eventPt !== undefined ? pressAt(t) : undefined;
    if (press) {
      const first = t === press.start;
      const durationTs = (t - press.start + 20) * 8;
      const ending = t + 20 >= press.start + 100;
      const payload = serializeTelephoneEvent({ event: digitToEvent(press.digit), end: ending, volume: 10, duration: durationTs });
      const rtp = (s: number) => serializeRtp({ marker: first, payloadType: m.eventPt!, sequenceNumber: s & 0xffff, timestamp: (press.start * 8) >>> 0, ssrc, csrcs: [], paddingLength: 0, payload });
      out.push({ atMs: t, rtp: rtp(seq++) });
      if (ending) {
        // RFC 4733 §2.5.1.4: the end packet goes out three times, same sequence number.
        out.push({ atMs: t + 1, rtp: rtp(seq - 1) }, { atMs: t + 2, rtp: rtp(seq - 1) });
      }
      continue;
    }
    const pcm = new Int16Array(160);
    for (let i = 0; i < 160; i++) pcm[i] = m.audio(t * 8 + i);
    out.push({ atMs: t, rtp: serializeRtp({ marker: t === 0, payloadType: 0, sequenceNumber: seq++ & 0xffff, timestamp: ts, ssrc, csrcs: [], paddingLength: 0, payload: encodeUlaw(pcm) }) });
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

/** A sine as an audio function. */
export function tone(freqHz: number, amplitude = 8000): (n: number) => number {
  return (n) => Math.round(amplitude * Math.sin((2 * Math.PI * freqHz * n) / 8000));
}
