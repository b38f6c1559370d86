// ODE solvers for dx/dt = v(x, t) on host batches. They know nothing about models: the same
// solver integrates a jax-js network, an ONNX session or an analytic field. Fixed-step methods
// share one explicit Runge-Kutta stepper driven by a Butcher tableau; Dopri5 adds an embedded
// error estimate and step-size control (Hairer, Norsett & Wanner, Solving ODEs I, II.4).
import { UserError } from "./errors.js";

/** A velocity field over a flattened batch; returns dx/dt with the same length as x. */
export type VelocityField = (x: Float32Array, t: number) => Float32Array | Promise<Float32Array>;

export type SolverName = "euler" | "midpoint" | "heun" | "rk4" | "dopri5";
export const SOLVERS: readonly SolverName[] = ["euler", "midpoint", "heun", "rk4", "dopri5"];

export function parseSolver(name: string): SolverName {
  if ((SOLVERS as readonly string[]).includes(name)) return name as SolverName;
  throw new UserError(`unknown solver "${name}"; choose one of: ${SOLVERS.join(", ")}`);
}

interface Tableau {
  /** Stage coefficients a[i][j], j < i. */
  a: number[][];
  /** Solution weights. */
  b: number[];
  /** Stage times. */
  c: number[];
}

const TABLEAUS: Record<Exclude<SolverName, "dopri5">, Tableau> = {
  euler: { a: [[]], b: [1], c: [0] },
  midpoint: { a: [[], [0.5]], b: [0, 1], c: [0, 0.5] },
  heun: { a: [[], [1]], b: [0.5, 0.5], c: [0, 1] },
  rk4: { a: [[], [0.5], [0, 0.5], [0, 0, 1]], b: [1 / 6, 1 / 3, 1 / 3, 1 / 6], c: [0, 0.5, 0.5, 1] },
};

