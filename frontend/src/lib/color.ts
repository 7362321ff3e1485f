/** Colour by kernel name: a stable hue per name (FNV-1a hash), so the same kernel looks the same everywhere. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const caches = new Map<number, Map<string, string>>();

/** The colour of a kernel name at a lightness (cached per lightness and name: called per drawn rect). */
export function nameColor(name: string | null | undefined, lightness = 58): string {
  let cache = caches.get(lightness);
  if (!cache) caches.set(lightness, (cache = new Map()));
  const key = name ?? '';
  let c = cache.get(key);
  if (c === undefined) {
    if (!name) c = `hsl(0 0% ${lightness}%)`;
    else {
      const h = hashString(name);
      const hue = h % 360;
      const sat = 55 + ((h >>> 9) % 25);
      c = `hsl(${hue} ${sat}% ${lightness}%)`;
    }
    cache.set(key, c);
  }
  return c;
}
