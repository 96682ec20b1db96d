import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  isRtcp,
  parseRtp,
  RtpParseError,
  RtpSerializeError,
  seqDistance,
  serializeRtp,
  timestampDistance,
  type RtpPacket,
} from '../../codecs/rtp.ts';
import { CodecError } from '../../codecs/errors.ts';
import { DTMF_1, DTMF_POUND, G711A_FIRST, G711A_SPEECH } from '../fixtures/sipp-rtp.ts';

const bytes = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');

/** Asserts that `fn` throws an RtpParseError (a CodecError) with the given code. */
function assertParseError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof RtpParseError);
    assert.ok(err instanceof CodecError);
    assert.equal(err.code, code);
    return true;
  });
}

// A hand-built packet exercising every optional part: V=2 P=1 X=1 CC=2, M=1 PT=0,
// seq 0xfffe, ts 0x01020304, SSRC 0xdeadbeef, CSRCs 1 and 0xffffffff, extension profile 0xbede
// with one word, payload 4 µ-law bytes, 3 octets of padding (count octet = 3).
const FULL_PACKET = bytes(`
  b2 80 ff fe  01 02 03 04  de ad be ef
  00 00 00 01  ff ff ff ff
  be de 00 01  10 ab cd 00
  ff 7f 00 80
  00 00 03`);

describe('parseRtp()', () => {
  it('parseRtp() reads the first PCMA packet of g711a.pcap: marker, PT 8, seq 59133, ts 240', () => {
    const p = parseRtp(bytes(G711A_FIRST));
    assert.equal(p.marker, true);
    assert.equal(p.payloadType, 8);
    assert.equal(p.sequenceNumber, 0xe6fd);
    assert.equal(p.timestamp, 0xf0);
    assert.equal(p.ssrc, 0xdee0ee8f);
    assert.deepEqual(p.csrcs, []);
    assert.equal(p.extension, undefined);
    assert.equal(p.paddingLength, 0);
    assert.equal(p.payload.length, 240);
    assert.ok(p.payload.every((b) => b === 0xd5));
  });

  it('parseRtp() reads a PCMA speech packet of g711a.pcap without the marker bit', () => {
    const p = parseRtp(bytes(G711A_SPEECH));
    assert.equal(p.marker, false);
    assert.equal(p.payloadType, 8);
    assert.equal(p.sequenceNumber, 0xe763);
    assert.equal(p.timestamp, 0x6090);
    assert.equal(p.payload.length, 240);
    assert.deepEqual([...p.payload.subarray(0, 4)], [0xd5, 0x14, 0x07, 0x03]);
  });

  it('parseRtp() reads the first telephone-event packet of dtmf_2833_1.pcap: marker, PT 101', () => {
    const p = parseRtp(bytes(DTMF_1[0]));
    assert.equal(p.marker, true);
    assert.equal(p.payloadType, 101);
    assert.equal(p.sequenceNumber, 0x1f30);
    assert.equal(p.timestamp, 0x33e0);
    assert.equal(p.ssrc, 0x0e05384e);
    assert.deepEqual([...p.payload], [0x01, 0x0a, 0x00, 0x00]);
  });

  it('parseRtp() reads every option of a packet with CSRCs, an extension and padding', () => {
    const p = parseRtp(FULL_PACKET);
    assert.equal(p.marker, true);
    assert.equal(p.payloadType, 0);
    assert.equal(p.sequenceNumber, 0xfffe);
    assert.equal(p.timestamp, 0x01020304);
    assert.equal(p.ssrc, 0xdeadbeef);
    assert.deepEqual(p.csrcs, [1, 0xffffffff]);
    assert.equal(p.extension?.profile, 0xbede);
    assert.deepEqual([...p.extension!.data], [0x10, 0xab, 0xcd, 0x00]);
    assert.equal(p.paddingLength, 3);
    assert.deepEqual([...p.payload], [0xff, 0x7f, 0x00, 0x80]);
  });

  it('parseRtp() accepts a 12-byte header with an empty payload', () => {
    const p = parseRtp(bytes('80 00 00 01 00 00 00 02 00 00 00 03'));
    assert.equal(p.payload.length, 0);
    assert.equal(p.sequenceNumber, 1);
  });

  it('parseRtp() accepts a packet whose padding is its whole payload', () => {
    const p = parseRtp(bytes('a0 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04'));
    assert.equal(p.paddingLength, 4);
    assert.equal(p.payload.length, 0);
  });

  it('parseRtp() rejects an 11-byte packet with RtpParseError RTP_TOO_SHORT', () => {
    assertParseError(() => parseRtp(bytes('80 00 00 01 00 00 00 02 00 00 00')), 'RTP_TOO_SHORT');
  });

  it('parseRtp() rejects an empty buffer with RtpParseError RTP_TOO_SHORT', () => {
    assertParseError(() => parseRtp(Buffer.alloc(0)), 'RTP_TOO_SHORT');
  });

  for (const [first, version] of [[0x00, 0], [0x40, 1], [0xc0, 3]] as const) {
    it(`parseRtp() rejects version ${version} with RtpParseError RTP_BAD_VERSION`, () => {
      const buf = bytes(G711A_FIRST);
      buf[0] = first;
      assertParseError(() => parseRtp(buf), 'RTP_BAD_VERSION');
    });
  }

  it('parseRtp() rejects a CSRC count of 15 in a 20-byte packet with RTP_CSRC_OVERRUN', () => {
    assertParseError(() => parseRtp(bytes('8f 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 00 00 00 05')), 'RTP_CSRC_OVERRUN');
  });

  it('parseRtp() rejects an extension bit with no room for the extension header with RTP_EXTENSION_OVERRUN', () => {
    assertParseError(() => parseRtp(bytes('90 00 00 01 00 00 00 02 00 00 00 03 be de')), 'RTP_EXTENSION_OVERRUN');
  });

  it('parseRtp() rejects an extension length beyond the packet with RTP_EXTENSION_OVERRUN', () => {
    assertParseError(
      () => parseRtp(bytes('90 00 00 01 00 00 00 02 00 00 00 03 be de 00 02 01 02 03 04')),
      'RTP_EXTENSION_OVERRUN',
    );
  });

  it('parseRtp() rejects a padding count of 0 with RTP_BAD_PADDING', () => {
    assertParseError(() => parseRtp(bytes('a0 00 00 01 00 00 00 02 00 00 00 03 ff ff 00')), 'RTP_BAD_PADDING');
  });

  it('parseRtp() rejects a padding count larger than the payload with RTP_BAD_PADDING', () => {
    assertParseError(() => parseRtp(bytes('a0 00 00 01 00 00 00 02 00 00 00 03 ff ff 05')), 'RTP_BAD_PADDING');
  });

  it('parseRtp() rejects padding that would eat into the extension with RTP_BAD_PADDING', () => {
    assertParseError(
      () => parseRtp(bytes('b0 00 00 01 00 00 00 02 00 00 00 03 be de 00 01 01 02 03 04 02')),
      'RTP_BAD_PADDING',
    );
  });
});

