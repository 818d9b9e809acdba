// Summary statistics shared by the benchmarks.

/** The median; the mean of the two middle values for an even count. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * `value` to `digits` decimals, or to more (up to 6) where fewer would round it onto the other
 * side of `target`: 1.4954 against a target of at least 1.5 prints "1.495", not "1.50", so a
 * printed figure never reads as meeting a target it missed (or missing one it met).
 */
export function targetText(value: number, target: number, atLeast: boolean, digits = 2): string {
  const met = atLeast ? value >= target : value <= target;
  let d = digits;
  for (; d < 6; d++) {
    const shown = Number(value.toFixed(d));
    if ((atLeast ? shown >= target : shown <= target) === met) break;
  }
  return value.toFixed(d);
}

/** "<value>x met" or "<value>x NOT met", the value printed by targetText. */
export function ratioVerdict(value: number, target: number, atLeast: boolean, digits = 2): string {
  const met = atLeast ? value >= target : value <= target;
  return `${targetText(value, target, atLeast, digits)}x ${met ? "met" : "NOT met"}`;
}
