// Solvers against ODEs with known solutions: convergence order, adaptive tolerance and FSAL
// accounting, save times (forwards, backwards, any order), async fields, packed extra state, and the
// closed-form Gaussian-to-Gaussian straight-path field.
import { test } from "node:test";
import assert from "node:assert/strict";
import { odeint, SOLVERS, parseSolver, stepsForNfe, type SolverName, type VelocityField } from "../../../src/core/solvers.js";
import { Rng } from "../../../src/core/rng.js";
import { UserError } from "../../../src/core/errors.js";

// dx/dt = -x + sin t: x(t) = (x(0) + 1/2) e^{-t} + (sin t - cos t) / 2.
const linear: VelocityField = (x, t) => x.map((v) => -v + Math.sin(t));
const exact = (t: number, x0 = 1) => (x0 + 0.5) * Math.exp(-t) + (Math.sin(t) - Math.cos(t)) / 2;
const one = () => new Float32Array([1]);

async function errorAtOne(solver: SolverName, steps: number): Promise<number> {
  const { x } = await odeint(linear, one(), { solver, steps });
  return Math.abs(x[0] - exact(1));
}

test("fixed-step solvers converge at their order: halving the step cuts the error at t=1 by 2^p", async () => {
  // Step counts keep every error far above float32 rounding of the output (~3e-8 here).
  const cases: [SolverName, number, number][] = [
    ["euler", 1, 16],
    ["midpoint", 2, 16],
    ["heun", 2, 16],
    ["rk4", 4, 4],
  ];
  for (const [solver, p, steps] of cases) {
    const coarse = await errorAtOne(solver, steps);
    const fine = await errorAtOne(solver, 2 * steps);
    assert.ok(fine > 5e-7, `${solver}: error ${fine} too close to float32 rounding to measure an order`);
    const observed = Math.log2(coarse / fine);
    assert.ok(Math.abs(observed - p) < 0.3, `${solver}: observed order ${observed.toFixed(2)}, expected ${p}`);
  }
});

/** The field, counting its calls where the caller sees them (independently of odeint's own count). */
function counting(field: VelocityField): { field: VelocityField; calls: () => number } {
  let calls = 0;
  return {
    field: (x, t) => {
      calls++;
      return field(x, t);
    },
    calls: () => calls,
  };
}

test("an nfe budget is spent exactly: the reported nfe is the number of field calls made", async () => {
  const expected: Record<string, [number, number]> = { euler: [12, 12], midpoint: [6, 12], heun: [6, 12], rk4: [3, 12] };
  const frames = Array.from({ length: 41 }, (_, i) => i / 40);
  for (const [solver, [steps, nfe]] of Object.entries(expected)) {
    for (const saveAt of [undefined, frames]) {
      const f = counting(linear);
      const r = await odeint(f.field, one(), { solver: parseSolver(solver), nfe: 12, saveAt });
      assert.deepEqual([r.steps, r.nfe, f.calls()], [steps, nfe, nfe], `${solver}${saveAt ? " with 41 save times" : ""}`);
    }
  }
  // Dopri5 picks its steps; what it reports is what it called, with or without save times.
  for (const saveAt of [undefined, [0.25, 0.5, 0.9]]) {
    const f = counting(linear);
    const r = await odeint(f.field, one(), { solver: "dopri5", nfe: 1, rtol: 1e-6, atol: 1e-6, saveAt });
    assert.equal(r.nfe, f.calls());
    assert.ok(r.nfe > 2);
  }
});

test("a budget the solver cannot spend exactly is refused, naming the nearest budgets that work", async () => {
  const isUserError = (pattern: RegExp) => (e: unknown) => e instanceof UserError && pattern.test(e.message);
  await assert.rejects(
    odeint(linear, one(), { solver: "rk4", nfe: 10 }),
    isUserError(/rk4 makes 4 network evaluations per step, so it cannot spend --nfe 10; use --nfe 8 or --nfe 12/),
  );
  await assert.rejects(odeint(linear, one(), { solver: "rk4", nfe: 1 }), isUserError(/cannot spend --nfe 1; use --nfe 4$/));
  await assert.rejects(odeint(linear, one(), { solver: "heun", nfe: 5 }), isUserError(/use --nfe 4 or --nfe 6/));
  await assert.rejects(odeint(linear, one(), { solver: "midpoint", nfe: 1 }), isUserError(/use --nfe 2$/));
  assert.equal(stepsForNfe("euler", 1), 1);
  assert.equal(stepsForNfe("dopri5", 7), null);
  assert.throws(() => stepsForNfe("rk4", 6, "--pair-nfe"), isUserError(/--pair-nfe 6; use --pair-nfe 4 or --pair-nfe 8/));
});

