// Solvers against ODEs with known solutions: convergence order, adaptive tolerance, save times,
// backwards integration, and the closed-form Gaussian-to-Gaussian straight-path field.
import { test } from "node:test";
import assert from "node:assert/strict";
import { odeint, SOLVERS, parseSolver, type SolverName, type VelocityField } from "../src/core/solvers.js";
import { Rng } from "../src/core/rng.js";
import { UserError } from "../src/core/errors.js";

// dx/dt = -2 x + cos(3 t), x(0) = 1: x(t) = (1 - 2/13) e^{-2t} + (2 cos 3t + 3 sin 3t) / 13.
const linear: VelocityField = (x, t) => x.map((v) => -2 * v + Math.cos(3 * t));
const exact = (t: number) => (1 - 2 / 13) * Math.exp(-2 * t) + (2 * Math.cos(3 * t) + 3 * Math.sin(3 * t)) / 13;

async function errorWith(solver: SolverName, steps: number): Promise<number> {
  const { x } = await odeint(linear, new Float32Array([1]), { solver, steps, t1: 2 });
  return Math.abs(x[0] - exact(2));
}

test("fixed-step solvers converge at their order: halving the step cuts the error by 2^p", async () => {
  const orders: [SolverName, number, number][] = [
    ["euler", 1, 16],
    ["midpoint", 2, 32],
    ["heun", 2, 32],
    ["rk4", 4, 8],
  ];
  for (const [solver, p, steps] of orders) {
    const e1 = await errorWith(solver, steps);
    const e2 = await errorWith(solver, 2 * steps);
    const observed = Math.log2(e1 / e2);
    assert.ok(e2 > 1e-6, `${solver}: error ${e2} must stay above float32 rounding for the order to be measurable`);
    // The estimate approaches p from above as the step shrinks; a method of order p - 1 would fail.
    assert.ok(observed > p - 0.3 && observed < p + 0.7, `${solver}: observed order ${observed.toFixed(2)}, expected ${p}`);
  }
});

test("dopri5 meets its tolerance with fewer evaluations than rk4 needs for the same accuracy", async () => {
  const d = await odeint(linear, new Float32Array([1]), { solver: "dopri5", t1: 2, rtol: 1e-6, atol: 1e-6 });
  const err = Math.abs(d.x[0] - exact(2));
  assert.ok(err < 1e-5, `dopri5 error ${err}`);
  let rk4Nfe = 0;
  for (let steps = 1; steps < 1000; steps++) {
    const r = await odeint(linear, new Float32Array([1]), { solver: "rk4", steps, t1: 2 });
    if (Math.abs(r.x[0] - exact(2)) <= err) {
      rk4Nfe = r.nfe;
      break;
    }
  }
  assert.ok(d.nfe < rk4Nfe, `dopri5 used ${d.nfe} evaluations, rk4 needed ${rk4Nfe}`);
  // Looser tolerance, fewer evaluations.
  const loose = await odeint(linear, new Float32Array([1]), { solver: "dopri5", t1: 2, rtol: 1e-3, atol: 1e-3 });
  assert.ok(loose.nfe < d.nfe && Math.abs(loose.x[0] - exact(2)) < 1e-2);
});

test("saveAt returns states at exactly the requested times, forwards and backwards", async () => {
  const times = [0, 0.3, 0.75, 1.2, 2];
  for (const solver of SOLVERS) {
    const nfe = solver === "euler" ? 4000 : 400; // first order needs the finer grid for the same accuracy
    const r = await odeint(linear, new Float32Array([1]), { solver, t1: 2, nfe, saveAt: times, rtol: 1e-7, atol: 1e-7 });
    assert.deepEqual(r.trajectory?.t, times);
    r.trajectory?.xs.forEach((x, i) => assert.ok(Math.abs(x[0] - exact(times[i])) < 2e-4, `${solver} at t=${times[i]}: ${x[0]} vs ${exact(times[i])}`));
    const back = await odeint(linear, new Float32Array([exact(2)]), { solver, t0: 2, t1: 0, nfe, saveAt: [2, 1, 0], rtol: 1e-7, atol: 1e-7 });
    // Backwards, the decaying mode grows like e^{2t}: first-order error is amplified ~50x.
    const tol = solver === "euler" ? 1e-2 : solver === "midpoint" || solver === "heun" ? 3e-3 : 2e-4;
    assert.ok(Math.abs(back.x[0] - 1) < tol, `${solver} backwards: ${back.x[0]}`);
    assert.ok(Math.abs((back.trajectory?.xs[1][0] ?? NaN) - exact(1)) < tol);
  }
});

