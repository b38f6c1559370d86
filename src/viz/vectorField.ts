// One frame of a flow: velocity arrows on a grid plus the particles they carry.
import { INK, Raster, WHITE, hexColor, mixColor, textWidth, type RGBA } from "./raster.js";
import { type Bounds, vectorFieldGrid } from "./scale.js";
import { TITLE_BAND, LEFT, RIGHT, BOTTOM, Axes } from "./axes.js";

const SLOW_ARROW = hexColor("#a9c4de");
const FAST_ARROW = hexColor("#0b2a5b");
const PARTICLE = hexColor("#d1495b", 200);

export interface VectorFieldOptions {
  bounds: Bounds;
  gridN: number;
  /** Velocities at vectorFieldGrid(bounds, gridN), [gridN^2, 2] flattened. */
  field: Float32Array;
  /** [n, 2] flattened. */
  particles: Float32Array;
  t: number;
  title?: string;
  /** Plot-area side in pixels (default 420). */
  size?: number;
  /** Speed drawn as a full-cell arrow; fix it across frames so arrow lengths compare (default: this frame's max). */
  maxMagnitude?: number;
  particleColor?: RGBA;
}

/** One frame of a flow: arrows (length and colour by speed) on the grid, plus particle dots and "t=0.50". */
export function vectorFieldFrame(opts: VectorFieldOptions): Raster {
  const { bounds, gridN, field, particles } = opts;
  if (field.length !== gridN * gridN * 2) {
    throw new RangeError(`vectorFieldFrame: field has ${field.length} values, expected gridN*gridN*2 = ${gridN * gridN * 2}`);
  }
  const size = opts.size ?? 420;
  const r = new Raster(LEFT + size + RIGHT, TITLE_BAND + size + BOTTOM, WHITE);
  const axes = new Axes(LEFT, TITLE_BAND, size, size, bounds);
  const plot = axes.canvas();
  let maxMag = opts.maxMagnitude ?? 0;
  if (!(maxMag > 0)) {
    for (let k = 0; k < field.length; k += 2) {
      const m = Math.hypot(field[k], field[k + 1]);
      if (Number.isFinite(m) && m > maxMag) maxMag = m;
    }
  }
  const cell = size / gridN;
  const grid = vectorFieldGrid(bounds, gridN);
  for (let k = 0; k < field.length; k += 2) {
    const vx = field[k],
      vy = field[k + 1];
    const mag = Math.hypot(vx, vy);
    if (!Number.isFinite(mag)) continue;
    const rel = maxMag > 0 ? Math.min(1, mag / maxMag) : 0;
    const color = mixColor(SLOW_ARROW, FAST_ARROW, rel);
    const x = axes.px(grid[k]),
      y = axes.py(grid[k + 1]);
    const len = 0.9 * cell * rel;
    if (len < 2) {
      plot.fillCircle(x, y, 1, color);
      continue;
    }
    // Centre the arrow on the grid point; pixel y points down, so the y velocity flips sign.
    const ux = (vx / mag) * len * 0.5,
      uy = (-vy / mag) * len * 0.5;
    plot.arrow(x - ux, y - uy, x + ux, y + uy, color, { width: 1.2, headLength: Math.min(7, 0.2 * cell + 2) });
  }
  const dot = opts.particleColor ?? PARTICLE;
  const radius = particles.length / 2 > 3000 ? 1.4 : 1.9;
  for (let i = 0; i + 1 < particles.length; i += 2) plot.fillCircle(axes.px(particles[i]), axes.py(particles[i + 1]), radius, dot);
  axes.finish(r, plot);
  const tLabel = `t=${opts.t.toFixed(2)}`;
  if (opts.title) {
    r.text(opts.title, LEFT, 8, INK, { scale: textWidth(opts.title, 2) <= size - textWidth(tLabel, 2) - 16 ? 2 : 1 });
    r.text(tLabel, LEFT + size, 8, INK, { scale: 2, align: "right" });
  } else {
    r.text(tLabel, LEFT + size / 2, 8, INK, { scale: 2, align: "center" });
  }
  return r;
}
