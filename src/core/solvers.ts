// ODE solvers for dx/dt = v(x, t) on host batches. They know nothing about models: the same
// solver integrates a jax-js network, an ONNX session or an analytic field. Fixed-step methods
// share one explicit Runge-Kutta stepper driven by a Butcher tableau; Dopri5 runs the same stepper
// on its own tableau and adds an embedded error estimate, step-size control and dense output
// (Hairer, Norsett & Wanner, Solving ODEs I, section II.4-II.6). States are accumulated in float64
// so that many small steps do not pile up float32 rounding; the field sees and returns float32.
import { UserError } from "./errors.js";
import { throwIfStopped } from "./interrupt.js";

/** A velocity field over a flattened batch; returns dx/dt with the same length as x. */
export type VelocityField = (x: Float32Array, t: number) => Float32Array | Promise<Float32Array>;

/**
 * The ODE solvers of odeint (`--solver`): fixed-step Euler, midpoint, Heun and RK4; ab2 (Adams-Bashforth 2, one evaluation per step
 * for few-step sampling); and adaptive dopri5 (Dormand-Prince 5(4), by tolerances).
 */
export type SolverName = "euler" | "midpoint" | "heun" | "rk4" | "dopri5" | "ab2";
/** Every SolverName, in the order help and error messages list them. */
export const SOLVERS: readonly SolverName[] = ["euler", "midpoint", "heun", "rk4", "dopri5", "ab2"];

/** A solver name from user input; throws a UserError listing the solvers for an unknown one. */
export function parseSolver(name: string): SolverName {
  const found = SOLVERS.find((s) => s === name);
  if (found) return found;
  throw new UserError(`unknown solver "${name}"; choose one of: ${SOLVERS.join(", ")}`);
}

interface Tableau {
  /** Stage coefficients a[i][j], j < i. */
  a: number[][];
  /** Solution weights. */
  b: number[];
  /** Stage times as fractions of the step. */
  c: number[];
}

const TABLEAUS: Record<Exclude<SolverName, "dopri5" | "ab2">, Tableau> = {
  euler: { a: [[]], b: [1], c: [0] },
  midpoint: { a: [[], [0.5]], b: [0, 1], c: [0, 0.5] },
  heun: { a: [[], [1]], b: [0.5, 0.5], c: [0, 1] },
  rk4: { a: [[], [0.5], [0, 0.5], [0, 0, 1]], b: [1 / 6, 1 / 3, 1 / 3, 1 / 6], c: [0, 0.5, 0.5, 1] },
};

// Dormand-Prince 5(4): 7 stages, first-same-as-last (stage 7 is evaluated at the new state, so it
// is the next step's stage 1), 5th-order solution b, embedded 4th-order bHat for the error.
const DOPRI5: Tableau & { bHat: number[]; dense: number[] } = {
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
  // Continuous extension coefficients (Hairer's dopri5.f, CONTD5) for states inside a step.
  dense: [
    -12715105075 / 11282082432,
    0,
    87487479700 / 32700410799,
    -10690763975 / 1880347072,
    701980252875 / 199316789632,
    -1453857185 / 822651844,
    69997945 / 29380423,
  ],
};
const DOPRI5_ERR = DOPRI5.b.map((b, j) => b - DOPRI5.bHat[j]);

/** Evaluations per step of each method (Dopri5 reuses its last stage: 6 per step after the first). */
export const EVALS_PER_STEP: Record<SolverName, number> = { euler: 1, midpoint: 2, heun: 2, rk4: 4, ab2: 1, dopri5: 6 };

/**
 * Steps a fixed-step solver takes to spend exactly `nfe` evaluations. A budget it cannot spend
 * exactly (not a multiple of its evaluations per step) is a UserError naming the nearest budgets
 * that work, so a reported NFE is always the one asked for. Dopri5 chooses its own steps: null.
 */
