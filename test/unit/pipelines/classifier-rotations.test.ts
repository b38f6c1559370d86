// train-classifier --rotations: each training image is turned by a random number of clockwise
// quarter turns and labelled with it (features for eval-image on data with one class).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../../../src/core/rng.js";
import { rotateBatch } from "../../../src/pipelines/classifier.js";

test("rotateBatch turns each image clockwise by its label's quarter turns (2x2 and 3x3, 2 channels)", () => {
  // [a b; c d] clockwise: 90° [c a; d b], 180° [d c; b a], 270° [b d; a c].
  const expected2 = [
    [1, 2, 3, 4],
    [3, 1, 4, 2],
    [4, 3, 2, 1],
    [2, 4, 1, 3],
  ];
  const n = 40;
  const x = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) x.set([1, 2, 3, 4], 4 * i);
  const labels = new Int32Array(n);
  rotateBatch(x, labels, 2, 1, new Rng(3));
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    seen.add(labels[i]);
    assert.deepEqual(Array.from(x.subarray(4 * i, 4 * i + 4)), expected2[labels[i]], `image ${i}, label ${labels[i]}`);
  }
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3]);
  // 3x3 with 2 channels: a clockwise quarter turn moves the top-left pixel to the top-right, channels kept.
  const img = Float32Array.from({ length: 18 }, (_, k) => k);
  for (let seed = 0; ; seed++) {
    const x3 = img.slice();
    const l = new Int32Array(1);
    rotateBatch(x3, l, 3, 2, new Rng(seed));
    if (l[0] !== 1) continue;
    // Pixel (y, x) -> (x, 2 - y): (0, 0) -> (0, 2); (2, 0) -> (0, 0); centre stays.
    assert.deepEqual(Array.from(x3.subarray(4, 6)), [0, 1]);
    assert.deepEqual(Array.from(x3.subarray(0, 2)), [12, 13]);
    assert.deepEqual(Array.from(x3.subarray(8, 10)), [8, 9]);
    break;
  }
});