test("dopri5 meets rtol 1e-6 with fewer evaluations than rk4 needs for the same accuracy", async () => {
  const d = await odeint(linear, one(), { solver: "dopri5", t1: 3, rtol: 1e-6, atol: 1e-6 });
  const err = Math.abs(d.x[0] - exact(3));
  assert.ok(err < 2e-6, `dopri5 error ${err}`);
  // First-same-as-last: 1 evaluation at t0, 1 for the initial step guess, then 6 per attempted step.
  assert.equal(d.nfe, 2 + 6 * (d.steps + (d.rejected ?? 0)));
  let rk4Nfe = Infinity;
  for (let steps = 1; steps < 1000; steps++) {
    const r = await odeint(linear, one(), { solver: "rk4", steps, t1: 3 });
    if (Math.abs(r.x[0] - exact(3)) <= err) {
      rk4Nfe = r.nfe;
      break;
    }
  }
  assert.ok(d.nfe < rk4Nfe, `dopri5 used ${d.nfe} evaluations, rk4 needed ${rk4Nfe}`);
  const loose = await odeint(linear, one(), { solver: "dopri5", t1: 3, rtol: 1e-3, atol: 1e-3 });
  const looseErr = Math.abs(loose.x[0] - exact(3));
  assert.ok(loose.nfe < d.nfe && looseErr < 1e-3 && looseErr > err, `loose: nfe ${loose.nfe}, error ${looseErr}`);
});

test("dopri5 adapts: a fast transient forces rejections and small steps, then it throws past maxSteps", async () => {
  // dx/dt = -50 (x - cos t): the initial transient needs small steps; rejected steps are counted.
  const stiffish: VelocityField = (x, t) => x.map((v) => -50 * (v - Math.cos(t)));
  const r = await odeint(stiffish, new Float32Array([5]), { solver: "dopri5", rtol: 1e-6, atol: 1e-6 });
  // x(t) = 2500/2501 cos t + 50/2501 sin t + (5 - 2500/2501) e^{-50 t}
  const want = (2500 / 2501) * Math.cos(1) + (50 / 2501) * Math.sin(1) + (5 - 2500 / 2501) * Math.exp(-50);
  assert.ok(Math.abs(r.x[0] - want) < 1e-5, `dopri5 ${r.x[0]} vs ${want}`);
  assert.ok(r.steps > 20, `only ${r.steps} steps for a rate-50 transient`);
  await assert.rejects(
    odeint(stiffish, new Float32Array([5]), { solver: "dopri5", rtol: 1e-6, atol: 1e-6, maxSteps: 5 }),
    (e: unknown) => e instanceof Error && !(e instanceof UserError) && /exceeded 5 steps/.test(e.message),
  );
});

test("saveAt returns states at exactly the requested times, forwards and backwards", async () => {
  const times = [0, 0.3, 0.75, 1.2, 2];
  for (const solver of SOLVERS) {
    // Budgets whose grids hold every save time (first order needs a finer grid for the same accuracy).
    const nfe = solver === "euler" ? 4000 : 480;
    const tol = solver === "euler" ? 2e-4 : 2e-5;
    const fwd = await odeint(linear, one(), { solver, t1: 2, nfe, saveAt: times, rtol: 1e-7, atol: 1e-7 });
    assert.deepEqual(fwd.trajectory?.t, times);
    fwd.trajectory?.xs.forEach((x, i) =>
      assert.ok(Math.abs(x[0] - exact(times[i])) < tol, `${solver} at t=${times[i]}: ${x[0]} vs ${exact(times[i])}`),
    );
    // Backwards from x(2) to 0, saving on the way down.
    const back = await odeint(linear, new Float32Array([exact(2)]), {
      solver,
      t0: 2,
      t1: 0,
      nfe,
      saveAt: [2, 1.5, 0.4, 0],
      rtol: 1e-7,
      atol: 1e-7,
    });
    assert.deepEqual(back.trajectory?.t, [2, 1.5, 0.4, 0]);
    // Backwards the decaying mode grows like e^t, amplifying the solver's error a few times.
    back.trajectory?.xs.forEach((x, i) => {
      const t = [2, 1.5, 0.4, 0][i];
      assert.ok(Math.abs(x[0] - exact(t)) < 5 * tol, `${solver} backwards at t=${t}: ${x[0]} vs ${exact(t)}`);
    });
    assert.equal(back.x[0], back.trajectory?.xs[3][0]);
  }
});