export function stepsForNfe(solver: SolverName, nfe: number, flag = "--nfe"): number | null {
  if (solver === "dopri5") return null;
  if (!Number.isInteger(nfe) || nfe < 1) throw new UserError(`${flag} must be a positive integer, got ${nfe}`);
  const per = EVALS_PER_STEP[solver];
  if (nfe % per === 0) return nfe / per;
  const lower = Math.floor(nfe / per) * per;
  const options = [lower, lower + per].filter((v) => v > 0).map((v) => `${flag} ${v}`);
  throw new UserError(
    `${solver} makes ${per} network evaluations per step, so it cannot spend ${flag} ${nfe}; use ${options.join(" or ")}`,
  );
}

/** How odeint integrates: the solver, the time span, the step budget or tolerances, and what to record. */
export interface OdeOptions {
  /** Fixed-step euler, midpoint, heun, rk4, or adaptive dopri5. */
  solver: SolverName;
  /** Start time (default 0). t1 < t0 integrates backwards, e.g. data -> noise for likelihoods. */
  t0?: number;
  /** End time (default 1). */
  t1?: number;
  /** Fixed-step solvers: budget of function evaluations (default 100), a multiple of the evaluations per step (stepsForNfe). */
  nfe?: number;
  /** Fixed-step solvers: number of steps (takes precedence over nfe). */
  steps?: number;
  /** Fixed-step solvers: where the steps fall (default "uniform"; see timeGrid). */
  timeGrid?: TimeGridName;
  /** Shift of the "shifted" grid (default 3). */
  shift?: number;
  /** Dopri5 relative tolerance (default 1e-5). */
  rtol?: number;
  /** Dopri5 absolute tolerance (default 1e-5). */
  atol?: number;
  /** Dopri5: give up after this many steps, accepted plus rejected (default 10000). */
  maxSteps?: number;
  /**
   * Record the state at these times (inside [t0, t1], any order). The trajectory lists them in the
   * order given. They never change the run (its steps, evaluations or result): fixed-step solvers
   * give the state of a grid point on it and interpolate linearly between the two grid states
   * around other times (exactly Euler's own path; a picture of the steps taken for the others);
   * Dopri5 reads them off its 4th-order dense output.
   */
  saveAt?: number[];
  /** Called after every (accepted) step with the time reached and a copy of the state. */
  onStep?: (t: number, x: Float32Array) => void;
}

/** The state at t1, the recorded states, and the evaluations and steps made. */
export interface OdeResult {
  /** The state at t1, the same layout as x0. */
  x: Float32Array;
  /** The states at opts.saveAt times, in the order given. */
  trajectory?: { t: number[]; xs: Float32Array[] };
  /** Velocity field evaluations actually made (counted at the field). */
  nfe: number;
  /** Steps taken (accepted steps for Dopri5). */
  steps: number;
  /** Dopri5 only: rejected step attempts. */
  rejected?: number;
}

/**
 * Integrates dx/dt = field(x, t) from t0 to t1 (default 0 -> 1, noise to data) for a flattened
 * batch x0. NFE is counted at the field: `nfe` is the number of evaluations made.
 */
