/**
 * Audio helpers for end-to-end specs: 16-bit mono WAV files in and out (baresip plays one and,
 * with its `sndfile` module, dumps what it received into another), and the level of one
 * frequency in a stretch of PCM (Goertzel), to tell which caller's tone someone hears.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { rms, toneFrequency } from '../../codecs/tones.ts';

/** Writes 16-bit PCM as a mono WAV file (RIFF/WAVE, format 1). */
export function writeWav(file: string, pcm: Int16Array, sampleRate = 8000): void {
  const data = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const head = Buffer.alloc(44);
  head.write('RIFF', 0, 'ascii');
  head.writeUInt32LE(36 + data.length, 4);
  head.write('WAVE', 8, 'ascii');
  head.write('fmt ', 12, 'ascii');
  head.writeUInt32LE(16, 16);
  head.writeUInt16LE(1, 20);
  head.writeUInt16LE(1, 22);
  head.writeUInt32LE(sampleRate, 24);
  head.writeUInt32LE(sampleRate * 2, 28);
  head.writeUInt16LE(2, 32);
  head.writeUInt16LE(16, 34);
  head.write('data', 36, 'ascii');
  head.writeUInt32LE(data.length, 40);
  writeFileSync(file, Buffer.concat([head, data]));
}

/**
 * Reads the samples of a 16-bit mono WAV file. The `data` chunk is taken to the end of the file
 * whatever its size field says: a dump whose writer did not get to fix up the header still reads.
 */
export function readWav(file: string): Int16Array {
  const b = readFileSync(file);
  let off = 12;
  while (off + 8 <= b.length && b.toString('ascii', off, off + 4) !== 'data') off += 8 + b.readUInt32LE(off + 4);
  const start = Math.min(off + 8, b.length);
  const n = (b.length - start) >> 1;
  const pcm = new Int16Array(n);
  for (let i = 0; i < n; i++) pcm[i] = b.readInt16LE(start + i * 2);
  return pcm;
}

/** Mean power of the `freqHz` component (as peak amplitude squared), by the Goertzel algorithm. */
export function toneLevel(pcm: Int16Array, freqHz: number, sampleRate = 8000): number {
  const n = pcm.length;
  if (n === 0) return 0;
  const w = (2 * Math.PI * freqHz) / sampleRate;
  const coeff = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const s0 = pcm[i] + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  // |X|^2 of a sine of peak A over N samples is (A N / 2)^2.
  return (4 * power) / (n * n);
}

/** A per-second summary of PCM (RMS, dominant frequency and the level at given frequencies), for failure messages. */
export function describePcm(pcm: Int16Array, freqs: number[] = [], sampleRate = 8000): string {
  const lines: string[] = [];
  for (let s = 0; s < pcm.length; s += sampleRate) {
    const x = pcm.subarray(s, Math.min(s + sampleRate, pcm.length));
    const levels = freqs.map((f) => `${f}Hz:${Math.round(Math.sqrt(toneLevel(x, f, sampleRate)))}`).join(' ');
    lines.push(`  ${(s / sampleRate).toFixed(0).padStart(3)} s  rms ${rms(x).toFixed(0).padStart(5)}  peak ${toneFrequency(x, sampleRate).toFixed(0).padStart(5)} Hz  ${levels}`);
  }
  return lines.join('\n');
}
