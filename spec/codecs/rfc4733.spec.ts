import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  digitToEvent,
  eventToDigit,
  parseTelephoneEvent,
  serializeTelephoneEvent,
  TelephoneEventError,
  TelephoneEventReceiver,
  type TelephoneEvent,
  type TelephoneEventPacket,
} from '../../codecs/rfc4733.ts';
import { parseRtp } from '../../codecs/rtp.ts';
import { CodecError } from '../../codecs/errors.ts';
import { DTMF_1, DTMF_8, DTMF_POUND, DTMF_STAR } from '../fixtures/sipp-rtp.ts';

const bytes = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');
const packetsOf = (capture: readonly string[]): TelephoneEventPacket[] => capture.map((h) => parseRtp(bytes(h)));

/** Moves a capture to another RTP timestamp and sequence range, as a second key press would be. */
function shifted(capture: readonly string[], tsShift: number, seqShift: number): TelephoneEventPacket[] {
  return packetsOf(capture).map((p) => ({
    ...p,
    timestamp: (p.timestamp + tsShift) >>> 0,
    sequenceNumber: (p.sequenceNumber + seqShift) & 0xffff,
  }));
}

function feed(receiver: TelephoneEventReceiver, packets: TelephoneEventPacket[]): string {
  return packets.map((p) => receiver.push(p) ?? '').join('');
}

/**
 * The packets a sender emits for one press per RFC 4733 §2.5.1: first report with the marker bit
 * and duration 0... then one update per 20 ms packet, then the final report three times (§2.5.1.4),
 * all carrying the RTP timestamp of the event's start.
 */
function press(digit: string, timestamp: number, firstSeq: number, updates = 5, volume = 10): TelephoneEventPacket[] {
  const event = digitToEvent(digit);
  const out: TelephoneEventPacket[] = [];
  let seq = firstSeq;
  for (let i = 0; i <= updates; i++) {
    out.push({
      timestamp,
      sequenceNumber: seq++ & 0xffff,
      marker: i === 0,
      payload: serializeTelephoneEvent({ event, end: false, volume, duration: i * 160 }),
    });
  }
  for (let i = 0; i < 3; i++) {
    out.push({
      timestamp,
      sequenceNumber: seq++ & 0xffff,
      marker: false,
      payload: serializeTelephoneEvent({ event, end: true, volume, duration: (updates + 1) * 160 }),
    });
  }
  return out;
}

// §2.3 field layout, literal bytes both ways: event | E R volume(6) | duration(16).
const VECTORS: Array<[string, TelephoneEvent]> = [
  ['01 0a 00 00', { event: 1, end: false, volume: 10, duration: 0 }],
  ['01 8a 08 c0', { event: 1, end: true, volume: 10, duration: 2240 }],
  ['05 8a 03 20', { event: 5, end: true, volume: 10, duration: 800 }],
  ['0b 0a 01 40', { event: 11, end: false, volume: 10, duration: 320 }],
  ['0a 3f ff ff', { event: 10, end: false, volume: 63, duration: 65535 }],
  ['10 80 00 a0', { event: 16, end: true, volume: 0, duration: 160 }],
];