export async function odeint(field: VelocityField, x0: Float32Array, opts: OdeOptions): Promise<OdeResult> {
  const t0 = opts.t0 ?? 0;
  const t1 = opts.t1 ?? 1;
  if (!Number.isFinite(t0) || !Number.isFinite(t1)) throw new UserError(`integration times must be finite, got ${t0} -> ${t1}`);
  const saves = new SaveTimes(opts.saveAt, t0, t1);
  if (opts.solver !== "dopri5" && opts.solver !== "ab2" && !TABLEAUS[opts.solver])
    throw new UserError(`unknown solver "${String(opts.solver)}"; choose one of: ${SOLVERS.join(", ")}`);
  let steps = 0;
  if (opts.solver !== "dopri5") {
    if (opts.steps !== undefined) {
      if (!Number.isInteger(opts.steps) || opts.steps < 1) throw new UserError(`--steps must be a positive integer, got ${opts.steps}`);
      steps = opts.steps;
    } else steps = stepsForNfe(opts.solver, opts.nfe ?? 100) as number;
  } else if ((opts.timeGrid ?? "uniform") !== "uniform") {
    throw new UserError(
      `dopri5 chooses its own steps, so a time grid ("${opts.timeGrid}") does not apply; use a fixed-step solver or the uniform grid`,
    );
  }
  // The one place evaluations happen: count them here (the reported NFE is the number made) and
  // let the event loop run between them so Ctrl-C can stop a long solve.
  let nfe = 0;
  const counted: VelocityField = async (x, t) => {
    await throwIfStopped();
    nfe++;
    return field(x, t);
  };
  let result: Omit<OdeResult, "nfe">;
  if (opts.solver === "dopri5") result = await dopri5(counted, x0, t0, t1, saves, opts);
  else {
    const grid = timeGrid(opts.timeGrid ?? "uniform", steps, t0, t1, { shift: opts.shift });
    const tab = opts.solver === "ab2" ? null : TABLEAUS[opts.solver];
    result = await fixedStep(tab ? rkStepper(counted, tab) : ab2Stepper(counted), x0, grid, saves, opts.onStep);
  }
  return { ...result, nfe };
}

/**
 * Save times sorted in the direction of integration, remembering where each goes in the caller's
 * order. Times within a rounding error of an end point are snapped onto it.
 */
class SaveTimes {
  /** Requested times in integration order. */
  readonly sorted: number[];
  /** sorted[k] was requested at position slot[k]. */
  private readonly slot: number[];
  private readonly states: Float32Array[] = [];
  private next = 0;
  readonly dir: number;
  readonly eps: number;

  constructor(requested: number[] | undefined, t0: number, t1: number) {
    this.dir = t1 >= t0 ? 1 : -1;
    this.eps = 1e-12 * Math.max(1, Math.abs(t0), Math.abs(t1));
    const lo = Math.min(t0, t1);
    const hi = Math.max(t0, t1);
    const times = (requested ?? []).map((s) => {
      if (!Number.isFinite(s) || s < lo - this.eps || s > hi + this.eps) {
        throw new UserError(`saveAt time ${s} is outside the integration interval [${lo}, ${hi}]; pick times between t0 and t1`);
      }
      return Math.abs(s - t0) <= this.eps ? t0 : Math.abs(s - t1) <= this.eps ? t1 : s;
    });
    this.slot = times.map((_, i) => i).sort((i, j) => (times[i] - times[j]) * this.dir);
    this.sorted = this.slot.map((i) => times[i]);
  }

  get pending(): boolean {
    return this.next < this.sorted.length;
  }

  /** The next time still to be recorded (integration order). */
  get upcoming(): number {
    return this.sorted[this.next];
  }

  /** Store the state for the next pending time. */
  record(state: Float32Array): void {
    this.states[this.slot[this.next]] = state;
    this.next++;
  }

  /** Record `state` for every pending time equal to t. */
  recordAt(t: number, x: Float64Array): void {
    while (this.pending && Math.abs(this.upcoming - t) <= this.eps) this.record(Float32Array.from(x));
  }

  trajectory(): OdeResult["trajectory"] {
    if (this.sorted.length === 0) return undefined;
    const t = this.slot.map(() => 0);
    this.slot.forEach((i, k) => (t[i] = this.sorted[k]));
    return { t, xs: this.states };
  }
}

