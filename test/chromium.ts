// Debian's Chromium for the browser tests (playwright-core drives it; nothing is downloaded), with
// the flags this closed network needs: no sandbox (CI runs as root), no GPU, and no attempt to
// phone home.
import { existsSync } from "node:fs";

export const CHROMIUM = "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-quic",
  "--no-first-run",
  "--disable-sync",
];

/** Fails with how to install it when Debian's Chromium is missing. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with ` +
        `"apt-get install -y --no-install-recommends chromium" (.ci/run does this before npm test).`,
    );
}
