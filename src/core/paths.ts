// Affine probability paths x_t = alpha_t * x1 + sigma_t * x0 (t = 0 noise, t = 1 data), as in
// Lipman et al. 2023 and facebookresearch/flow_matching. The conditional target velocity is
// u_t = alpha'_t x1 + sigma'_t x0; for the straight (CondOT) path that is exactly x1 - x0.
// Coefficients are computed on the host per sample, so one jitted training step serves every path.
import { UserError } from "./errors.js";

/**
 * The probability paths by name, as `--path` takes them: straight (CondOT, rectified flow), vp
 * (diffusion's variance-preserving path), cosine.
 */
export type PathName = "straight" | "vp" | "cosine";
/** Every PathName, in the order help and error messages list them. */
export const PATHS: readonly PathName[] = ["straight", "vp", "cosine"];

/** A path's coefficients at one time t: x_t = alpha x1 + sigma x0, and the conditional target velocity dAlpha x1 + dSigma x0. */
export interface PathCoefficients {
  alpha: number;
  sigma: number;
  dAlpha: number;
  dSigma: number;
}

/**
 * An affine probability path from noise (t = 0) to data (t = 1), given by its coefficients at each t.
 * Get one by name with getScheduler; pathCoefficients packs a batch's coefficients for the training step.
 */
export interface Scheduler {
  readonly name: PathName;
  /** alpha_t, sigma_t and their time derivatives at t in [0, 1]. */
  at(t: number): PathCoefficients;
  /** Largest t the path is smooth on (VP's sigma'_t diverges at exactly t = 1). */
  readonly tMax: number;
}

/** CondOT / rectified flow: alpha_t = t, sigma_t = 1 - t, target x1 - x0. */
export const straightScheduler: Scheduler = {
  name: "straight",
  tMax: 1,
  at: (t) => ({ alpha: t, sigma: 1 - t, dAlpha: 1, dSigma: -1 }),
};

/** Cosine path: alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2) (variance preserving, alpha^2 + sigma^2 = 1). */
export const cosineScheduler: Scheduler = {
  name: "cosine",
  tMax: 1,
  at: (t) => {
    const h = (Math.PI / 2) * t;
    return { alpha: Math.sin(h), sigma: Math.cos(h), dAlpha: (Math.PI / 2) * Math.cos(h), dSigma: -(Math.PI / 2) * Math.sin(h) };
  },
};

/**
 * Variance-preserving path of score-based diffusion (Song et al. 2021) in flow-matching time:
 * alpha_t = exp(-T(1-t)/2) with T(s) = s beta_min + s^2 (beta_max - beta_min) / 2, sigma_t = sqrt(1 - alpha_t^2).
 */
export function vpScheduler(betaMin = 0.1, betaMax = 20): Scheduler {
  return {
    name: "vp",
    tMax: 1 - 1e-5,
    at: (t) => {
      const s = 1 - t;
      const T = s * betaMin + 0.5 * s * s * (betaMax - betaMin);
      const dT = -(betaMin + s * (betaMax - betaMin)); // dT/dt
      const alpha = Math.exp(-0.5 * T);
      const dAlpha = -0.5 * dT * alpha;
      const sigma = Math.sqrt(Math.max(1 - alpha * alpha, 1e-12));
      const dSigma = (-alpha * dAlpha) / sigma;
      return { alpha, sigma, dAlpha, dSigma };
    },
  };
}

/** The path named `name` (also the aliases "condot" and "ot" for straight); a UserError lists the names for an unknown one. */
export function getScheduler(name: string): Scheduler {
  switch (name) {
    case "straight":
    case "condot":
    case "ot":
      return straightScheduler;
    case "vp":
      return vpScheduler();
    case "cosine":
      return cosineScheduler;
    default:
      throw new UserError(`unknown probability path "${name}"; choose one of: ${PATHS.join(", ")}`);
  }
}

/**
 * Per-sample coefficients for a batch of times, packed [n, 4] = (alpha, sigma, dAlpha, dSigma),
 * the layout the training step consumes.
 */
export function pathCoefficients(scheduler: Scheduler, t: Float32Array): Float32Array {
  const out = new Float32Array(t.length * 4);
  for (let i = 0; i < t.length; i++) {
    const c = scheduler.at(Math.min(t[i], scheduler.tMax));
    out[4 * i] = c.alpha;
    out[4 * i + 1] = c.sigma;
    out[4 * i + 2] = c.dAlpha;
    out[4 * i + 3] = c.dSigma;
  }
  return out;
}

/** Host-side x_t and target velocity for a batch (used by tests, reflow and the browser). */
export function samplePath(
  scheduler: Scheduler,
  x0: Float32Array,
  x1: Float32Array,
  t: Float32Array,
): { xt: Float32Array; target: Float32Array } {
  const n = t.length;
  const dim = x0.length / n;
  const xt = new Float32Array(x0.length);
  const target = new Float32Array(x0.length);
  for (let i = 0; i < n; i++) {
    const c = scheduler.at(Math.min(t[i], scheduler.tMax));
    for (let j = i * dim; j < (i + 1) * dim; j++) {
      xt[j] = c.alpha * x1[j] + c.sigma * x0[j];
      target[j] = c.dAlpha * x1[j] + c.dSigma * x0[j];
    }
  }
  return { xt, target };
}
