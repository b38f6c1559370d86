// The few-step solver (Adams-Bashforth 2 on the velocity, one evaluation per step) and the time
// grids: order of convergence, evaluations counted at the field, the closed-form Gaussian flow at
// NFE 2-10 against Euler and Heun with the same evaluations, and the grids' closed forms.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  odeint,
  timeGrid,
  parseTimeGrid,
  TIME_GRIDS,
  type SolverName,
  type TimeGridName,
  type VelocityField,
} from "../../../src/core/solvers.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";

// dx/dt = -x + sin t: x(t) = (x(0) + 1/2) e^{-t} + (sin t - cos t) / 2.
const linear: VelocityField = (x, t) => x.map((v) => -v + Math.sin(t));
const exact = (t: number, x0 = 1) => (x0 + 0.5) * Math.exp(-t) + (Math.sin(t) - Math.cos(t)) / 2;

test("ab2 is second order on uniform and non-uniform grids: halving the step cuts the error by ~4", async () => {
  for (const grid of TIME_GRIDS) {
    const err = async (steps: number) =>
      Math.abs((await odeint(linear, new Float32Array([1]), { solver: "ab2", steps, timeGrid: grid })).x[0] - exact(1));
    // 64 -> 128 steps: at 8-16 steps the Euler start's error and AB2's own nearly cancel.
    const coarse = await err(64);
    const fine = await err(128);
    assert.ok(fine > 5e-7, `${grid}: error ${fine} too close to float32 rounding`);
    const order = Math.log2(coarse / fine);
    assert.ok(Math.abs(order - 2) < 0.3, `${grid}: observed order ${order.toFixed(2)}, expected 2`);
  }
  // Backwards (t0 > t1) too: from x(1) back to x(0) = 1.
  const back = async (steps: number) =>
    Math.abs((await odeint(linear, new Float32Array([exact(1)]), { solver: "ab2", steps, t0: 1, t1: 0 })).x[0] - 1);
  assert.ok(Math.abs(Math.log2((await back(64)) / (await back(128))) - 2) < 0.3);
});

test("ab2 makes exactly one field evaluation per step, counted where the field is called", async () => {
  for (const nfe of [1, 2, 3, 7, 10]) {
    let calls = 0;
    const times: number[] = [];
    const field: VelocityField = (x, t) => {
      calls++;
      times.push(t);
      return linear(x, t);
    };
    const r = await odeint(field, new Float32Array([1]), { solver: "ab2", nfe, saveAt: [0, 0.3, 0.77, 1], timeGrid: "edm" });
    assert.deepEqual([r.nfe, r.steps, calls], [nfe, nfe, nfe]);
    // It evaluates at the grid's left ends only: never twice at one time.
    assert.deepEqual(times, timeGrid("edm", nfe).slice(0, nfe));
  }
});

// Straight path from N(0, I) to N(mu, diag(s^2)) (the same closed form as test/unit/core/solvers.test.ts):
// its flow is x1 = mu + s x0 per sample, so each solver's error is measured exactly.
const MU = [1.5, -2];
const S = [0.5, 2];
const gaussianField: VelocityField = (x, t) => {
  const v = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const d = i % 2;
    const s2 = S[d] * S[d];
    const varT = (1 - t) ** 2 + t * t * s2;
    v[i] = MU[d] + ((t * s2 - (1 - t)) / varT) * (x[i] - t * MU[d]);
  }
  return v;
};

async function rmsError(solver: SolverName, nfe: number, grid: TimeGridName = "uniform"): Promise<number> {
  const z = new Rng(1).normals(2000);
  const r = await odeint(gaussianField, z, { solver, nfe, timeGrid: grid });
  assert.equal(r.nfe, nfe);
  let e = 0;
  for (let i = 0; i < z.length; i++) e += (r.x[i] - (MU[i % 2] + S[i % 2] * z[i])) ** 2;
  return Math.sqrt(e / z.length);
}

