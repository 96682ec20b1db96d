import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { defaultFfmpegPath } from '../../cluster.config.ts';
import { HlsEncoder } from '../../runtime/encoder.ts';
import { runEncoderSelfTest, type EncoderSelfTestOptions } from '../../runtime/encoder-self-test.ts';

const HOST = '127.0.0.1';
const FFMPEG = defaultFfmpegPath();

const sockets: dgram.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

async function bindUdp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.bind(0, HOST);
  await once(s, 'listening');
  sockets.push(s);
  return s;
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

/** The options encoder-port's #runSelfTest() passes, on `socket`'s own port unless told otherwise. */
function options(socket: dgram.Socket, extra: Partial<EncoderSelfTestOptions> = {}): EncoderSelfTestOptions & { started: HlsEncoder[] } {
  const started: HlsEncoder[] = [];
  const dir = join(mkdtempSync(join(tmpdir(), 'jitcast-selftest-')), 'health', 'selftest');
  return {
    socket,
    host: HOST,
    rtpPort: socket.address().port,
    dir,
    timeoutMs: 10_000,
    startEncoder: async (d) => {
      const enc = await HlsEncoder.start({ ffmpegPath: FFMPEG, dir: d, segmentS: 1, context: 'spec self-test' });
      started.push(enc);
      return enc;
    },
    started,
    ...extra,
  };
}

