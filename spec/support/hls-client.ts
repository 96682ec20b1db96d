/** HLS helpers for specs: ffmpeg as a real HLS client, and playlist arithmetic. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseMediaPlaylist } from '../../codecs/hls.ts';

const run = promisify(execFile);

/** Decodes `seconds` of an HLS URL with ffmpeg to 8 kHz mono PCM (from media sequence index `startAt` if live). */
export async function decodeHls(url: string, seconds: number, startAt?: number): Promise<Int16Array> {
  const args = ['-hide_banner', '-loglevel', 'error'];
  if (startAt !== undefined) args.push('-live_start_index', String(startAt));
  args.push('-i', url, '-t', String(seconds), '-f', 's16le', '-ar', '8000', '-ac', '1', '-');
  const { stdout } = await run('/usr/bin/ffmpeg', args, { encoding: 'buffer', maxBuffer: 64 << 20, timeout: 60_000 });
  const buf = stdout as Buffer;
  const pcm = new Int16Array(buf.length >> 1);
  for (let i = 0; i < pcm.length; i++) pcm[i] = buf.readInt16LE(i * 2);
  return pcm;
}

/** Total EXTINF seconds of a media playlist. */
export function playlistSeconds(text: string): number {
  return parseMediaPlaylist(text).segments.reduce((s, x) => s + x.duration, 0);
}

/**
 * How far a live media playlist has got: its media sequence plus its segment count. Live playlists
 * list only the last few segments (attendee access's live window), so their length stops growing.
 */
export function segmentsListed(text: string): number {
  const p = parseMediaPlaylist(text);
  return p.mediaSequence + p.segments.length;
}
