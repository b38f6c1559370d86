// Distributions over training times t in [0, 1]. Uniform is the CFM default; logit-normal
// (Esser et al. 2024, SD3) and U-shaped Beta(a, a), a < 1 (Lee et al. 2024, "Improving the training
// of rectified flows") put more weight on the hard middle or the ends of the path respectively;
// late (density 2t) on the data end, where the field draws the data's sharp edges (the 2-D default).
import { UserError } from "./errors.js";
import type { Rng } from "./rng.js";

/** The time distributions getTimeSampler knows. */
export type TimeSamplerName = "uniform" | "logit-normal" | "u-shaped" | "late";
/** Every TimeSamplerName, in the order the CLI lists them. */
export const TIME_SAMPLERS: readonly TimeSamplerName[] = ["uniform", "logit-normal", "u-shaped", "late"];

/** Parameters of the time distributions (defaults: mean 0, std 1, a 0.5). */
export interface TimeSamplerOptions {
  /** logit-normal location and scale. */
  mean?: number;
  std?: number;
  /** U-shaped Beta(a, a) concentration, 0 < a < 1. */
  a?: number;
}

/** Draws n training times in [0, 1] from the seeded generator. */
export type TimeSampler = (n: number, rng: Rng) => Float32Array;

/** The sampler for a name (see TIME_SAMPLERS); throws a UserError naming the choices for an unknown one. */
export function getTimeSampler(name: string, opts: TimeSamplerOptions = {}): TimeSampler {
  switch (name) {
    case "uniform":
      return (n, rng) => rng.uniforms(n);
    case "late":
      // t = sqrt(u) has density 2t: none at the noise end, twice the uniform's at the data end.
      return (n, rng) => {
        const t = rng.uniforms(n);
        for (let i = 0; i < n; i++) t[i] = Math.sqrt(t[i]);
        return t;
      };
    case "logit-normal": {
      const mean = opts.mean ?? 0;
      const std = opts.std ?? 1;
      return (n, rng) => {
        const t = new Float32Array(n);
        for (let i = 0; i < n; i++) t[i] = 1 / (1 + Math.exp(-(mean + std * rng.normal())));
        return t;
      };
    }
    case "u-shaped": {
      const a = opts.a ?? 0.5;
      if (!(a > 0 && a < 1)) throw new UserError(`u-shaped time sampler needs 0 < a < 1, got ${a}`);
      return (n, rng) => {
        const t = new Float32Array(n);
        for (let i = 0; i < n; i++) t[i] = rng.beta(a, a);
        return t;
      };
    }
    default:
      throw new UserError(`unknown time sampler "${name}"; choose one of: ${TIME_SAMPLERS.join(", ")}`);
  }
}