test("on the exact Gaussian flow, ab2 beats Euler and Heun at every NFE from 2 to 10 with the same evaluations", async () => {
  for (let nfe = 2; nfe <= 10; nfe++) {
    const ab2 = await rmsError("ab2", nfe);
    const euler = await rmsError("euler", nfe);
    assert.ok(ab2 < 0.8 * euler, `NFE ${nfe}: ab2 ${ab2} vs euler ${euler}`);
    if (nfe % 2 === 0) {
      const heun = await rmsError("heun", nfe);
      assert.ok(ab2 < 0.8 * heun, `NFE ${nfe}: ab2 ${ab2} vs heun ${heun}`);
    }
  }
});

test("time grids: exact ends, increasing, the closed forms of the shift and EDM spacings, same points backwards", () => {
  for (const name of TIME_GRIDS) {
    const g = timeGrid(name, 7);
    assert.equal(g.length, 8);
    assert.equal(g[0], 0);
    assert.equal(g[7], 1);
    assert.ok(
      g.every((t, i) => i === 0 || t > g[i - 1]),
      `${name} not increasing: ${g}`,
    );
    // Backwards visits the same times in reverse.
    const back = timeGrid(name, 7, 1, 0);
    back.reverse().forEach((t, i) => assert.ok(Math.abs(t - g[i]) < 1e-12, `${name} backwards point ${i}: ${t} vs ${g[i]}`));
  }
  // Uniform is the solvers' old arithmetic, bit for bit.
  assert.deepEqual(timeGrid("uniform", 3, 0.2, 0.9), [0.2, 0.2 + (0.7 * 1) / 3, 0.2 + (0.7 * 2) / 3, 0.9]);
  // Shift s on sigma = 1 - t: sigma' = s sigma / (1 + (s - 1) sigma); at u = 1/2, s = 3: sigma' = 3/4.
  assert.ok(Math.abs(timeGrid("shifted", 2)[1] - 0.25) < 1e-15);
  assert.ok(Math.abs(timeGrid("shifted", 2, 0, 1, { shift: 1 })[1] - 0.5) < 1e-15);
  // EDM: sigma_i = (80^(1/7) + u (0.002^(1/7) - 80^(1/7)))^7, t = 1 / (1 + sigma), rescaled to [0, 1].
  const a = 80 ** (1 / 7);
  const b = 0.002 ** (1 / 7);
  const tau = (u: number) => 1 / (1 + (a + u * (b - a)) ** 7);
  const want = (tau(0.5) - tau(0)) / (tau(1) - tau(0));
  assert.ok(Math.abs(timeGrid("edm", 2)[1] - want) < 1e-12);
  // EDM crowds the steps at both ends (small steps near noise and data, large in the middle), shifted near the noise (t = 0).
  const edm = timeGrid("edm", 10);
  const shifted = timeGrid("shifted", 10);
  assert.ok(edm[10] - edm[9] < 0.05 && edm[1] - edm[0] < 0.05 && edm[6] - edm[5] > 0.2, `edm ${edm}`);
  assert.ok(shifted[1] - shifted[0] < 0.05 && shifted[10] - shifted[9] > 0.2, `shifted ${shifted}`);
});

test("a non-uniform grid changes where a fixed-step solver evaluates and nothing else: same NFE, different steps", async () => {
  for (const solver of ["euler", "heun", "rk4"] as const) {
    const seen: Record<string, number[]> = {};
    for (const grid of ["uniform", "edm"] as const) {
      seen[grid] = [];
      const r = await odeint((x, t) => (seen[grid].push(t), linear(x, t)), new Float32Array([1]), { solver, nfe: 8, timeGrid: grid });
      assert.equal(r.nfe, 8);
    }
    assert.notDeepEqual(seen.uniform, seen.edm, solver);
  }
});

test("bad grids are user errors naming the fix; dopri5 refuses a grid it would ignore", async () => {
  const isUserError = (pattern: RegExp) => (e: unknown) => e instanceof UserError && pattern.test(e.message);
  assert.throws(() => parseTimeGrid("karras"), isUserError(/uniform, shifted, edm/));
  assert.equal(parseTimeGrid("edm"), "edm");
  assert.throws(() => timeGrid("shifted", 4, 0, 1, { shift: 0 }), isUserError(/--shift must be a positive number/));
  await assert.rejects(
    odeint(linear, new Float32Array([1]), { solver: "dopri5", timeGrid: "edm" }),
    isUserError(/dopri5 chooses its own steps/),
  );
});
