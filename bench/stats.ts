// Summary statistics shared by the benchmarks.

/** The median; the mean of the two middle values for an even count. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Whether `value` meets `target`: at least it, or at most it. */
export function meets(value: number, target: number, atLeast: boolean): boolean {
  return atLeast ? value >= target : value <= target;
}

/**
 * `value` to `digits` decimals, or to more (up to 6) where fewer would round it onto the other
 * side of `target`: 1.4954 against a target of at least 1.5 prints "1.495", not "1.50", so a
 * printed figure never reads as meeting a target it missed (or missing one it met).
 */
export function targetText(value: number, target: number, atLeast: boolean, digits = 2): string {
  const met = meets(value, target, atLeast);
  let d = digits;
  for (; d < 6; d++) if (meets(Number(value.toFixed(d)), target, atLeast) === met) break;
  return value.toFixed(d);
}

/** "<value>x met" or "<value>x NOT met", the value printed by targetText. */
export function ratioVerdict(value: number, target: number, atLeast: boolean, digits = 2): string {
  const met = meets(value, target, atLeast);
  return `${targetText(value, target, atLeast, digits)}x ${met ? "met" : "NOT met"}`;
}
