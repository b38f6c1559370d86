// Schrodinger-bridge conditional flow matching (Tong et al. 2024, torchcfm's
// SchrodingerBridgeConditionalFlowMatcher): between a pair (x0, x1) the path is a Brownian bridge,
// x_t = t x1 + (1 - t) x0 + sigma sqrt(t (1 - t)) eps, eps ~ N(0, I), and the conditional target is
// its time derivative along eps, u_t = x1 - x0 + (1 - 2t) / (2 t (1 - t)) (x_t - mu_t). Paired by
// entropic OT with reg = 2 sigma^2 (src/core/sinkhorn.ts), the learned flow transports along the
// Schrodinger bridge's marginals. sigma = 0 is the straight path exactly.
import { UserError } from "./errors.js";
import type { Rng } from "./rng.js";
import type { FlowBatch } from "./train.js";

// torchcfm adds 1e-8 to 2 t (1 - t) so the target stays finite at t = 0 and 1 (where the noise is 0).
const EPS = 1e-8;

/** The bridge noise level `sigma` if it is a finite number >= 0 (0 is the straight path); a UserError otherwise. */
export function checkBridgeSigma(sigma: number): number {
  if (!(sigma >= 0 && Number.isFinite(sigma))) throw new UserError(`--bridge-sigma must be a non-negative number, got ${sigma}`);
  return sigma;
}

/**
 * x_t and u_t of the Brownian bridge for a batch (rows of `dim` values, one t per row), with the
 * standard normal draws `eps` given (torchcfm's sample_xt / compute_conditional_flow).
 */
export function bridgePath(
  x0: Float32Array,
  x1: Float32Array,
  t: Float32Array,
  eps: Float32Array,
  sigma: number,
): { xt: Float32Array; ut: Float32Array } {
  checkBridgeSigma(sigma);
  const n = t.length;
  const dim = x0.length / n;
  if (x1.length !== x0.length || eps.length !== x0.length)
    throw new Error(`bridgePath needs x0, x1 and eps of one shape, got ${x0.length}, ${x1.length}, ${eps.length}`);
  const xt = new Float32Array(x0.length);
  const ut = new Float32Array(x0.length);
  for (let i = 0; i < n; i++) {
    const ti = t[i];
    const sigmaT = sigma * Math.sqrt(ti * (1 - ti));
    const ratio = (1 - 2 * ti) / (2 * ti * (1 - ti) + EPS);
    for (let k = i * dim; k < (i + 1) * dim; k++) {
      const noise = sigmaT * eps[k];
      xt[k] = ti * x1[k] + (1 - ti) * x0[k] + noise;
      ut[k] = ratio * noise + x1[k] - x0[k];
    }
  }
  return { xt, ut };
}

/**
 * A training batch on the bridge. The training step computes x_t = alpha x1 + sigma x0 and the
 * target alpha' x1 + sigma' x0 from per-row coefficients; with (alpha, sigma, alpha', sigma') =
 * (1, 0, 0, 1) it reads x_t from the x1 slot and the target from the x0 slot, so host-computed
 * bridge points train with the same step (and trace) as every affine path.
 */
export function bridgeBatch(x0: Float32Array, x1: Float32Array, t: Float32Array, sigma: number, rng: Rng): FlowBatch {
  const { xt, ut } = bridgePath(x0, x1, t, rng.normals(x0.length), sigma);
  const coef = new Float32Array(4 * t.length);
  for (let i = 0; i < t.length; i++) {
    coef[4 * i] = 1;
    coef[4 * i + 3] = 1;
  }
  return { x0: ut, x1: xt, t, coef };
}
