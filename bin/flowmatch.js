#!/usr/bin/env node
// The installed command: runs the compiled CLI (dist/, built by `npm run build`; npm pack builds it).
// In a checkout, `npm run dev -- <command>` runs the TypeScript sources instead.
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli/bin.js", import.meta.url);
if (existsSync(entry)) {
  await import(entry.href);
} else {
  process.stderr.write(
    "error: flowmatch is not built (no dist/cli/bin.js); run npm run build, or npm run dev -- <command> to run the sources\n",
  );
  process.exitCode = 1;
}
