import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import { admitPacket, createEncoderPortService, validateStartParams, type EncoderPortList, type SourceLock } from '../../actors/encoder-port.service.ts';
import { encodeAlaw, encodeUlaw } from '../../codecs/g711.ts';
import { isValidStreamId } from '../../codecs/ids.ts';
import { serializeRtp } from '../../codecs/rtp.ts';
import { sine, toneFrequency } from '../../codecs/tones.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type EncoderStartParams, type EncoderStartResult, type StreamDataset, type StreamRecord } from '../../runtime/contracts.ts';
import { NoCapacityError, ValidationFailedError } from '../../runtime/errors.ts';
import { testConfig } from '../support/config.ts';
import { waitFor } from '../support/wait.ts';

const EVENT_ID = '12345674';
const OTHER_EVENT = '12345682';
const run = promisify(execFile);

function rtp(ssrc: number, seq: number, payload: Buffer, payloadType = 0): Buffer {
  return serializeRtp({ marker: false, payloadType, sequenceNumber: seq & 0xffff, timestamp: (seq * 160) >>> 0, ssrc, csrcs: [], paddingLength: 0, payload });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends a 20 ms PCMU packet of a tone every 20 ms to the encoder port until stopped. */
class RtpSender {
  readonly socket: Socket = createSocket('udp4');
  seq = 0;
  #timer?: NodeJS.Timeout;
  constructor(readonly port: number, readonly ssrc: number, readonly freqHz = 1000) {}

  async open(): Promise<this> {
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', r));
    return this;
  }

  send(buf: Buffer): void {
    this.socket.send(buf, this.port, '127.0.0.1');
  }

  start(): void {
    const payload = encodeUlaw(sine(this.freqHz, 20));
    this.#timer = setInterval(() => this.send(rtp(this.ssrc, this.seq++, payload)), 20);
  }

  pause(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  close(): void {
    this.pause();
    this.socket.close();
  }
}

interface Plane {
  broker: ServiceBroker;
  dataDir: string;
  datasets: StreamDataset[];
  stopped: StreamRecord[];
  puts: Array<{ eventId: string; streamId: string; dir: string }>;
}

const brokers: ServiceBroker[] = [];
const senders: RtpSender[] = [];

afterEach(async () => {
  while (senders.length > 0) senders.pop()!.close();
  while (brokers.length > 0) await brokers.pop()!.stop();
});

async function plane(opts: { encoderPorts?: string; storageFails?: boolean } = {}): Promise<Plane> {
  const config = testConfig({ encoderPorts: opts.encoderPorts ?? '21000-21019' });
  const broker = createBroker(config);
  brokers.push(broker);
  const p: Plane = { broker, dataDir: config.dataDir, datasets: [], stopped: [], puts: [] };
  broker.createService(createEncoderPortService(config));
  broker.createService({
    name: 'content-storage',
    actions: {
      putStream(ctx: Context<{ eventId: string; streamId: string; dir: string }>) {
        p.puts.push(ctx.params);
        if (opts.storageFails) throw new Error('storage center offline');
        return { files: 1, bytes: 1 };
      },
    },
  } as ServiceSchema);
  broker.createService({
    name: 'spec-listener',
    events: {
      [EVENTS.streamDataset](ctx: Context<StreamDataset>) {
        p.datasets.push(ctx.params);
      },
      [EVENTS.streamStopped](ctx: Context<StreamRecord>) {
        p.stopped.push(ctx.params);
      },
    },
  } as ServiceSchema);
  await broker.start();
  return p;
}

const params = (over: Partial<EncoderStartParams> = {}): EncoderStartParams => ({ eventId: EVENT_ID, format: 'hls', port: 10002, voiceNodeId: 'voice-1', ...over });
const start = (b: ServiceBroker, over: Partial<EncoderStartParams> = {}) => b.call<EncoderStartResult, EncoderStartParams>('encoder-port.start', params(over));
const list = (b: ServiceBroker) => b.call<EncoderPortList>('encoder-port.list');

async function sender(port: number, ssrc = 0x1234, freqHz = 1000): Promise<RtpSender> {
  const s = await new RtpSender(port, ssrc, freqHz).open();
  senders.push(s);
  return s;
}

async function decode(playlist: string): Promise<Int16Array> {
  const { stdout } = await run('/usr/bin/ffmpeg', ['-v', 'error', '-i', playlist, '-f', 's16le', '-ar', '8000', '-ac', '1', '-'], { encoding: 'buffer', maxBuffer: 64 << 20 });
  const copy = Buffer.from(stdout);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length >> 1);
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('validateStartParams', () => {
  it('validateStartParams() returns valid parameters unchanged', () => {
    assert.deepEqual(validateStartParams(params()), params());
  });

  it('validateStartParams() throws ValidationFailedError naming every bad field', () => {
    assert.throws(
      () => validateStartParams({ eventId: '12345675', format: 'dash', port: 70000, voiceNodeId: '' }),
      (err: unknown) => {
        assert.ok(err instanceof ValidationFailedError);
        assert.deepEqual(Object.keys((err.data as { fields: object }).fields).sort(), ['eventId', 'format', 'port', 'voiceNodeId']);
        return true;
      },
    );
  });
});

describe('admitPacket', () => {
  const from = { address: '127.0.0.1', port: 4000 };
  const pcmu = encodeUlaw(sine(1000, 20));

  it('admitPacket() locks onto the first SSRC and source and decodes PCMU', () => {
    const a = admitPacket(undefined, rtp(7, 1, pcmu), from);
    assert.equal(a.kind, 'audio');
    if (a.kind !== 'audio') return;
    assert.deepEqual(a.lock, { ssrc: 7, address: '127.0.0.1', port: 4000, lastSeq: 1 });
    assert.equal(a.pcm.length, 160);
  });

  it('admitPacket() decodes PCMA (payload type 8)', () => {
    const a = admitPacket(undefined, rtp(7, 1, encodeAlaw(sine(1000, 20)), 8), from);
    assert.equal(a.kind, 'audio');
    if (a.kind === 'audio') assert.ok(Math.abs(toneFrequency(a.pcm) - 1000) < 30);
  });

  it('admitPacket() drops another SSRC, another source address or port, RTCP, junk, telephone-event and duplicates', () => {
    const lock: SourceLock = { ssrc: 7, address: '127.0.0.1', port: 4000, lastSeq: 10 };
    const reason = (buf: Buffer, f = from) => {
      const a = admitPacket(lock, buf, f);
      return a.kind === 'drop' ? a.reason : 'audio';
    };
    assert.equal(reason(rtp(8, 11, pcmu)), 'foreign');
    assert.equal(reason(rtp(7, 11, pcmu), { address: '127.0.0.2', port: 4000 }), 'foreign');
    assert.equal(reason(rtp(7, 11, pcmu), { address: '127.0.0.1', port: 4001 }), 'foreign');
    assert.equal(reason(Buffer.from([0x80, 200, 0, 6, 0, 0, 0, 7])), 'rtcp');
    assert.equal(reason(Buffer.from('not rtp at all')), 'malformed');
    assert.equal(reason(rtp(7, 11, Buffer.alloc(4), 101)), 'payloadType');
    assert.equal(reason(rtp(7, 10, pcmu)), 'late');
    assert.equal(reason(rtp(7, 11, pcmu)), 'audio');
  });
});

describe('encoder-port actor', () => {
  it('start() + RTP: datasets are pushed, junk and a second SSRC are ignored; stop() stores the stream and broadcasts streamStopped', async () => {
    const p = await plane();
    const r = await start(p.broker);
    assert.ok(isValidStreamId(r.streamId) && r.streamId.startsWith(EVENT_ID + '-spec-node-10002-'), r.streamId);
    assert.equal(r.rtpHost, '127.0.0.1');
    assert.ok(r.rtpPort >= 21000 && r.rtpPort <= 21019);
    assert.equal(r.payloadType, 0);

    // No RTP yet: nothing is pushed, even after more than a heartbeat.
    await sleep(1300);
    assert.equal(p.datasets.length, 0);

    const good = await sender(r.rtpPort, 0x1234, 1000);
    const intruder = await sender(r.rtpPort, 0x9999, 400);
    good.start();
    await waitFor('first dataset', () => p.datasets.length > 0);
    intruder.start();
    for (let i = 0; i < 20; i++) good.send(Buffer.from([0x80, 0x00, 0x01]));
    good.send(Buffer.from([0x81, 201, 0, 7, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0]));
    await waitFor('two more datasets', () => p.datasets.length >= 3);
    await sleep(2500);

    const ds = p.datasets[0]!;
    assert.equal(ds.streamId, r.streamId);
    assert.equal(ds.eventId, EVENT_ID);
    assert.equal(ds.url, `/s/${r.streamId}/index.m3u8`);
    assert.equal(ds.port, 10002);
    assert.equal(ds.nodeId, 'spec-node');
    assert.equal(ds.dataCenter, 'dc1');
    assert.equal(ds.format, 'hls');
    assert.ok(!Number.isNaN(Date.parse(ds.startedAt)) && !Number.isNaN(Date.parse(ds.lastSeenAt)));

    const l = await list(p.broker);
    assert.equal(l.ports.length, 1);
    assert.equal(l.ports[0]!.streamId, r.streamId);
    assert.equal(l.ports[0]!.state, 'running');
    assert.ok(l.ports[0]!.dropped.malformed >= 20, JSON.stringify(l.ports[0]));
    assert.ok(l.ports[0]!.dropped.rtcp >= 1);
    assert.ok(l.ports[0]!.dropped.foreign > 0);
    const pid = l.ports[0]!.pid;
    assert.ok(alive(pid));

    good.pause();
    intruder.pause();
    const record = await p.broker.call<StreamRecord, { streamId: string }>('encoder-port.stop', { streamId: r.streamId });
    assert.equal(record.streamId, r.streamId);
    assert.equal(record.stored, true);
    assert.ok(record.durationS! >= 4, `durationS ${record.durationS}`);
    const dir = join(p.dataDir, 'live', r.streamId);
    assert.deepEqual(p.puts, [{ eventId: EVENT_ID, streamId: r.streamId, dir }]);
    await waitFor('streamStopped', () => p.stopped.length === 1);
    assert.deepEqual(p.stopped[0], record);
    assert.equal(alive(pid), false);
    assert.match(readFileSync(join(dir, 'index.m3u8'), 'utf8'), /#EXT-X-ENDLIST/);
    assert.ok(existsSync(join(dir, 'gaps.json')));
    assert.deepEqual((await list(p.broker)).ports, []);

    // The intruder's 400 Hz never reached the recording: the audible stretch is the 1 kHz feed.
    const pcm = await decode(join(dir, 'index.m3u8'));
    const f = toneFrequency(pcm.subarray(pcm.length - 3 * 8000, pcm.length - 8000));
    assert.ok(Math.abs(f - 1000) <= 20, `tone ${f} Hz`);

    // Stopping again (or an unknown stream) returns quietly.
    assert.equal(await p.broker.call('encoder-port.stop', { streamId: r.streamId }), null);
    assert.equal(p.puts.length, 1);
  });

  it('stop() reports stored: false when content-storage.putStream fails', async () => {
    const p = await plane({ storageFails: true });
    const r = await start(p.broker);
    const record = await p.broker.call<StreamRecord, { streamId: string }>('encoder-port.stop', { streamId: r.streamId });
    assert.equal(record.stored, false);
    await waitFor('streamStopped', () => p.stopped.length === 1);
    assert.equal(p.stopped[0]!.stored, false);
  });

  it('start() rejects with NoCapacityError when every encoder port is taken, and a stopped port is not reused at once', async () => {
    const p = await plane({ encoderPorts: '21020-21021' });
    const r = await start(p.broker);
    await assert.rejects(start(p.broker, { port: 10004 }), NoCapacityError);
    await p.broker.call('encoder-port.stop', { streamId: r.streamId });
    // The only port rests after release, so a late packet of the old feed cannot claim the next stream.
    await assert.rejects(start(p.broker, { port: 10004 }), NoCapacityError);
  });

  it('start() rejects with ValidationFailedError for a bad event ID', async () => {
    const p = await plane();
    await assert.rejects(start(p.broker, { eventId: '12345675' }), ValidationFailedError);
  });

  it('the eventEnded event stops every stream of that event and no other', async () => {
    const p = await plane();
    const a = await start(p.broker, { port: 10002 });
    const b = await start(p.broker, { port: 10004, voiceNodeId: 'voice-2' });
    const c = await start(p.broker, { eventId: OTHER_EVENT, port: 10006 });
    await p.broker.broadcast(EVENTS.eventEnded, { eventId: EVENT_ID, reason: 'spec' });
    await waitFor('two streamStopped', () => p.stopped.length === 2);
    assert.deepEqual(p.stopped.map((s) => s.streamId).sort(), [a.streamId, b.streamId].sort());
    const l = await list(p.broker);
    assert.deepEqual(l.ports.map((x) => x.streamId), [c.streamId]);
  });

  it('SIGKILL of ffmpeg mid-stream finishes the old stream and a new stream ID keeps encoding on the same port', async () => {
    const p = await plane();
    const r = await start(p.broker);
    const s = await sender(r.rtpPort);
    s.start();
    await waitFor('first dataset', () => p.datasets.length > 0);
    await sleep(1000);
    const before = (await list(p.broker)).ports[0]!;
    process.kill(before.pid!, 'SIGKILL');

    const old = await waitFor('old stream record', () => p.stopped.find((x) => x.streamId === r.streamId));
    assert.equal(old.stored, true);
    assert.ok(p.puts.some((x) => x.streamId === r.streamId));
    const fresh = await waitFor('dataset of a new stream', () => p.datasets.find((d) => d.streamId !== r.streamId));
    assert.ok(isValidStreamId(fresh.streamId));
    assert.equal(fresh.port, 10002);
    const after = (await list(p.broker)).ports[0]!;
    assert.equal(after.rtpPort, r.rtpPort);
    assert.equal(after.streamId, fresh.streamId);
    assert.equal(after.restarts, 1);
    assert.notEqual(after.pid, before.pid);

    const newDir = join(p.dataDir, 'live', fresh.streamId);
    await waitFor('a segment of the new stream', () => /seg00000\.ts/.test(existsSync(join(newDir, 'index.m3u8')) ? readFileSync(join(newDir, 'index.m3u8'), 'utf8') : ''));

    // The voice server only knows the first stream ID: stopping by it stops the current stream.
    const record = await p.broker.call<StreamRecord, { streamId: string }>('encoder-port.stop', { streamId: r.streamId });
    assert.equal(record.streamId, fresh.streamId);
    assert.equal(record.stored, true);
    assert.match(readFileSync(join(newDir, 'index.m3u8'), 'utf8'), /#EXT-X-ENDLIST/);
  });

  it('broker.stop() stops every encoder cleanly with #EXT-X-ENDLIST', async () => {
    const p = await plane();
    const r = await start(p.broker);
    const pid = (await list(p.broker)).ports[0]!.pid;
    await p.broker.stop();
    brokers.pop();
    assert.equal(alive(pid), false);
    assert.match(readFileSync(join(p.dataDir, 'live', r.streamId, 'index.m3u8'), 'utf8'), /#EXT-X-ENDLIST/);
  });
});
