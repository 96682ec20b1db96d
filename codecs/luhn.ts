/**
 * Luhn mod-10 check digit (ISO/IEC 7812-1 Annex B). Event IDs end in one so that a single mistyped
 * digit or an adjacent transposition is refused before any lookup (DESIGN.md "Identifiers and secrets").
 */

const DIGITS_RE = /^\d+$/;

/** Sum of the Luhn-weighted digits; `doubleFirst` says whether the rightmost digit is doubled. */
function luhnSum(digits: string, doubleFirst: boolean): number {
  let sum = 0;
  let double = doubleFirst;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum;
}

/** The Luhn check digit (0–9) to append to `digits`; throws RangeError unless `digits` is all decimal digits. */
export function luhnCheckDigit(digits: string): number {
  if (!DIGITS_RE.test(digits)) throw new RangeError(`luhnCheckDigit() needs decimal digits, got ${JSON.stringify(digits)}`);
  // The check digit will take the rightmost place, so the current rightmost digit is doubled.
  return (10 - (luhnSum(digits, true) % 10)) % 10;
}

/** Whether `s` is at least two decimal digits whose last is the Luhn check digit of the rest. */
export function luhnValid(s: string): boolean {
  if (typeof s !== 'string' || s.length < 2 || !DIGITS_RE.test(s)) return false;
  return luhnSum(s, false) % 10 === 0;
}