describe('serializeRtp()', () => {
  const captures = [
    ['g711a.pcap packet 1', G711A_FIRST],
    ['g711a.pcap packet 103', G711A_SPEECH],
    ...DTMF_1.map((h, i) => [`dtmf_2833_1.pcap packet ${i + 1}`, h] as const),
    ...DTMF_POUND.map((h, i) => [`dtmf_2833_pound.pcap packet ${i + 1}`, h] as const),
  ] as const;
  for (const [name, hex] of captures) {
    it(`serializeRtp(parseRtp(${name})) returns the captured bytes`, () => {
      assert.deepEqual(serializeRtp(parseRtp(bytes(hex))), bytes(hex));
    });
  }

  it('serializeRtp(parseRtp()) returns the bytes of the CSRC + extension + padding packet', () => {
    assert.deepEqual(serializeRtp(parseRtp(FULL_PACKET)), FULL_PACKET);
  });

  it('serializeRtp() writes literal header bytes for given fields', () => {
    const packet: RtpPacket = {
      marker: false,
      payloadType: 0,
      sequenceNumber: 1,
      timestamp: 160,
      ssrc: 0x11223344,
      csrcs: [],
      paddingLength: 0,
      payload: Buffer.from([0xff, 0xff]),
    };
    assert.deepEqual(serializeRtp(packet), bytes('80 00 00 01 00 00 00 a0 11 22 33 44 ff ff'));
  });

  it('parseRtp(serializeRtp(p)) returns the fields of p', () => {
    const packet: RtpPacket = {
      marker: true,
      payloadType: 101,
      sequenceNumber: 65535,
      timestamp: 0xffffffff,
      ssrc: 0,
      csrcs: [7, 8, 9],
      extension: { profile: 0x1000, data: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]) },
      paddingLength: 8,
      payload: Buffer.from([0x05, 0x8a, 0x03, 0x20]),
    };
    assert.deepEqual(parseRtp(serializeRtp(packet)), packet);
  });

  it('serializeRtp() rejects payload type 128 with RtpSerializeError RTP_FIELD_RANGE', () => {
    const p = parseRtp(bytes(G711A_FIRST));
    assert.throws(() => serializeRtp({ ...p, payloadType: 128 }), (e: unknown) => e instanceof RtpSerializeError && e.code === 'RTP_FIELD_RANGE');
  });

  it('serializeRtp() rejects sequence number 65536 with RtpSerializeError RTP_FIELD_RANGE', () => {
    const p = parseRtp(bytes(G711A_FIRST));
    assert.throws(() => serializeRtp({ ...p, sequenceNumber: 65536 }), (e: unknown) => e instanceof RtpSerializeError && e.code === 'RTP_FIELD_RANGE');
  });

  it('serializeRtp() rejects 16 CSRCs with RtpSerializeError RTP_FIELD_RANGE', () => {
    const p = parseRtp(bytes(G711A_FIRST));
    assert.throws(() => serializeRtp({ ...p, csrcs: new Array<number>(16).fill(1) }), (e: unknown) => e instanceof RtpSerializeError && e.code === 'RTP_FIELD_RANGE');
  });

  it('serializeRtp() rejects 3 octets of extension data with RtpSerializeError RTP_EXTENSION_ALIGNMENT', () => {
    const p = parseRtp(bytes(G711A_FIRST));
    assert.throws(
      () => serializeRtp({ ...p, extension: { profile: 1, data: Buffer.from([1, 2, 3]) } }),
      (e: unknown) => e instanceof RtpSerializeError && e.code === 'RTP_EXTENSION_ALIGNMENT',
    );
  });
});