test("saveAt in any order comes back in that order and never changes the run", async () => {
  const times = [0.9, 0.1, 0.55];
  for (const solver of SOLVERS) {
    const plain = await odeint(linear, one(), { solver, nfe: 400 });
    const f = counting(linear);
    const saved = await odeint(f.field, one(), { solver, nfe: 400, saveAt: [...times, 0.123, 0.777] });
    assert.deepEqual(saved.trajectory?.t.slice(0, 3), times);
    const tol = solver === "euler" ? 1e-3 : 2e-5;
    saved.trajectory?.xs
      .slice(0, 3)
      .forEach((x, i) => assert.ok(Math.abs(x[0] - exact(times[i])) < tol, `${solver} at ${times[i]}: ${x[0]} vs ${exact(times[i])}`));
    // Same evaluations, same steps, same result, whether or not (and wherever) states are saved.
    assert.deepEqual(
      [saved.nfe, f.calls(), saved.steps, saved.x[0]],
      [plain.nfe, plain.nfe, plain.steps, plain.x[0]],
      `${solver}: saveAt changed the run`,
    );
  }
  // Many more save times than steps (a 41-frame GIF of a 1-step solve): still 1 step, 1 evaluation;
  // between grid points the state is the straight line between them, which is Euler's own path.
  const frames = Array.from({ length: 41 }, (_, i) => i / 40);
  const f = counting(linear);
  const one1 = await odeint(f.field, one(), { solver: "euler", nfe: 1, saveAt: frames });
  assert.deepEqual([one1.steps, one1.nfe, f.calls()], [1, 1, 1]);
  const end = 1 + (-1 + Math.sin(0)); // x0 + v(x0, 0)
  assert.ok(Math.abs(one1.x[0] - end) < 1e-7);
  one1.trajectory?.xs.forEach((x, i) => assert.ok(Math.abs(x[0] - (1 + (i / 40) * (end - 1))) < 1e-6, `frame ${i}: ${x[0]}`));
  const rk = await odeint(linear, one(), { solver: "rk4", steps: 2, saveAt: [0.1, 0.5, 0.7] });
  const half = await odeint(linear, one(), { solver: "rk4", steps: 1, t1: 0.5 });
  assert.equal(rk.steps, 2);
  assert.ok(Math.abs((rk.trajectory?.xs[1][0] ?? NaN) - half.x[0]) < 1e-7, "a save time on the grid gets the grid state");
  assert.ok(Math.abs((rk.trajectory?.xs[0][0] ?? NaN) - (0.8 * 1 + 0.2 * half.x[0])) < 1e-6, "between grid points: linear");
});

test("async velocity fields give the same answers as synchronous ones", async () => {
  const deferred: VelocityField = async (x, t) => {
    await new Promise((resolve) => setImmediate(resolve));
    return linear(x, t);
  };
  for (const solver of SOLVERS) {
    const sync = await odeint(linear, one(), { solver, nfe: 24, saveAt: [0.5] });
    const async_ = await odeint(deferred, one(), { solver, nfe: 24, saveAt: [0.5] });
    assert.deepEqual([async_.x, async_.nfe, async_.trajectory], [sync.x, sync.nfe, sync.trajectory], solver);
  }
});

test("state length is arbitrary: callers pack extra state such as a running integral", async () => {
  // [x_a, x_b, I] with x' = -x + sin t and I' = x_a, so I(1) = integral of x_a over [0, 1].
  const packed: VelocityField = (s, t) => new Float32Array([-s[0] + Math.sin(t), -s[1] + Math.sin(t), s[0]]);
  const integral = 1.5 * (1 - Math.exp(-1)) + (1 - Math.cos(1) - Math.sin(1)) / 2;
  const want = [exact(1), exact(1, -2), integral];
  for (const solver of ["rk4", "dopri5"] as const) {
    const steps: number[] = [];
    const r = await odeint(packed, new Float32Array([1, -2, 0]), {
      solver,
      nfe: 200,
      rtol: 1e-7,
      atol: 1e-7,
      onStep: (t) => steps.push(t),
    });
    r.x.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `${solver} component ${i}: ${v} vs ${want[i]}`));
    assert.equal(steps.length, r.steps);
    assert.equal(steps[steps.length - 1], 1);
    assert.ok(
      steps.every((t, i) => i === 0 || t > steps[i - 1]),
      `${solver}: onStep times not increasing`,
    );
  }
});