// Straight path from N(0, I) to N(mu, diag(s^2)): sigma_t^2 = (1-t)^2 + t^2 s^2 and
// v(x, t) = mu + ((t s^2 - (1 - t)) / sigma_t^2) (x - t mu), per dimension.
const MU = [1.5, -2];
const S = [0.5, 2];
const gaussianField: VelocityField = (x, t) => {
  const v = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const d = i % 2;
    const s2 = S[d] * S[d];
    const var_t = (1 - t) ** 2 + t * t * s2;
    v[i] = MU[d] + ((t * s2 - (1 - t)) / var_t) * (x[i] - t * MU[d]);
  }
  return v;
};

function moments(x: Float32Array, d: number): { mean: number; std: number } {
  const n = x.length / 2;
  let m = 0;
  for (let i = 0; i < n; i++) m += x[2 * i + d] / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[2 * i + d] - m) ** 2 / (n - 1);
  return { mean: m, std: Math.sqrt(v) };
}

test("the exact Gaussian straight-path field carries N(0, I) to N(mu, s^2) and back", async () => {
  const n = 20000;
  const x0 = new Rng(8).normals(2 * n);
  for (const solver of ["rk4", "dopri5"] as const) {
    const { x } = await odeint(async (x, t) => gaussianField(x, t), x0, { solver, nfe: 40 });
    for (let d = 0; d < 2; d++) {
      const { mean, std } = moments(x, d);
      const se = S[d] / Math.sqrt(n);
      assert.ok(Math.abs(mean - MU[d]) < 4 * se, `${solver} dim ${d}: mean ${mean} vs ${MU[d]}`);
      assert.ok(Math.abs(std - S[d]) < 4 * se, `${solver} dim ${d}: std ${std} vs ${S[d]}`);
    }
    const back = await odeint(gaussianField, x, { solver, nfe: 40, t0: 1, t1: 0 });
    let maxErr = 0;
    for (let i = 0; i < x0.length; i++) maxErr = Math.max(maxErr, Math.abs(back.x[i] - x0[i]));
    assert.ok(maxErr < 1e-3, `${solver} round trip error ${maxErr}`);
  }
});

test("the tutorial error (x1 - x0) / t is not the straight path's field: it misses the target", async () => {
  // Its marginal field is v / t; integrating it from t = 0.01 does not land on N(mu, s^2).
  const n = 4000;
  const x0 = new Rng(9).normals(2 * n);
  const wrong: VelocityField = async (x, t) => (await gaussianField(x, t)).map((v) => v / Math.max(t, 1e-2));
  const { x } = await odeint(wrong, x0, { solver: "rk4", nfe: 200, t0: 0.01 });
  const { mean } = moments(x, 0);
  assert.ok(Math.abs(mean - MU[0]) > 0.5, `wrong target mean ${mean} should miss ${MU[0]}`);
});

test("bad solver names and budgets are user errors naming the flag", async () => {
  assert.throws(() => parseSolver("rk45"), (e: unknown) => e instanceof UserError && /euler, midpoint, heun, rk4, dopri5/.test(e.message));
  await assert.rejects(odeint(linear, new Float32Array([1]), { solver: "euler", nfe: 0 }), /--nfe must be a positive integer, got 0/);
  await assert.rejects(odeint(linear, new Float32Array([1]), { solver: "rk4", steps: 1.5 }), /--steps must be a positive integer/);
});
