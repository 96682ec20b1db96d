/**
 * HOTP, RFC 4226. Only the dynamic truncation (§5.3) is used by jitcast itself (the PIN), but the
 * whole algorithm is here so the RFC's Appendix D vectors test the truncation end to end.
 */
import { createHmac } from 'node:crypto';

/** RFC 4226 §5.3 dynamic truncation: the 31-bit value at the offset named by the low nibble of the last byte. */
export function dynamicTruncate(hmac: Buffer): number {
  if (hmac.length < 20) throw new RangeError(`dynamicTruncate() needs an HMAC of at least 20 bytes, got ${hmac.length}`);
  const offset = hmac[hmac.length - 1]! & 0x0f;
  // Mask the top bit so the result is the same whether read as signed or unsigned (§5.3).
  return (
    ((hmac[offset]! & 0x7f) << 24) |
    (hmac[offset + 1]! << 16) |
    (hmac[offset + 2]! << 8) |
    hmac[offset + 3]!
  ) >>> 0;
}

/** RFC 4226 §5.3 HOTP value: `digits` decimal digits (default 6) of HMAC(key, 8-byte big-endian counter). */
export function hotp(key: Buffer, counter: number | bigint, digits = 6, algorithm: 'sha1' | 'sha256' = 'sha1'): string {
  if (!Number.isInteger(digits) || digits < 1 || digits > 9) throw new RangeError(`hotp() digits must be 1–9, got ${digits}`);
  const c = typeof counter === 'bigint' ? counter : BigInt(counter);
  if (c < 0n || c > 0xffff_ffff_ffff_ffffn) throw new RangeError(`hotp() counter out of range: ${c}`);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(c);
  const mac = createHmac(algorithm, key).update(msg).digest();
  return String(dynamicTruncate(mac) % 10 ** digits).padStart(digits, '0');
}
