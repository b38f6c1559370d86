import { test } from "node:test";
import assert from "node:assert/strict";
import { otAssignment, otCouple } from "../../../src/core/coupling.js";
import { Rng } from "../../../src/core/rng.js";

function totalCost(x0: Float32Array, x1: Float32Array, dim: number, perm: ArrayLike<number>): number {
  let c = 0;
  for (let i = 0; i < perm.length; i++) for (let k = 0; k < dim; k++) c += (x0[i * dim + k] - x1[perm[i] * dim + k]) ** 2;
  return c;
}

function permutations(n: number): number[][] {
  if (n === 1) return [[0]];
  return permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
}

test("OT assignment is a permutation with the minimum total cost (brute force on 6 points)", () => {
  const rng = new Rng(4);
  for (let trial = 0; trial < 5; trial++) {
    const x0 = rng.normals(12);
    const x1 = rng.normals(12).map((v) => v + 2);
    const perm = otAssignment(x0, x1, 2);
    assert.deepEqual([...perm].sort(), [0, 1, 2, 3, 4, 5]);
    const best = Math.min(...permutations(6).map((p) => totalCost(x0, x1, 2, p)));
    assert.ok(Math.abs(totalCost(x0, x1, 2, perm) - best) < 1e-9, `trial ${trial}`);
  }
});

test("OT coupling of a batch shortens paths versus independent pairing and carries labels along", () => {
  const rng = new Rng(5);
  const n = 128;
  const x0 = rng.normals(2 * n);
  const x1 = rng.normals(2 * n).map((v) => 3 * v);
  const labels = Int32Array.from({ length: n }, (_, i) => i);
  const coupled = otCouple(x0, x1, 2, labels);
  const identity = Array.from({ length: n }, (_, i) => i);
  const independent = totalCost(x0, x1, 2, identity);
  const ot = totalCost(x0, coupled.x1, 2, identity);
  assert.ok(ot < 0.5 * independent, `OT cost ${ot} vs independent ${independent}`);
  for (let i = 0; i < n; i++) {
    const j = coupled.labels![i];
    assert.equal(coupled.x1[2 * i], x1[2 * j]);
  }
});