// Straight path from N(0, I) to N(mu, diag(s^2)): sigma_t^2 = (1-t)^2 + t^2 s^2 and
// v(x, t) = mu + ((t s^2 - (1 - t)) / sigma_t^2) (x - t mu), per dimension. Its flow is the
// per-sample affine map x_t = t mu + sigma_t x0, so every trajectory has a known end point.
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

function moments(x: Float32Array, d: number): { mean: number; std: number } {
  const n = x.length / 2;
  let m = 0;
  for (let i = 0; i < n; i++) m += x[2 * i + d] / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[2 * i + d] - m) ** 2 / (n - 1);
  return { mean: m, std: Math.sqrt(v) };
}

/** Mean within 3 standard errors (s / sqrt n) and std within 3 (s / sqrt 2n) of the target. */
function assertGaussian(x: Float32Array, mu: number[], s: number[], label: string) {
  const n = x.length / 2;
  for (let d = 0; d < 2; d++) {
    const { mean, std } = moments(x, d);
    assert.ok(Math.abs(mean - mu[d]) < (3 * s[d]) / Math.sqrt(n), `${label} dim ${d}: mean ${mean} vs ${mu[d]}`);
    assert.ok(Math.abs(std - s[d]) < (3 * s[d]) / Math.sqrt(2 * n), `${label} dim ${d}: std ${std} vs ${s[d]}`);
  }
}

function maxAbsDiff(a: Float32Array, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("the exact Gaussian straight-path field carries N(0, I) to N(mu, s^2) and back", async () => {
  const n = 20000;
  const z = new Rng(8).normals(2 * n);
  const pushed = z.map((v, i) => MU[i % 2] + S[i % 2] * v);
  const target = new Rng(9).normals(2 * n);
  const data = target.map((v, i) => MU[i % 2] + S[i % 2] * v);
  for (const solver of ["rk4", "dopri5"] as const) {
    const fwd = await odeint(gaussianField, z, { solver, nfe: 40 });
    assertGaussian(fwd.x, MU, S, `${solver} forward`);
    assert.ok(maxAbsDiff(fwd.x, pushed) < 1e-3, `${solver}: samples off the exact flow map by ${maxAbsDiff(fwd.x, pushed)}`);
    const back = await odeint(gaussianField, data, { solver, nfe: 40, t0: 1, t1: 0 });
    assertGaussian(back.x, [0, 0], [1, 1], `${solver} backward`);
    assert.ok(maxAbsDiff(back.x, target) < 1e-3, `${solver}: backward off the exact map by ${maxAbsDiff(back.x, target)}`);
  }
});

test("the tutorial error (x1 - x0) / t is not the straight path's field: it misses the target", async () => {
  // Regressing on (x1 - x0) / t learns v / t; integrating that from t = 0.01 overshoots N(mu, s^2).
  const x0 = new Rng(10).normals(2 * 4000);
  const wrong: VelocityField = async (x, t) => (await gaussianField(x, t)).map((v) => v / Math.max(t, 1e-2));
  const { x } = await odeint(wrong, x0, { solver: "rk4", nfe: 200, t0: 0.01 });
  const { mean } = moments(x, 0);
  assert.ok(Math.abs(mean - MU[0]) > 0.5, `wrong target mean ${mean} should miss ${MU[0]}`);
});

test("bad solver names, budgets and save times are user errors naming the problem", async () => {
  const isUserError = (pattern: RegExp) => (e: unknown) => e instanceof UserError && pattern.test(e.message);
  assert.throws(() => parseSolver("rk45"), isUserError(/euler, midpoint, heun, rk4, dopri5/));
  assert.equal(parseSolver("heun"), "heun");
  await assert.rejects(odeint(linear, one(), { solver: "euler", nfe: 0 }), isUserError(/--nfe must be a positive integer, got 0/));
  await assert.rejects(odeint(linear, one(), { solver: "euler", nfe: NaN }), isUserError(/--nfe must be a positive integer, got NaN/));
  await assert.rejects(odeint(linear, one(), { solver: "rk4", steps: 1.5 }), isUserError(/--steps must be a positive integer, got 1.5/));
  await assert.rejects(odeint(linear, one(), { solver: "rk4", saveAt: [1.5] }), isUserError(/saveAt time 1.5 is outside/));
  await assert.rejects(odeint(linear, one(), { solver: "dopri5", rtol: 0 }), isUserError(/--rtol and --atol must be positive/));
  await assert.rejects(odeint(linear, one(), { solver: "rk4", t1: Infinity }), isUserError(/must be finite/));
});