// Dormand-Prince 5(4): 7 stages, first-same-as-last, 5th-order solution b, 4th-order bHat.
const DOPRI = {
  c: [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
  a: [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
  ],
  b: [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
  bHat: [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
  // Dense output (Hairer's contd5 coefficients) for interpolating inside an accepted step.
  d: [-12715105075 / 11282082432, 0, 87487479700 / 32700410799, -10690763975 / 1880347072, 701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423],
};

export interface OdeOptions {
  solver: SolverName;
  t0?: number;
  t1?: number;
  /** Fixed-step solvers: budget of function evaluations; steps = floor(nfe / stages), at least 1. */
  nfe?: number;
  /** Fixed-step solvers: number of steps (instead of nfe). */
  steps?: number;
  rtol?: number;
  atol?: number;
  maxSteps?: number;
  /** Record the state at these times (inside [t0, t1], in integration order). */
  saveAt?: number[];
  onStep?: (t: number, x: Float32Array) => void;
}

export interface OdeResult {
  x: Float32Array;
  trajectory?: { t: number[]; xs: Float32Array[] };
  nfe: number;
  steps: number;
  rejected?: number;
}

/** Evaluations per step of each method (Dopri5 reuses its last stage: 6 per accepted step). */
export const EVALS_PER_STEP: Record<SolverName, number> = { euler: 1, midpoint: 2, heun: 2, rk4: 4, dopri5: 6 };

function checkSaveAt(saveAt: number[] | undefined, t0: number, t1: number): number[] {
  if (!saveAt) return [];
  const dir = Math.sign(t1 - t0) || 1;
  const lo = Math.min(t0, t1);
  const hi = Math.max(t0, t1);
  for (let i = 0; i < saveAt.length; i++) {
    const s = saveAt[i];
    if (!Number.isFinite(s) || s < lo - 1e-12 || s > hi + 1e-12) throw new UserError(`saveAt time ${s} is outside the integration interval [${lo}, ${hi}]`);
    if (i > 0 && (s - saveAt[i - 1]) * dir < 0) throw new UserError("saveAt times must be ordered in the direction of integration");
  }
  return saveAt;
}

export async function odeint(field: VelocityField, x0: Float32Array, opts: OdeOptions): Promise<OdeResult> {
  const t0 = opts.t0 ?? 0;
  const t1 = opts.t1 ?? 1;
  if (!Number.isFinite(t0) || !Number.isFinite(t1)) throw new UserError(`integration times must be finite, got ${t0} -> ${t1}`);
  const saveAt = checkSaveAt(opts.saveAt, t0, t1);
  if (opts.solver === "dopri5") return dopri5(field, x0, t0, t1, saveAt, opts);
  const tableau = TABLEAUS[opts.solver];
  if (!tableau) throw new UserError(`unknown solver "${String(opts.solver)}"; choose one of: ${SOLVERS.join(", ")}`);
  let steps: number;
  if (opts.steps !== undefined) {
    if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
    steps = opts.steps;
  } else {
    const nfe = opts.nfe ?? 100;
    if (!Number.isInteger(nfe) || nfe < 1) throw new UserError(`--nfe must be a positive integer, got ${nfe}`);
    steps = Math.max(1, Math.floor(nfe / tableau.b.length));
  }
  return fixedStep(field, x0, t0, t1, steps, tableau, saveAt, opts.onStep);
}

/** y = x + h * sum_j coef[j] * k[j] in float64, for stage inputs and updates. */
function combine(x: Float64Array, h: number, coef: number[], ks: Float32Array[]): Float64Array {
  const out = new Float64Array(x);
  for (let j = 0; j < coef.length; j++) {
    const w = h * coef[j];
    if (w === 0) continue;
    const k = ks[j];
    for (let i = 0; i < out.length; i++) out[i] += w * k[i];
  }
  return out;
}

async function evaluate(field: VelocityField, x: Float64Array, t: number): Promise<Float32Array> {
  const v = await field(Float32Array.from(x), t);
  if (v.length !== x.length) throw new Error(`velocity field returned ${v.length} values for a state of ${x.length}`);
  return v;
}

async function fixedStep(
  field: VelocityField,
  x0: Float32Array,
  t0: number,
  t1: number,
  steps: number,
  tab: Tableau,
  saveAt: number[],
  onStep?: (t: number, x: Float32Array) => void,
): Promise<OdeResult> {
  // Step grid: uniform, split at the save times so every requested state is hit exactly.
  const grid = new Set<number>();
  for (let k = 0; k <= steps; k++) grid.add(t0 + ((t1 - t0) * k) / steps);
  for (const s of saveAt) grid.add(s);
  const dir = Math.sign(t1 - t0) || 1;
  const times = [...grid].sort((a, b) => (a - b) * dir);
  // Merge points closer than a rounding error (a save time that equals a grid time).
  const ts = times.filter((t, i) => i === 0 || Math.abs(t - times[i - 1]) > 1e-12);
  let x: Float64Array = Float64Array.from(x0);
  let nfe = 0;
  const trajectory = saveAt.length > 0 ? { t: [] as number[], xs: [] as Float32Array[] } : undefined;
  let next = 0;
  const record = (t: number) => {
    while (trajectory && next < saveAt.length && Math.abs(saveAt[next] - t) <= 1e-12) {
      trajectory.t.push(saveAt[next]);
      trajectory.xs.push(Float32Array.from(x));
      next++;
    }
  };
  record(ts[0]);
  for (let s = 0; s + 1 < ts.length; s++) {
    const t = ts[s];
    const h = ts[s + 1] - t;
    const ks: Float32Array[] = [];
    for (let i = 0; i < tab.b.length; i++) {
      const xi = i === 0 ? x : combine(x, h, tab.a[i], ks);
      ks.push(await evaluate(field, xi, t + tab.c[i] * h));
      nfe++;
    }
    x = combine(x, h, tab.b, ks);
    onStep?.(ts[s + 1], Float32Array.from(x));
    record(ts[s + 1]);
  }
  return { x: Float32Array.from(x), trajectory, nfe, steps: ts.length - 1 };
}

async function dopri5(field: VelocityField, x0: Float32Array, t0: number, t1: number, saveAt: number[], opts: OdeOptions): Promise<OdeResult> {
  const rtol = opts.rtol ?? 1e-5;
  const atol = opts.atol ?? 1e-5;
  const maxSteps = opts.maxSteps ?? 10000;
  if (!(rtol > 0) || !(atol > 0)) throw new UserError(`--rtol and --atol must be positive, got ${rtol} and ${atol}`);
  const dir = Math.sign(t1 - t0) || 1;
  const n = x0.length;
  let x: Float64Array = Float64Array.from(x0);
  let t = t0;
  let nfe = 0;
  let k1 = await evaluate(field, x, t);
  nfe++;
  const trajectory = saveAt.length > 0 ? { t: [] as number[], xs: [] as Float32Array[] } : undefined;
  let next = 0;
  while (trajectory && next < saveAt.length && Math.abs(saveAt[next] - t0) <= 1e-12) {
    trajectory.t.push(saveAt[next++]);
    trajectory.xs.push(Float32Array.from(x));
  }

  const errNorm = (a: Float64Array) => {
    let s = 0;
    for (let i = 0; i < n; i++) {
      const v = a[i];
      s += v * v;
    }
    return Math.sqrt(s / n);
  };
  // Initial step (Hairer's heuristic): balance the sizes of x and its derivative.
  const scale0 = new Float64Array(n);
  for (let i = 0; i < n; i++) scale0[i] = atol + rtol * Math.abs(x[i]);
  const d0 = errNorm(x.map((v, i) => v / scale0[i]));
  const d1 = errNorm(Float64Array.from(k1, (v, i) => v / scale0[i]));
  let h = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * (d0 / d1);
  {
    const x1 = combine(x, dir * h, [1], [k1]);
    const k2 = await evaluate(field, x1, t + dir * h);
    nfe++;
    const d2 = errNorm(Float64Array.from(k2, (v, i) => (v - k1[i]) / scale0[i])) / h;
    const h1 = Math.max(d1, d2) <= 1e-15 ? Math.max(1e-6, h * 1e-3) : Math.pow(0.01 / Math.max(d1, d2), 1 / 5);
    h = Math.min(100 * h, h1, Math.abs(t1 - t0));
  }

  let steps = 0;
  let rejected = 0;
  while ((t1 - t) * dir > 1e-12) {
    if (steps + rejected >= maxSteps) {
      throw new Error(`dopri5 exceeded ${maxSteps} steps at t=${t.toFixed(6)}; the field may be stiff or not finite — loosen --rtol/--atol or use a fixed-step solver`);
    }
    const hs = dir * Math.min(h, Math.abs(t1 - t));
    const ks: Float32Array[] = [k1];
    for (let i = 1; i < 7; i++) {
      ks.push(await evaluate(field, combine(x, hs, DOPRI.a[i], ks), t + DOPRI.c[i] * hs));
      nfe++;
    }
    const xNew = combine(x, hs, DOPRI.b, ks);
    let err = 0;
    for (let i = 0; i < n; i++) {
      let e = 0;
      for (let j = 0; j < 7; j++) e += (DOPRI.b[j] - DOPRI.bHat[j]) * ks[j][i];
      e *= hs;
      const sc = atol + rtol * Math.max(Math.abs(x[i]), Math.abs(xNew[i]));
      err += (e / sc) ** 2;
    }
    err = Math.sqrt(err / n);
    if (!Number.isFinite(err)) throw new Error(`dopri5 hit a non-finite state at t=${t.toFixed(6)}; the velocity field returned NaN or Inf`);
    if (err <= 1) {
      const tNew = t + hs;
      // Dense output for save times inside (t, tNew].
      while (trajectory && next < saveAt.length && (saveAt[next] - tNew) * dir <= 1e-12) {
        const theta = (saveAt[next] - t) / hs;
        trajectory.t.push(saveAt[next++]);
        trajectory.xs.push(denseOutput(x, xNew, ks, hs, theta));
      }
      x = xNew;
      t = tNew;
      k1 = ks[6];
      steps++;
      opts.onStep?.(t, Float32Array.from(x));
      h = Math.abs(hs) * Math.min(10, Math.max(0.2, 0.9 * Math.pow(err, -1 / 5)));
    } else {
      rejected++;
      h = Math.abs(hs) * Math.max(0.2, 0.9 * Math.pow(err, -1 / 5));
    }
  }
  return { x: Float32Array.from(x), trajectory, nfe, steps, rejected };
}

/** Dormand-Prince 4th-order continuous extension at x(t + theta h). */
function denseOutput(x: Float64Array, xNew: Float64Array, ks: Float32Array[], h: number, theta: number): Float32Array {
  const out = new Float32Array(x.length);
  const t1 = 1 - theta;
  for (let i = 0; i < x.length; i++) {
    const r1 = x[i];
    const dy = xNew[i] - x[i];
    const r2 = dy;
    const bspl = h * ks[0][i] - dy;
    const r3 = bspl;
    const r4 = dy - h * ks[6][i] - bspl;
    let r5 = 0;
    for (let j = 0; j < 7; j++) r5 += DOPRI.d[j] * ks[j][i];
    r5 *= h;
    out[i] = r1 + theta * (r2 + t1 * (r3 + theta * (r4 + t1 * r5)));
  }
  return out;
}