describe('parseTelephoneEvent() and serializeTelephoneEvent()', () => {
  for (const [hex, event] of VECTORS) {
    it(`parseTelephoneEvent(${hex}) returns ${JSON.stringify(event)}`, () => {
      assert.deepEqual(parseTelephoneEvent(bytes(hex)), event);
    });
    it(`serializeTelephoneEvent(${JSON.stringify(event)}) returns ${hex}`, () => {
      assert.deepEqual(serializeTelephoneEvent(event), bytes(hex));
    });
  }

  it('parseTelephoneEvent() ignores the reserved R bit (RFC 4733 §2.3.3)', () => {
    assert.deepEqual(parseTelephoneEvent(bytes('05 ca 03 20')), { event: 5, end: true, volume: 10, duration: 800 });
  });

  it('parseTelephoneEvent() reads the first report of a longer payload', () => {
    assert.deepEqual(parseTelephoneEvent(bytes('09 07 01 90 09 87 03 20')), { event: 9, end: false, volume: 7, duration: 400 });
  });

  it('parseTelephoneEvent() reads every payload of dtmf_2833_1.pcap: digit 1, volume 10, end on the last three', () => {
    const events = packetsOf(DTMF_1).map((p) => parseTelephoneEvent(p.payload));
    assert.deepEqual(
      events.map((e) => e.duration),
      [0, 320, 640, 960, 1280, 1600, 1920, 2240, 2240, 2240],
    );
    assert.deepEqual(
      events.map((e) => e.end),
      [false, false, false, false, false, false, false, true, true, true],
    );
    assert.ok(events.every((e) => e.event === 1 && e.volume === 10));
  });

  it('parseTelephoneEvent() reads event 10 (*) from dtmf_2833_star.pcap and 11 (#) from dtmf_2833_pound.pcap', () => {
    assert.equal(parseTelephoneEvent(packetsOf(DTMF_STAR)[0].payload).event, 10);
    assert.equal(parseTelephoneEvent(packetsOf(DTMF_POUND)[0].payload).event, 11);
  });

  it('serializeTelephoneEvent(parseTelephoneEvent()) returns each captured payload', () => {
    for (const p of [...packetsOf(DTMF_1), ...packetsOf(DTMF_POUND)]) {
      assert.deepEqual(serializeTelephoneEvent(parseTelephoneEvent(p.payload)), p.payload);
    }
  });

  it('parseTelephoneEvent() rejects a 3-byte payload with TelephoneEventError TELEPHONE_EVENT_TOO_SHORT', () => {
    assert.throws(
      () => parseTelephoneEvent(bytes('01 0a 00')),
      (e: unknown) => e instanceof TelephoneEventError && e instanceof CodecError && e.code === 'TELEPHONE_EVENT_TOO_SHORT',
    );
  });

  it('serializeTelephoneEvent() rejects volume 64 and duration 65536 with TELEPHONE_EVENT_RANGE', () => {
    const ok: TelephoneEvent = { event: 1, end: false, volume: 10, duration: 0 };
    for (const bad of [{ ...ok, volume: 64 }, { ...ok, duration: 65536 }, { ...ok, event: 256 }, { ...ok, event: -1 }]) {
      assert.throws(() => serializeTelephoneEvent(bad), (e: unknown) => e instanceof TelephoneEventError && e.code === 'TELEPHONE_EVENT_RANGE');
    }
  });
});

describe('eventToDigit() and digitToEvent()', () => {
  const table: Array<[number, string]> = [...'0123456789*#ABCD'].map((d, i) => [i, d]);
  for (const [event, digit] of table) {
    it(`eventToDigit(${event}) returns '${digit}' and digitToEvent('${digit}') returns ${event}`, () => {
      assert.equal(eventToDigit(event), digit);
      assert.equal(digitToEvent(digit), event);
    });
  }

  it('eventToDigit() returns undefined for 16 (flash), -1 and 1.5', () => {
    assert.equal(eventToDigit(16), undefined);
    assert.equal(eventToDigit(-1), undefined);
    assert.equal(eventToDigit(1.5), undefined);
  });

  it("digitToEvent('a') returns 12 (keys A-D in either case)", () => {
    assert.equal(digitToEvent('a'), 12);
    assert.equal(digitToEvent('d'), 15);
  });

  it("digitToEvent() rejects 'E', '' and '12' with TelephoneEventError UNKNOWN_DIGIT", () => {
    for (const bad of ['E', '', '12']) {
      assert.throws(() => digitToEvent(bad), (e: unknown) => e instanceof TelephoneEventError && e.code === 'UNKNOWN_DIGIT');
    }
  });
});

