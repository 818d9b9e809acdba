// The bench's verdict lines (bench/stats.ts): a ratio is printed with enough decimals that the
// printed figure lands on the same side of its target as the measured one.
import { describe, expect, it } from "vitest";
import { median, ratioVerdict, targetText } from "../bench/stats.js";

describe("bench verdicts", () => {
  it("prints two decimals where they keep the figure on its side of the target", () => {
    expect(ratioVerdict(1.73, 1.5, true)).toBe("1.73x met");
    expect(ratioVerdict(1.5, 1.5, true)).toBe("1.50x met");
    expect(ratioVerdict(0.44, 0.5, false)).toBe("0.44x met");
    expect(ratioVerdict(1.31, 1.2, false)).toBe("1.31x NOT met");
    expect(ratioVerdict(20.66, 15, true, 1)).toBe("20.7x met");
  });

  it("adds decimals where rounding would cross the target", () => {
    // The 11-26 16:52 run's batch-64 mlp ratio, once printed "1.50x NOT met".
    expect(ratioVerdict(1.4954, 1.5, true)).toBe("1.495x NOT met");
    expect(ratioVerdict(1.2049, 1.2, false)).toBe("1.205x NOT met");
    expect(ratioVerdict(0.50004, 0.5, false)).toBe("0.50004x NOT met");
    expect(ratioVerdict(14.96, 15, true, 1)).toBe("14.96x NOT met");
    expect(targetText(1.6996, 1.7, true)).toBe("1.6996");
    // A met figure that rounds onto the target stays met.
    expect(ratioVerdict(1.19999, 1.2, false)).toBe("1.20x met");
  });

  it("takes the median of odd and even counts", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});