describe('runEncoderSelfTest()', () => {
  it('passes with the real ffmpeg: RTP reaches the port, a segment comes out, the test directory is removed', async () => {
    const socket = await bindUdp();
    const o = options(socket);
    const t0 = performance.now();
    const r = await runEncoderSelfTest(o);
    const wall = performance.now() - t0;
    assert.equal(r.ok, true, r.reason);
    assert.equal(r.reason, undefined);
    assert.ok(r.ms > 0 && r.ms < 10_000, `ms ${r.ms}`);
    assert.ok(r.packetsReceived > 0, `packetsReceived ${r.packetsReceived}`);
    assert.ok(r.packetsSent >= r.packetsReceived, `sent ${r.packetsSent} received ${r.packetsReceived}`);
    // 20 ms packets at real time for r.ms: about r.ms / 20 of them (+1 for the one sent at once).
    assert.ok(Math.abs(r.packetsSent - (r.ms / 20 + 1)) < 10, `sent ${r.packetsSent} in ${r.ms} ms`);
    assert.ok(wall < 10_000, `took ${wall.toFixed(0)} ms`);
    assert.equal(existsSync(o.dir), false, `${o.dir} still exists`);
    assert.equal(o.started.length, 1);
    assert.equal(o.started[0]!.running, false);
    assert.equal(alive(o.started[0]!.pid), false);
    // The caller's socket is left open and without the test's listener.
    assert.equal(socket.listenerCount('message'), 0);
    assert.doesNotThrow(() => socket.address());
  });

  it('fails with "encoder did not start" when startEncoder rejects, and removes the directory', async () => {
    const socket = await bindUdp();
    const o = options(socket, {
      startEncoder: async (d) => {
        mkdirSync(d, { recursive: true });
        writeFileSync(join(d, 'partial'), 'x');
        throw new Error('boom');
      },
    });
    const r = await runEncoderSelfTest(o);
    assert.equal(r.ok, false);
    assert.equal(r.reason, 'encoder did not start: boom');
    assert.equal(r.packetsSent, 0);
    assert.equal(r.packetsReceived, 0);
    assert.ok(r.ms >= 0 && r.ms < 1000, `ms ${r.ms}`);
    assert.equal(existsSync(o.dir), false);
    assert.equal(socket.listenerCount('message'), 0);
  });

  it('fails with "encoder did not start" when ffmpeg is a script that exits 1', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'jitcast-bad-ffmpeg-'));
    const ffmpegPath = join(bin, 'ffmpeg');
    writeFileSync(ffmpegPath, '#!/bin/sh\necho "ffmpeg: broken on purpose" >&2\nexit 1\n');
    chmodSync(ffmpegPath, 0o755);
    const socket = await bindUdp();
    const o = options(socket, { startEncoder: (d) => HlsEncoder.start({ ffmpegPath, dir: d, segmentS: 1, context: 'spec self-test' }) });
    const r = await runEncoderSelfTest(o);
    assert.equal(r.ok, false);
    assert.match(r.reason ?? '', /^encoder did not start: ffmpeg failed to start \[/);
    assert.equal(r.packetsSent, 0);
    assert.equal(existsSync(o.dir), false);
  });

  it('fails when the handed socket is bound to another port than rtpPort: none of the RTP reached the port', async () => {
    const socket = await bindUdp();
    const elsewhere = await bindUdp();
    let strayPackets = 0;
    elsewhere.on('message', () => strayPackets++);
    const o = options(socket, { rtpPort: elsewhere.address().port });
    const r = await runEncoderSelfTest(o);
    assert.equal(r.ok, false);
    assert.equal(r.packetsReceived, 0);
    assert.ok(r.packetsSent > 0);
    assert.equal(r.reason, `a segment came out but none of ${r.packetsSent} RTP packets reached port ${elsewhere.address().port}`);
    assert.ok(strayPackets > 0, 'the packets went somewhere else');
    assert.equal(existsSync(o.dir), false);
    assert.equal(o.started[0]!.running, false);
  });

  it('ignores stray non-PCMU datagrams on the port (they are not counted as received)', async () => {
    const socket = await bindUdp();
    const o = options(socket, { rtpPort: 9 /* discard: the test's own RTP goes nowhere */ });
    const noise = await bindUdp();
    const timer = setInterval(() => noise.send(Buffer.from('not rtp at all'), socket.address().port, HOST), 20);
    try {
      const r = await runEncoderSelfTest(o);
      assert.equal(r.ok, false);
      assert.equal(r.packetsReceived, 0);
      assert.match(r.reason ?? '', /^a segment came out but none of \d+ RTP packets reached port 9$/);
    } finally {
      clearInterval(timer);
    }
  });

  it('fails with "no segment within" when the encoder lists no segment in timeoutMs', async () => {
    const socket = await bindUdp();
    const o = options(socket, {
      timeoutMs: 300,
      startEncoder: (d) => HlsEncoder.start({ ffmpegPath: FFMPEG, dir: d, segmentS: 4, context: 'spec self-test' }),
    });
    const r = await runEncoderSelfTest(o);
    assert.equal(r.ok, false);
    assert.equal(r.reason, 'no segment within 300 ms');
    assert.ok(r.ms >= 300 && r.ms < 1000, `ms ${r.ms}`);
    assert.ok(r.packetsReceived > 0);
    assert.equal(existsSync(o.dir), false);
  });

  it('fails with "ffmpeg died" and ffmpeg\'s last line when ffmpeg dies after it started', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'jitcast-dying-ffmpeg-'));
    const ffmpegPath = join(bin, 'ffmpeg');
    // fluent-ffmpeg asks the binary for its formats and codecs first: those go to the real one.
    writeFileSync(
      ffmpegPath,
      `#!/bin/sh\ncase "$*" in\n  *pipe:0*) ;;\n  *) exec '${FFMPEG}' "$@" ;;\nesac\necho "Output #0, hls, to 'x':" >&2\nsleep 0.3\necho "fatal: disk on fire" >&2\nexit 1\n`,
    );
    chmodSync(ffmpegPath, 0o755);
    const socket = await bindUdp();
    const o = options(socket, { startEncoder: (d) => HlsEncoder.start({ ffmpegPath, dir: d, segmentS: 1, context: 'spec self-test' }) });
    const t0 = performance.now();
    const r = await runEncoderSelfTest(o);
    assert.equal(r.ok, false);
    assert.equal(r.reason, 'ffmpeg died [code:1 signal:null] fatal: disk on fire');
    assert.ok(performance.now() - t0 < 3000, 'waited for the timeout instead of the death');
    assert.equal(existsSync(o.dir), false);
  });
});
