/**
 * JSON parsing that keeps int64 nanosecond timestamps exact.
 *
 * CLOCK_REALTIME ns since the epoch (~1.7e18) exceed Number.MAX_SAFE_INTEGER (2^53 ≈ 9.0e15), so
 * JSON.parse would round them to a multiple of 256 ns. Before parsing we quote every integer literal of
 * 16 or more digits found outside string literals, so it reaches us as a string; `toBig` then turns it
 * (or a string the backend already sent) into a BigInt. Smaller integers stay numbers. The UI computes with Numbers as offsets from the session start,
 * which are exact up to 2^53 ns (104 days).
 */

export function parseJsonPrecise(text: string): unknown {
  // Fast path: no long digit runs at all.
  if (!/\d{16}/.test(text)) return JSON.parse(text);
  return JSON.parse(quoteBigInts(text));
}

/** Quote long integer literals outside of strings. */
export function quoteBigInts(text: string): string {
  // Walk the text so that digits inside string literals are never touched.
  let out = '';
  let last = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // skip string literal
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i += 2;
        else if (d === 34) {
          i++;
          break;
        } else i++;
      }
      continue;
    }
    if ((c >= 48 && c <= 57) || c === 45 /* - */) {
      let j = i;
      if (text.charCodeAt(j) === 45) j++;
      while (j < n && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++;
      const digits = j - i - (c === 45 ? 1 : 0);
      const next = j < n ? text.charCodeAt(j) : 44;
      const isInt = next !== 46 /* . */ && next !== 101 && next !== 69; /* e E */
      if (digits >= 16 && isInt) {
        out += text.slice(last, i) + '"' + text.slice(i, j) + '"';
        last = j;
      }
      i = j;
      // skip fractional/exponent part if any
      while (i < n) {
        const d = text.charCodeAt(i);
        if ((d >= 48 && d <= 57) || d === 46 || d === 101 || d === 69 || d === 43 || d === 45) i++;
        else break;
      }
      continue;
    }
    i++;
  }
  return last === 0 ? text : out + text.slice(last);
}

export type NsLike = string | number | bigint;

/** An absolute nanosecond value from the API (string, number or bigint) as an exact BigInt. */
export function toBig(v: NsLike): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'string') return BigInt(v);
  return BigInt(Math.round(v));
}

/** Absolute ns → Number offset (ns) from `origin`; exact while the difference is below 2^53. */
export function rel(v: NsLike | null | undefined, origin: bigint): number | null {
  if (v === null || v === undefined) return null;
  return Number(toBig(v) - origin);
}

/** Relative ns offset → absolute ns as a decimal string for query parameters. */
export function abs(relNs: number, origin: bigint): string {
  return (origin + BigInt(Math.round(relNs))).toString();
}