/** out = x + h * sum_j coef[j] * k[j], in float64. */
function combine(x: Float64Array, h: number, coef: number[], ks: Float32Array[]): Float64Array {
  const out = new Float64Array(x);
  for (let j = 0; j < coef.length && j < ks.length; j++) {
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

/**
 * One explicit Runge-Kutta step from (t, x) with step h. Stages before `known.length` are reused
 * (Dopri5's first-same-as-last stage); returns all stage derivatives and the new state.
 */
async function rkStep(
  field: VelocityField,
  tab: Tableau,
  t: number,
  x: Float64Array,
  h: number,
  known: Float32Array[] = [],
): Promise<{ ks: Float32Array[]; x: Float64Array }> {
  const ks = [...known];
  for (let i = ks.length; i < tab.c.length; i++) {
    ks.push(await evaluate(field, i === 0 ? x : combine(x, h, tab.a[i], ks), t + tab.c[i] * h));
  }
  return { ks, x: combine(x, h, tab.b, ks) };
}

/** One step of a fixed-step method from (t, x) with step h; steps come in order along the grid. */
type Stepper = (t: number, x: Float64Array, h: number) => Promise<Float64Array>;

function rkStepper(field: VelocityField, tab: Tableau): Stepper {
  return async (t, x, h) => (await rkStep(field, tab, t, x, h)).x;
}

/**
 * Adams-Bashforth 2 on the velocity with variable steps: one evaluation per step, reusing the
 * previous step's velocity, x_{n+1} = x_n + h_n ((1 + r) v_n - r v_{n-1}), r = h_n / (2 h_{n-1})
 * (Hairer, Norsett & Wanner I, III.5). The first step has no history and is an Euler step; its
 * O(h^2) local error keeps the method second-order overall.
 */
function ab2Stepper(field: VelocityField): Stepper {
  let prev: Float32Array | null = null;
  let hPrev = 0;
  return async (t, x, h) => {
    const v = await evaluate(field, x, t);
    const r = prev ? h / (2 * hPrev) : 0;
    const next = prev ? combine(x, h, [1 + r, -r], [v, prev]) : combine(x, h, [1], [v]);
    prev = v;
    hPrev = h;
    return next;
  };
}

async function fixedStep(
  step: Stepper,
  x0: Float32Array,
  grid: number[],
  saves: SaveTimes,
  onStep?: (t: number, x: Float32Array) => void,
): Promise<Omit<OdeResult, "nfe">> {
  let x: Float64Array = Float64Array.from(x0);
  let t = grid[0];
  const steps = grid.length - 1;
  saves.recordAt(t, x);
  for (let s = 1; s <= steps; s++) {
    const tNext = grid[s];
    const xNext = await step(t, x, tNext - t);
    // Save times inside this step: linear between its two grid states.
    while (saves.pending && (saves.upcoming - tNext) * saves.dir < -saves.eps) {
      const w = (saves.upcoming - t) / (tNext - t);
      saves.record(Float32Array.from(x, (v, i) => (1 - w) * v + w * xNext[i]));
    }
    x = xNext;
    t = tNext;
    onStep?.(t, Float32Array.from(x));
    saves.recordAt(t, x);
  }
  return { x: Float32Array.from(x), trajectory: saves.trajectory(), steps };
}

/** RMS norm of v / scale. */
function scaledRms(v: ArrayLike<number>, scale: Float64Array): number {
  if (scale.length === 0) return 0;
  let s = 0;
  for (let i = 0; i < scale.length; i++) s += (v[i] / scale[i]) ** 2;
  return Math.sqrt(s / scale.length);
}

async function dopri5(
  field: VelocityField,
  x0: Float32Array,
  t0: number,
  t1: number,
  saves: SaveTimes,
  opts: OdeOptions,
): Promise<Omit<OdeResult, "nfe">> {
  const rtol = opts.rtol ?? 1e-5;
  const atol = opts.atol ?? 1e-5;
  const maxSteps = opts.maxSteps ?? 10000;
  if (!(rtol > 0 && Number.isFinite(rtol)) || !(atol > 0 && Number.isFinite(atol))) {
    throw new UserError(`--rtol and --atol must be positive numbers, got ${rtol} and ${atol}`);
  }
  if (!Number.isInteger(maxSteps) || maxSteps < 1) throw new UserError(`maxSteps must be a positive integer, got ${maxSteps}`);
  const n = x0.length;
  const dir = saves.dir;
  let x: Float64Array = Float64Array.from(x0);
  let t = t0;
  saves.recordAt(t0, x);
  if (Math.abs(t1 - t0) <= saves.eps) {
    return { x: Float32Array.from(x), trajectory: saves.trajectory(), steps: 0, rejected: 0 };
  }
  const scale = new Float64Array(n);
  const setScale = (a: Float64Array, b: Float64Array) => {
    for (let i = 0; i < n; i++) scale[i] = atol + rtol * Math.max(Math.abs(a[i]), Math.abs(b[i]));
  };

  let k1 = await evaluate(field, x, t);
  // Initial step (Hairer's heuristic, dopri5.f HINIT): an explicit Euler step of a size that
  // balances |x| against |v|, then limit it by the change in v so the local error is ~0.01.
  setScale(x, x);
  const d0 = scaledRms(x, scale);
  const d1 = scaledRms(k1, scale);
  const h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * (d0 / d1);
  const k2 = await evaluate(field, combine(x, dir * h0, [1], [k1]), t + dir * h0);
  const d2 =
    scaledRms(
      Float64Array.from(k2, (v, i) => v - k1[i]),
      scale,
    ) / h0;
  const h1 = Math.max(d1, d2) <= 1e-15 ? Math.max(1e-6, h0 * 1e-3) : Math.pow(0.01 / Math.max(d1, d2), 1 / 5);
  let h = Math.min(100 * h0, h1, Math.abs(t1 - t0));

  let steps = 0;
  let rejected = 0;
  let lastRejected = false;
  while ((t1 - t) * dir > saves.eps) {
    if (steps + rejected >= maxSteps) {
      throw new Error(
        `dopri5 exceeded ${maxSteps} steps at t=${t.toFixed(6)} of [${t0}, ${t1}]; ` +
          `the field may be stiff or not finite — loosen rtol/atol, raise maxSteps or use a fixed-step solver`,
      );
    }
    // Stretch the step by up to 1% rather than leave a sliver before t1.
    const lastStep = Math.abs(t1 - t) <= 1.01 * h;
    const hs = lastStep ? t1 - t : dir * h;
    const { ks, x: xNew } = await rkStep(field, DOPRI5, t, x, hs, [k1]);
    setScale(x, xNew);
    const errVec = combine(new Float64Array(n), hs, DOPRI5_ERR, ks);
    const err = scaledRms(errVec, scale);
    if (!Number.isFinite(err))
      throw new Error(`dopri5 hit a non-finite state at t=${t.toFixed(6)}; the velocity field returned NaN or Inf`);
    // Standard controller: h_new = h * 0.9 * err^(-1/5), factor in [0.2, 10]; no growth right after a rejection.
    const factor = Math.max(0.2, Math.min(lastRejected ? 1 : 10, 0.9 * Math.pow(Math.max(err, 1e-16), -1 / 5)));
    if (err <= 1) {
      const tNew = lastStep ? t1 : t + hs;
      while (saves.pending && (saves.upcoming - tNew) * dir <= saves.eps) {
        const s = saves.upcoming;
        saves.record(Math.abs(s - tNew) <= saves.eps ? Float32Array.from(xNew) : denseOutput(x, xNew, ks, hs, (s - t) / hs));
      }
      x = xNew;
      t = tNew;
      k1 = ks[6];
      steps++;
      lastRejected = false;
      opts.onStep?.(t, Float32Array.from(x));
    } else {
      rejected++;
      lastRejected = true;
    }
    h = Math.abs(hs) * factor;
  }
  return { x: Float32Array.from(x), trajectory: saves.trajectory(), steps, rejected };
}

/** Dormand-Prince 4th-order continuous extension: the state at t + theta h inside an accepted step. */
function denseOutput(x: Float64Array, xNew: Float64Array, ks: Float32Array[], h: number, theta: number): Float32Array {
  const out = new Float32Array(x.length);
  const rest = 1 - theta;
  for (let i = 0; i < x.length; i++) {
    const dx = xNew[i] - x[i];
    const bspl = h * ks[0][i] - dx;
    const r4 = dx - h * ks[6][i] - bspl;
    let r5 = 0;
    for (let j = 0; j < 7; j++) r5 += DOPRI5.dense[j] * ks[j][i];
    r5 *= h;
    out[i] = x[i] + theta * (dx + rest * (bspl + theta * (r4 + rest * r5)));
  }
  return out;
}

/**
 * Where a fixed-step solve puts its steps (`--time-grid`; see timeGrid): uniform, shifted (more steps
 * near the noise), or edm (small steps at both ends).
 */
export type TimeGridName = "uniform" | "shifted" | "edm";
/** Every TimeGridName, in the order help and error messages list them. */
export const TIME_GRIDS: readonly TimeGridName[] = ["uniform", "shifted", "edm"];

/** A time-grid name from user input; a UserError lists the grids for an unknown one. */
export function parseTimeGrid(name: string): TimeGridName {
  const found = TIME_GRIDS.find((g) => g === name);
  if (found) return found;
  throw new UserError(`unknown time grid "${name}"; choose one of: ${TIME_GRIDS.join(", ")}`);
}

// EDM's sigma schedule (Karras et al. 2022, eq. 5): sigma_max 80, sigma_min 0.002, rho 7.
const EDM = { sigmaMax: 80, sigmaMin: 0.002, rho: 7 };

/**
 * Where a grid puts flow time tau in [0, 1] (0 = noise, 1 = data) for a uniform u in [0, 1].
 * - shifted: the resolution shift of Esser et al. 2024 (SD3) on sigma = 1 - tau,
 *   sigma' = s sigma / (1 + (s - 1) sigma): s > 1 puts more steps near the noise.
 * - edm: Karras' rho = 7 spacing of sigma_EDM = (1 - tau) / tau (the straight path's noise-to-signal
 *   ratio), rescaled so the ends are exactly 0 and 1: small steps at both ends, large in the middle.
 */
function gridWarp(name: TimeGridName, shift: number): (u: number) => number {
  switch (name) {
    case "uniform":
      return (u) => u;
    case "shifted":
      return (u) => {
        const sigma = 1 - u;
        return 1 - (shift * sigma) / (1 + (shift - 1) * sigma);
      };
    case "edm": {
      const a = EDM.sigmaMax ** (1 / EDM.rho);
      const b = EDM.sigmaMin ** (1 / EDM.rho);
      const tau = (u: number) => 1 / (1 + (a + u * (b - a)) ** EDM.rho);
      const lo = tau(0);
      const hi = tau(1);
      return (u) => (tau(u) - lo) / (hi - lo);
    }
  }
}

/**
 * The steps + 1 times a fixed-step solve visits from t0 to t1 (either direction). A non-uniform
 * grid is laid out in flow time, so integrating backwards (data -> noise) visits the same points as
 * forwards. The ends are exactly t0 and t1.
 */
export function timeGrid(name: TimeGridName, steps: number, t0 = 0, t1 = 1, opts: { shift?: number } = {}): number[] {
  if (!Number.isInteger(steps) || steps < 1) throw new UserError(`--steps must be a positive integer, got ${steps}`);
  if (!TIME_GRIDS.includes(name)) parseTimeGrid(String(name));
  const shift = opts.shift ?? 3;
  if (!(shift > 0 && Number.isFinite(shift))) throw new UserError(`--shift must be a positive number, got ${shift}`);
  const grid = [t0];
  const warp = gridWarp(name, shift);
  const forward = t1 >= t0;
  for (let s = 1; s < steps; s++) {
    // Uniform keeps the exact arithmetic the solvers always used.
    const u = name === "uniform" ? s / steps : forward ? warp(s / steps) : 1 - warp(1 - s / steps);
    grid.push(name === "uniform" ? t0 + ((t1 - t0) * s) / steps : t0 + (t1 - t0) * u);
  }
  grid.push(t1);
  return grid;
}