describe('TelephoneEventReceiver', () => {
  it('push() reports one 1 for the ten packets of dtmf_2833_1.pcap, on the first packet', () => {
    const receiver = new TelephoneEventReceiver();
    const results = packetsOf(DTMF_1).map((p) => receiver.push(p));
    assert.deepEqual(results, ['1', ...new Array<undefined>(9).fill(undefined)]);
  });

  it('push() reports 1, 8, *, # for the four sipp captures played in turn', () => {
    const receiver = new TelephoneEventReceiver();
    const all = [DTMF_1, DTMF_8, DTMF_STAR, DTMF_POUND].flatMap(packetsOf);
    assert.equal(feed(receiver, all), '18*#');
  });

  it('push() reports one digit when the same capture is replayed with identical timestamps', () => {
    const receiver = new TelephoneEventReceiver();
    assert.equal(feed(receiver, [...packetsOf(DTMF_8), ...packetsOf(DTMF_8)]), '8');
  });

  it('push() reports 88 when the second press has a new timestamp (and sequence numbers)', () => {
    const receiver = new TelephoneEventReceiver();
    assert.equal(feed(receiver, [...packetsOf(DTMF_8), ...shifted(DTMF_8, 4000, 10)]), '88');
  });

  it('push() reports one digit for a full press with three end packets', () => {
    const receiver = new TelephoneEventReceiver();
    assert.equal(feed(receiver, press('9', 0, 1)), '9');
  });

  it('push() reports 9 then 1 for two presses, as in the two-digit example of RFC 4733 §5', () => {
    const receiver = new TelephoneEventReceiver();
    assert.equal(feed(receiver, [...press('9', 0, 1, 4, 7), ...press('1', 7040, 9, 4, 7)]), '91');
  });

  it('push() still reports the press when its first packets (with the marker bit) are lost', () => {
    const receiver = new TelephoneEventReceiver();
    assert.equal(feed(receiver, press('5', 1600, 100).slice(3)), '5');
  });

  it('push() reports a press seen only through its end packets', () => {
    const receiver = new TelephoneEventReceiver();
    assert.equal(feed(receiver, press('#', 1600, 100).slice(-3)), '#');
  });

  it('push() does not repeat a digit when a late end packet of it arrives after the next press started', () => {
    const receiver = new TelephoneEventReceiver();
    const first = press('4', 1000, 10);
    const second = press('4', 3000, 19);
    const lateEnd = first.pop()!;
    assert.equal(feed(receiver, [...first, second[0], lateEnd, ...second.slice(1)]), '44');
  });

  it('push() reports both presses in arrival order when their packets are reordered', () => {
    const receiver = new TelephoneEventReceiver();
    const a = press('2', 1000, 10);
    const b = press('3', 3000, 19);
    // b's start overtakes a's start; every packet still arrives.
    assert.equal(feed(receiver, [b[0], ...a, ...b.slice(1)]), '32');
  });

  it('push() reports 1234 for presses whose timestamps wrap around 2^32', () => {
    const receiver = new TelephoneEventReceiver();
    const base = 0xffffff00;
    const packets = [...'1234'].flatMap((d, i) => press(d, (base + i * 1600) >>> 0, 65530 + i * 9));
    assert.equal(feed(receiver, packets), '1234');
  });

  it('push() treats a long event split into segments (RFC 4733 §2.5.1.3) as one press', () => {
    const receiver = new TelephoneEventReceiver();
    const event = digitToEvent('0');
    const mk = (timestamp: number, end: boolean, duration: number, seq: number): TelephoneEventPacket => ({
      timestamp,
      sequenceNumber: seq,
      marker: seq === 0,
      payload: serializeTelephoneEvent({ event, end, volume: 10, duration }),
    });
    const packets = [mk(0, false, 0, 0), mk(0, false, 40000, 1), mk(0, false, 0xffff, 2), mk(0xffff, false, 160, 3), mk(0xffff, true, 800, 4)];
    assert.equal(feed(receiver, packets), '0');
  });

  it('push() returns undefined for non-DTMF events (16, flash) and for payloads shorter than 4 bytes', () => {
    const receiver = new TelephoneEventReceiver();
    assert.equal(receiver.push({ timestamp: 0, sequenceNumber: 0, marker: true, payload: bytes('10 0a 00 00') }), undefined);
    assert.equal(receiver.push({ timestamp: 160, sequenceNumber: 1, marker: true, payload: bytes('05 0a') }), undefined);
    assert.equal(receiver.push({ timestamp: 320, sequenceNumber: 2, marker: true, payload: bytes('05 0a 00 00') }), '5');
  });
});
