/**
 * The bench's HLS client: polls the attendee master playlist and its variant, fetches segments and
 * decodes each with ffmpeg (Debian's, as a player-side tool) to 8 kHz PCM, and finds a 1 kHz tone.
 */
import { spawn } from 'node:child_process';
import { parseMediaPlaylist, type MediaPlaylist } from '../../codecs/hls.ts';

/** GET with a timeout; never throws (status 0 on a network error). */
export async function get(url: string, timeoutMs = 5000): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text() };
  } catch {
    return { status: 0, text: '' };
  }
}

export async function getBytes(url: string, timeoutMs = 5000): Promise<Buffer | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (res.status !== 200) return undefined;
    return Buffer.from(await res.arrayBuffer());
  } catch {
    return undefined;
  }
}

/** The first variant URL of a master playlist text, resolved against the master's URL. */
export function firstVariant(masterUrl: string, text: string): string | undefined {
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
  return line ? new URL(line, masterUrl).toString() : undefined;
}

/** Fetches `<attendeeUrl>/live.m3u8` once; the first variant's URL when live. */
export async function variantOf(attendeeUrl: string): Promise<string | undefined> {
  const master = `${attendeeUrl}/live.m3u8`;
  const r = await get(master);
  return r.status === 200 ? firstVariant(master, r.text) : undefined;
}

/** Fetches and parses a media playlist; undefined unless 200 and parseable. */
export async function mediaPlaylist(url: string): Promise<MediaPlaylist | undefined> {
  const r = await get(url);
  if (r.status !== 200) return undefined;
  try {
    return parseMediaPlaylist(r.text);
  } catch {
    return undefined;
  }
}

/** Total EXTINF seconds. */
export function listedSeconds(p: MediaPlaylist): number {
  return p.segments.reduce((s, x) => s + x.duration, 0);
}

/** Decodes one MPEG-TS segment to 8 kHz mono s16 PCM (`ffmpeg -i seg.ts -f s16le -ar 8000 -ac 1 -`). */
export function decodeSegment(ts: Buffer, ffmpegPath = '/usr/bin/ffmpeg'): Promise<Int16Array> {
  return new Promise((resolve, reject) => {
    const p = spawn(ffmpegPath, ['-hide_banner', '-loglevel', 'error', '-f', 'mpegts', '-i', 'pipe:0', '-f', 's16le', '-ar', '8000', '-ac', '1', 'pipe:1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => chunks.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    p.stdin.on('error', () => {});
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`ffmpeg decode failed (${code}): ${err.slice(-300)}`));
      const buf = Buffer.concat(chunks);
      const pcm = new Int16Array(buf.length >> 1);
      for (let i = 0; i < pcm.length; i++) pcm[i] = buf.readInt16LE(i * 2);
      resolve(pcm);
    });
    p.stdin.end(ts);
  });
}

/** Goertzel power ratio of `freq` in a block: the tone's share of the block's energy (0..1). */
function toneShare(pcm: Int16Array, from: number, n: number, freq: number, rate: number): { share: number; rms: number } {
  const k = (2 * Math.cos((2 * Math.PI * freq) / rate));
  let s1 = 0;
  let s2 = 0;
  let energy = 0;
  for (let i = from; i < from + n; i++) {
    const x = pcm[i]!;
    energy += x * x;
    const s0 = x + k * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - k * s1 * s2;
  // A pure tone over n samples has Goertzel power ≈ energy * n / 2.
  return { share: energy > 0 ? Math.min(1, power / ((energy * n) / 2)) : 0, rms: Math.sqrt(energy / n) };
}

/**
 * Where a 1 kHz tone starts in `pcm` (8 kHz): the first 10 ms block that is loud (rms > 300) and
 * mostly 1 kHz, refined to the first sample above a quarter of that block's peak. Undefined if none.
 */
export function findTone(pcm: Int16Array, freq = 1000, rate = 8000): number | undefined {
  const n = rate / 100;
  for (let b = 0; b + n <= pcm.length; b += n) {
    const { share, rms } = toneShare(pcm, b, n, freq, rate);
    if (rms > 300 && share > 0.6) {
      // The onset may sit in the block before: look back one block for the first loud sample.
      let peak = 0;
      for (let i = b; i < b + n; i++) peak = Math.max(peak, Math.abs(pcm[i]!));
      const from = Math.max(0, b - n);
      for (let i = from; i < b + n; i++) if (Math.abs(pcm[i]!) > peak / 4) return i;
      return b;
    }
  }
  return undefined;
}
