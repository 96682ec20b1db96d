/** Caller audio for sipp's rtp_stream: raw 8 kHz mono µ-law files (FIELD-NOTES: not WAV). */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** 0xFF is µ-law for 0 (G.711 §A.2, bits inverted). */
const ULAW_SILENCE = 0xff;

/** Writes `seconds` of a 1 kHz sine as raw µ-law with Debian's ffmpeg; returns the path. */
export function toneFile(dir: string, seconds: number, name = `tone-${seconds}s.ulaw`): string {
  const file = join(dir, name);
  execFileSync('/usr/bin/ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `sine=frequency=1000:sample_rate=8000:duration=${seconds}`,
    '-ar', '8000', '-ac', '1', '-f', 'mulaw', file,
  ]);
  return file;
}

/** Writes `silenceS` of silence then `toneS` of 1 kHz tone as raw µ-law; returns the path. */
export function silenceThenToneFile(dir: string, silenceS: number, toneS: number): string {
  const tone = readFileSync(toneFile(dir, toneS, `tone-part-${toneS}s.ulaw`));
  const file = join(dir, `silence-${silenceS}s-tone-${toneS}s.ulaw`);
  writeFileSync(file, Buffer.concat([Buffer.alloc(Math.round(silenceS * 8000), ULAW_SILENCE), tone]));
  return file;
}
