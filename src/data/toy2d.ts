// Seeded samplers for the 2-D toy datasets of the flow-matching literature (FFJORD, torchcfm,
// keishihara/flow-matching), scaled so the data lie roughly in [-4, 4]^2.
import { UserError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";

export const TOY_DATASETS = ["checkerboard", "moons", "8gaussians", "circles", "spirals", "swissroll"] as const;
export type ToyDatasetName = (typeof TOY_DATASETS)[number];

export function parseToyDataset(name: string): ToyDatasetName {
  if ((TOY_DATASETS as readonly string[]).includes(name)) return name as ToyDatasetName;
  const close = TOY_DATASETS.map((d) => [d, editDistance(name.toLowerCase(), d)] as const).sort((a, b) => a[1] - b[1])[0];
  const hint = close[1] <= 2 ? ` (did you mean "${close[0]}"?)` : "";
  throw new UserError(`unknown dataset "${name}"${hint}; choose one of: ${TOY_DATASETS.join(", ")}`);
}

/** Plot bounds [xmin, xmax, ymin, ymax] that frame each dataset and its noise. */
export function toyBounds(name: ToyDatasetName): [number, number, number, number] {
  switch (name) {
    case "checkerboard":
    case "8gaussians":
    case "spirals":
    case "swissroll":
      return [-4.5, 4.5, -4.5, 4.5];
    case "moons":
    case "circles":
      return [-3.5, 3.5, -3.5, 3.5];
  }
}

/** n points of the dataset, [n, 2] flattened. */
export function sampleToy(name: ToyDatasetName, n: number, rng: Rng): Float32Array {
  const out = new Float32Array(2 * n);
  const put = (i: number, x: number, y: number) => {
    out[2 * i] = x;
    out[2 * i + 1] = y;
  };
  switch (name) {
    case "checkerboard":
      // FFJORD's checkerboard: 8 filled squares of side 2 on [-4, 4]^2, alternating.
      for (let i = 0; i < n; i++) {
        const x1 = rng.uniform() * 4 - 2;
        const x2 = rng.uniform() - 2 * rng.int(2) + (((Math.floor(x1) % 2) + 2) % 2);
        put(i, 2 * x1, 2 * x2);
      }
      break;
    case "moons":
      // sklearn make_moons (noise 0.1), centred and scaled by 2.
      for (let i = 0; i < n; i++) {
        const a = Math.PI * rng.uniform();
        const upper = i % 2 === 0;
        const x = upper ? Math.cos(a) : 1 - Math.cos(a);
        const y = upper ? Math.sin(a) : 0.5 - Math.sin(a);
        put(i, 2 * (x - 0.5 + 0.1 * rng.normal()), 2 * (y - 0.25 + 0.1 * rng.normal()));
      }
      break;
    case "8gaussians": {
      // torchcfm: centres on a circle of radius 5/sqrt(2)... scaled: radius 2*sqrt(2) with std 0.5.
      const r = 2 * Math.SQRT2;
      for (let i = 0; i < n; i++) {
        const k = rng.int(8);
        const a = (k * Math.PI) / 4;
        put(i, r * Math.cos(a) + 0.5 * rng.normal(), r * Math.sin(a) + 0.5 * rng.normal());
      }
      break;
    }
    case "circles":
      // sklearn make_circles (factor 0.5, noise 0.05), scaled by 2.5.
      for (let i = 0; i < n; i++) {
        const a = 2 * Math.PI * rng.uniform();
        const r = i % 2 === 0 ? 1 : 0.5;
        put(i, 2.5 * (r * Math.cos(a) + 0.05 * rng.normal()), 2.5 * (r * Math.sin(a) + 0.05 * rng.normal()));
      }
      break;
    case "spirals":
      // FFJORD's 2spirals.
      for (let i = 0; i < n; i++) {
        const s = Math.sqrt(rng.uniform()) * 540 * ((2 * Math.PI) / 360);
        const sign = i % 2 === 0 ? 1 : -1;
        const x = -Math.cos(s) * s + rng.uniform() * 0.5;
        const y = Math.sin(s) * s + rng.uniform() * 0.5;
        put(i, (sign * x) / 3, (sign * y) / 3);
      }
      break;
    case "swissroll":
      // sklearn make_swiss_roll projected to (x, z), noise 1.0, divided by 5 as in FFJORD, then scaled.
      for (let i = 0; i < n; i++) {
        const t = 1.5 * Math.PI * (1 + 2 * rng.uniform());
        const x = t * Math.cos(t) + rng.normal();
        const z = t * Math.sin(t) + rng.normal();
        put(i, (x / 5) * 1.4, (z / 5) * 1.4);
      }
      break;
  }
  return out;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return dp[a.length][b.length];
}
