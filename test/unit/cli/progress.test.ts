// The progress line's rate counts only the steps this process made: a resumed run starts at its
// resume step, not at 0.
import { mock, test } from "node:test";
import assert from "node:assert/strict";
import { createProgress } from "../../../src/cli/progress.js";

test("progress rate and time left count from the first update (a resume at step 50 of 100)", (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: 1_000_000 });
  const lines: string[] = [];
  const write = mock.method(process.stderr, "write", (s: string) => {
    lines.push(s);
    return true;
  });
  const wasTTY = process.stderr.isTTY;
  Object.defineProperty(process.stderr, "isTTY", { value: false, configurable: true });
  try {
    const p = createProgress("train", 100);
    p.update(50, { loss: "1.0" });
    t.mock.timers.tick(2000);
    p.update(60, { loss: "0.9" });
  } finally {
    write.mock.restore();
    Object.defineProperty(process.stderr, "isTTY", { value: wasTTY, configurable: true });
  }
  assert.equal(lines.length, 2);
  // No rate yet at the first update: nothing has been timed.
  assert.match(lines[0], /^train 50\/100 \| loss 1\.0 \| -\/s \| \? left$/m);
  // 10 steps in 2 s: 5 steps/s and 40 steps left = 8 s (counting from 0 would say 30/s).
  assert.match(lines[1], /^train 60\/100 \| loss 0\.9 \| 5\.0\/s \| 8s left$/m);
});
