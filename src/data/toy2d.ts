// Seeded samplers for the 2-D toy datasets of the flow-matching literature. Each follows a
// published generator (FFJORD's toy_data.py, sklearn's make_moons / make_circles /
// make_swiss_roll) so users recognise the pictures, scaled so the data lie roughly in [-4, 4]^2
// with a per-axis std of about 1-2. Sizes and noise levels are listed per dataset below.
import { UserError } from "../core/errors.js";
import type { Rng } from "../core/rng.js";
import type { KnownDensity2d } from "../core/metrics.js";
import { didYouMean } from "../core/names.js";
import { checkTextSpec, imageBitmap, sampleBitmap, sampleMixture, textBitmap } from "./pictures.js";

/** The built-in 2-D datasets by name (sampleToy, `--dataset`): the literature's toy sets and a mixture of five unequal Gaussians. */
export const TOY_DATASETS = ["checkerboard", "moons", "8gaussians", "circles", "spirals", "swissroll", "mixture"] as const;
/** Picture-shaped sets (src/data/pictures.ts): points where a PNG is dark, or on a word. */
export type PictureDatasetName = `image:${string}` | `text:${string}`;
/** A 2-D dataset sampleToy can draw from: a built-in name or a picture-shaped `image:PATH.png` / `text:WORD` set. */
export type ToyDatasetName = (typeof TOY_DATASETS)[number] | PictureDatasetName;
/** How the picture-shaped names are written, for listings and messages. */
export const PICTURE_DATASET_FORMS = ["image:PATH.png", "text:WORD"] as const;

/** The dataset named by `name` (case and surrounding spaces ignored); a UserError lists the valid names and suggests the closest. */
export function parseToyDataset(name: string): ToyDatasetName {
  // Picture sets keep their case (paths, words); the file is read when the points are first drawn.
  if (name.startsWith("text:")) return `text:${checkTextSpec(name.slice(5))}`;
  if (name.startsWith("image:")) {
    const path = name.slice(6);
    if (!/\.png$/i.test(path)) throw new UserError(`image:${path} must name a .png file, e.g. image:logo.png`);
    return `image:${path}`;
  }
  const wanted = name.trim().toLowerCase();
  const exact = TOY_DATASETS.find((d) => d === wanted);
  if (exact !== undefined) return exact;
  const hint = didYouMean(wanted, TOY_DATASETS);
  throw new UserError(`unknown dataset "${name}"${hint}; choose one of: ${[...TOY_DATASETS, ...PICTURE_DATASET_FORMS].join(", ")}`);
}

/** Plot bounds [xmin, xmax, ymin, ymax] that frame each dataset and its noise (> 99.9% of points). */
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
    default:
      // mixture and the pictures (fitted into [-4, 4]^2).
      return [-4.5, 4.5, -4.5, 4.5];
  }
}

const TWO_PI = 2 * Math.PI;
const EIGHT_GAUSSIAN_CENTRES = Array.from({ length: 8 }, (_, k) => [Math.cos((k * Math.PI) / 4), Math.sin((k * Math.PI) / 4)] as const);

/**
 * n points of the dataset, [n, 2] flattened row-major. The same seed gives the same points.
 *
 * - checkerboard: FFJORD's; uniform over the 8 "black" squares of side 2 of an 8x8-unit board on
 *   [-4, 4]^2 (square (i, j) = (floor(x/2), floor(y/2)) is filled when i + j is even).
 * - moons: sklearn make_moons with noise 0.1, centred (shifted by (-0.5, -0.25)) and scaled by 2;
 *   even rows are the upper moon, odd rows the lower. (torchcfm uses noise 0.2 and x*3 - 1.)
 * - 8gaussians: FFJORD's; 8 modes at angles k*45 degrees on a circle of radius 4, std 0.5, all
 *   divided by sqrt(2), so radius 2.83 and std 0.354. (torchcfm uses radius 5, std 0.56.)
 * - circles: sklearn make_circles with factor 0.5 and noise 0.05, scaled by 2.5 (radii 2.5 and
 *   1.25); even rows are the outer circle.
 * - spirals: FFJORD's 2spirals; r = sqrt(u) * 3 pi, uniform jitter 0.5, /3, Gaussian noise 0.1;
 *   even rows are one arm, odd rows the point-reflected other.
 * - swissroll: sklearn make_swiss_roll with noise 1.0, projected onto (x, z) and divided by 5 as in
 *   FFJORD.
 * - mixture: 5 Gaussians of different weights and shapes (src/data/pictures.ts).
 * - image:PATH.png / text:WORD: density proportional to the picture's darkness (src/data/pictures.ts).
 */