describe('isRtcp()', () => {
  it('isRtcp() returns true for an RTCP sender report (PT 200)', () => {
    assert.equal(isRtcp(bytes('80 c8 00 06 de e0 ee 8f')), true);
  });

  it('isRtcp() returns true for receiver report 201 and for the range ends 192 and 223', () => {
    assert.equal(isRtcp(bytes('81 c9 00 07')), true);
    assert.equal(isRtcp(bytes('80 c0 00 00')), true);
    assert.equal(isRtcp(bytes('80 df 00 00')), true);
  });

  it('isRtcp() returns false for 191 and 224, just outside the RFC 5761 range', () => {
    assert.equal(isRtcp(bytes('80 bf 00 00')), false);
    assert.equal(isRtcp(bytes('80 e0 00 00')), false);
  });

  it('isRtcp() returns false for the captured PCMA and telephone-event packets', () => {
    assert.equal(isRtcp(bytes(G711A_FIRST)), false);
    assert.equal(isRtcp(bytes(G711A_SPEECH)), false);
    assert.equal(isRtcp(bytes(DTMF_1[0])), false);
  });

  it('isRtcp() returns false for a STUN binding request (version bits 0) and a 1-byte buffer', () => {
    assert.equal(isRtcp(bytes('00 01 00 00 21 12 a4 42')), false);
    assert.equal(isRtcp(bytes('80')), false);
  });
});

describe('seqDistance() and timestampDistance()', () => {
  const seqCases: Array<[number, number, number]> = [
    [0, 1, 1],
    [1, 0, -1],
    [65535, 0, 1],
    [0, 65535, -1],
    [65530, 5, 11],
    [5, 65530, -11],
    [100, 100, 0],
    [0, 32767, 32767],
    [0, 32768, -32768],
  ];
  for (const [a, b, d] of seqCases) {
    it(`seqDistance(${a}, ${b}) returns ${d}`, () => {
      assert.equal(seqDistance(a, b), d);
    });
  }

  it('timestampDistance() wraps at 2^32: from 0xffffff60 to 0x40 is 224', () => {
    assert.equal(timestampDistance(0xffffff60, 0x40), 224);
    assert.equal(timestampDistance(0x40, 0xffffff60), -224);
    assert.equal(timestampDistance(160, 320), 160);
  });
});
