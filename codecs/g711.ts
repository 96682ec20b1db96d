/**
 * ITU-T G.711 (11/1988) pulse code modulation of voice frequencies: µ-law (Tables 2a/2b) and
 * A-law (Tables 1a/1b), between 16-bit linear PCM and the 8-bit code words as transmitted, i.e.
 * with the standard's bit inversions already applied (µ-law: all bits inverted; A-law: even bits
 * inverted, XOR 0x55).
 *
 * Quantisation follows the ITU-T G.191 Software Tools Library reference (`g711.c`), so that a
 * negative sample `s` is quantised like the magnitude `~s` (= -s - 1). The 16-bit scale is the
 * standard's 13-bit (A-law) or 14-bit (µ-law) scale shifted left by 3 or 2 bits.
 */

/** µ-law bias in 16-bit units: 33 in the standard's 14-bit scale (G.711 Table 2a). */
const ULAW_BIAS = 33 << 2;
/** Largest µ-law input magnitude in the 14-bit scale once biased (8159 + 33 = 8192 - 1). */
const ULAW_MAX_BIASED = 0x1fff;

/** Clamps to the int16 range and truncates fractions, as a 16-bit ADC would deliver. */
function toInt16(s: number): number {
  if (!(s > -32768)) return s < 0 ? -32768 : 0; // also maps NaN to 0
  if (s > 32767) return 32767;
  return Math.trunc(s);
}

/** Encodes one 16-bit linear sample to a µ-law byte (G.711 §3.2, Table 2a; G.191 `ulaw_compress`). */
export function linearToUlaw(s: number): number {
  const lin = toInt16(s);
  // Magnitude in the 14-bit scale plus the bias of 33, which makes the segment ends powers of two.
  let biased = (lin < 0 ? ~lin >> 2 : lin >> 2) + 33;
  if (biased > ULAW_MAX_BIASED) biased = ULAW_MAX_BIASED;
  let segment = 1;
  for (let i = biased >> 6; i !== 0; i >>= 1) segment++;
  const highNibble = 8 - segment;
  const lowNibble = 0x0f - ((biased >> segment) & 0x0f);
  const code = (highNibble << 4) | lowNibble;
  return lin >= 0 ? code | 0x80 : code;
}

/** Decodes one µ-law byte to the 16-bit linear value at the middle of its interval (G.711 Table 2b). */
export function ulawToLinear(u: number): number {
  const inverted = ~u & 0xff;
  const exponent = (inverted >> 4) & 0x07;
  const mantissa = inverted & 0x0f;
  const step = 4 << (exponent + 1);
  const magnitude = (0x80 << exponent) + step * mantissa + step / 2 - ULAW_BIAS;
  // 0x7F is the standard's "negative zero"; return +0 so callers never see -0.
  return (u & 0x80) !== 0 || magnitude === 0 ? magnitude : -magnitude;
}

/** Encodes one 16-bit linear sample to an A-law byte (G.711 §3.1, Table 1a; G.191 `alaw_compress`). */
export function linearToAlaw(s: number): number {
  const lin = toInt16(s);
  // Magnitude in the 12-bit scale (13-bit with sign); segments 0 and 1 share one step size.
  let ix = lin < 0 ? ~lin >> 4 : lin >> 4;
  if (ix > 15) {
    let exponent = 1;
    while (ix > 16 + 15) {
      ix >>= 1;
      exponent++;
    }
    ix -= 16;
    ix += exponent << 4;
  }
  if (lin >= 0) ix |= 0x80;
  return ix ^ 0x55;
}

/** Decodes one A-law byte to the 16-bit linear value at the middle of its interval (G.711 Table 1b). */
export function alawToLinear(a: number): number {
  const ix = (a ^ 0x55) & 0x7f;
  const exponent = ix >> 4;
  let mantissa = ix & 0x0f;
  if (exponent > 0) mantissa += 16;
  mantissa = (mantissa << 4) + 0x08;
  if (exponent > 1) mantissa <<= exponent - 1;
  return (a & 0x80) !== 0 ? mantissa : -mantissa;
}

// Decode tables: 256 entries each. Encode tables: one entry per int16 value (index s + 32768),
// 64 KiB each, so bulk encoding in the media path is a single lookup per sample.
const ULAW_DECODE = new Int16Array(256);
const ALAW_DECODE = new Int16Array(256);
for (let i = 0; i < 256; i++) {
  ULAW_DECODE[i] = ulawToLinear(i);
  ALAW_DECODE[i] = alawToLinear(i);
}
const ULAW_ENCODE = new Uint8Array(65536);
const ALAW_ENCODE = new Uint8Array(65536);
for (let s = -32768; s <= 32767; s++) {
  ULAW_ENCODE[s + 32768] = linearToUlaw(s);
  ALAW_ENCODE[s + 32768] = linearToAlaw(s);
}

/** Encodes 16-bit linear PCM to µ-law, one byte per sample. */
export function encodeUlaw(pcm: Int16Array): Buffer {
  const out = Buffer.allocUnsafe(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = ULAW_ENCODE[pcm[i] + 32768];
  return out;
}

/** Decodes µ-law bytes to 16-bit linear PCM. */
export function decodeUlaw(buf: Buffer): Int16Array {
  const out = new Int16Array(buf.length);
  for (let i = 0; i < buf.length; i++) out[i] = ULAW_DECODE[buf[i]];
  return out;
}

/** Encodes 16-bit linear PCM to A-law, one byte per sample. */
export function encodeAlaw(pcm: Int16Array): Buffer {
  const out = Buffer.allocUnsafe(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = ALAW_ENCODE[pcm[i] + 32768];
  return out;
}

/** Decodes A-law bytes to 16-bit linear PCM. */
export function decodeAlaw(buf: Buffer): Int16Array {
  const out = new Int16Array(buf.length);
  for (let i = 0; i < buf.length; i++) out[i] = ALAW_DECODE[buf[i]];
  return out;
}

/** µ-law code of digital silence (positive zero), used to fill gaps in the media path. */
export const ULAW_SILENCE = 0xff;
/** A-law code of the smallest positive level, the conventional A-law idle pattern. */
export const ALAW_SILENCE = 0xd5;