export function sampleToy(name: ToyDatasetName, n: number, rng: Rng): Float32Array {
  if (!Number.isInteger(n) || n < 0) throw new UserError(`number of samples must be a non-negative integer, got ${n}`);
  const out = new Float32Array(2 * n);
  switch (name) {
    case "checkerboard":
      for (let i = 0; i < n; i++) {
        const x1 = rng.uniform() * 4 - 2;
        // Python's floor(x1) % 2 is never negative; JS's % keeps the sign, hence & 1.
        const x2 = rng.uniform() - 2 * rng.int(2) + (Math.floor(x1) & 1);
        out[2 * i] = 2 * x1;
        out[2 * i + 1] = 2 * x2;
      }
      break;
    case "moons":
      for (let i = 0; i < n; i++) {
        const a = Math.PI * rng.uniform();
        const upper = (i & 1) === 0;
        const x = upper ? Math.cos(a) : 1 - Math.cos(a);
        const y = upper ? Math.sin(a) : 0.5 - Math.sin(a);
        out[2 * i] = 2 * (x - 0.5 + 0.1 * rng.normal());
        out[2 * i + 1] = 2 * (y - 0.25 + 0.1 * rng.normal());
      }
      break;
    case "8gaussians":
      for (let i = 0; i < n; i++) {
        const [cx, cy] = EIGHT_GAUSSIAN_CENTRES[rng.int(8)];
        out[2 * i] = (4 * cx + 0.5 * rng.normal()) / Math.SQRT2;
        out[2 * i + 1] = (4 * cy + 0.5 * rng.normal()) / Math.SQRT2;
      }
      break;
    case "circles":
      for (let i = 0; i < n; i++) {
        const a = TWO_PI * rng.uniform();
        const r = (i & 1) === 0 ? 1 : 0.5;
        out[2 * i] = 2.5 * (r * Math.cos(a) + 0.05 * rng.normal());
        out[2 * i + 1] = 2.5 * (r * Math.sin(a) + 0.05 * rng.normal());
      }
      break;
    case "spirals":
      for (let i = 0; i < n; i++) {
        const s = Math.sqrt(rng.uniform()) * 3 * Math.PI;
        const sign = (i & 1) === 0 ? 1 : -1;
        const x = -Math.cos(s) * s + rng.uniform() * 0.5;
        const y = Math.sin(s) * s + rng.uniform() * 0.5;
        out[2 * i] = (sign * x) / 3 + 0.1 * rng.normal();
        out[2 * i + 1] = (sign * y) / 3 + 0.1 * rng.normal();
      }
      break;
    case "swissroll":
      for (let i = 0; i < n; i++) {
        const t = 1.5 * Math.PI * (1 + 2 * rng.uniform());
        out[2 * i] = (t * Math.cos(t) + rng.normal()) / 5;
        out[2 * i + 1] = (t * Math.sin(t) + rng.normal()) / 5;
      }
      break;
    case "mixture":
      return sampleMixture(n, rng);
    default:
      if (name.startsWith("text:")) return sampleBitmap(textBitmap(name.slice(5)), n, rng);
      if (name.startsWith("image:")) return sampleBitmap(imageBitmap(name.slice(6)), n, rng);
      // Reached only when a caller bypasses the type (e.g. a name read from JSON): normalise or throw.
      return sampleToy(parseToyDataset(String(name)), n, rng);
  }
  return out;
}

const EIGHT_GAUSSIAN_RADIUS = 4 / Math.SQRT2;
const EIGHT_GAUSSIAN_STD = 0.5 / Math.SQRT2;
/** Support radius of each 8gaussians mode, in stds: a fresh sample lands outside with probability exp(-9/2) = 1.1%. */
const EIGHT_GAUSSIAN_SUPPORT_STDS = 3;

/** Standard normal CDF via erfc (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7). */
function normalCdf(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * x);
  const erfc =
    t *
    Math.exp(
      -x * x -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return z >= 0 ? 1 - erfc / 2 : erfc / 2;
}

/** Length of [a0, a1] within [b0, b1]. */
const overlap = (a0: number, a1: number, b0: number, b1: number) => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

/**
 * The exact density of the datasets that have one in closed form, for the outside-the-support and
 * histogram metrics; undefined for the others (moons, circles, spirals and swissroll are noisy
 * curves whose bin masses need numerical integration). Histograms use 40x40 bins: checkerboard
 * over the board [-4, 4]^2, so bins never straddle a square's edge; 8gaussians over its plot box.
 */
export function toyDensity(name: ToyDatasetName): KnownDensity2d | undefined {
  switch (name) {
    case "checkerboard":
      return {
        support: "the 8 filled squares of the board",
        box: [-4, 4, -4, 4],
        bins: 40,
        // Square (i, j) = (floor(x/2), floor(y/2)) is filled when i + j is even (see sampleToy).
        inSupport: (x, y) => x >= -4 && x < 4 && y >= -4 && y < 4 && ((Math.floor(x / 2) + Math.floor(y / 2)) & 1) === 0,
        mass: (x0, x1, y0, y1) => {
          let area = 0;
          for (let i = -2; i < 2; i++) {
            for (let j = -2; j < 2; j++)
              if (((i + j) & 1) === 0) area += overlap(x0, x1, 2 * i, 2 * i + 2) * overlap(y0, y1, 2 * j, 2 * j + 2);
          }
          return area / 32;
        },
      };
    case "8gaussians": {
      const centres = EIGHT_GAUSSIAN_CENTRES.map(([cx, cy]) => [EIGHT_GAUSSIAN_RADIUS * cx, EIGHT_GAUSSIAN_RADIUS * cy] as const);
      const r2 = (EIGHT_GAUSSIAN_SUPPORT_STDS * EIGHT_GAUSSIAN_STD) ** 2;
      const s = EIGHT_GAUSSIAN_STD;
      return {
        support: `within ${EIGHT_GAUSSIAN_SUPPORT_STDS} std (${(EIGHT_GAUSSIAN_SUPPORT_STDS * s).toFixed(3)}) of a mode's centre`,
        box: toyBounds(name),
        bins: 40,
        inSupport: (x, y) => centres.some(([cx, cy]) => (x - cx) ** 2 + (y - cy) ** 2 <= r2),
        mass: (x0, x1, y0, y1) => {
          let m = 0;
          for (const [cx, cy] of centres) {
            m += (normalCdf((x1 - cx) / s) - normalCdf((x0 - cx) / s)) * (normalCdf((y1 - cy) / s) - normalCdf((y0 - cy) / s));
          }
          return m / 8;
        },
      };
    }
    default:
      return undefined;
  }
}
