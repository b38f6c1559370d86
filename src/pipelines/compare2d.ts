// Side-by-side comparison of two 2-D models (typically CFM and its Reflow) at low step counts:
// the same noise integrated with Euler at several NFEs, a GIF of the particles, quality per NFE,
// and the straightness of each model's paths.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { mlpModel } from "../core/models/mlp.js";
import { modelField } from "../core/field.js";
import { odeint, stepsForNfe, timeGrid, type SolverName, type TimeGridName } from "../core/solvers.js";
import { qualityCells, type QualityReport } from "../core/metrics.js";
import { toyBounds } from "../data/toy2d.js";
import { writeFileAtomic } from "../io/atomic.js";
import {
  densityPlot,
  encodeGif,
  labelled,
  scatterPlot,
  sideBySide,
  stacked,
  vectorFieldFrame,
  vectorFieldGrid,
  type Raster,
} from "../viz/index.js";
import { evaluateToy2d } from "./toy2dSampling.js";
import type { Loaded2d } from "./model.js";

export interface CompareRow {
  /** The budget asked for. */
  nfe: number;
  /** Evaluations each model's solve made (differs from `nfe` only for dopri5, which picks its steps). */
  made: number[];
  quality: QualityReport[];
}

export interface CompareResult {
  names: string[];
  rows: CompareRow[];
  /** Liu et al. 2023 straightness, E_t E ||(x1 - x0) - v(x_t, t)||^2 along 100-step Euler paths (0 = straight). */
  straightness: number[];
  markdown: string;
  files: string[];
}

/**
 * Straightness of an Euler trajectory with K steps: the velocity used on step k is K (x_{k+1} - x_k),
 * so S = (1/K) sum_k mean_i ||(x_K - x_0) - K (x_{k+1} - x_k)||^2, computed from the states alone.
 */
export function straightnessFromEuler(xs: Float32Array[], dim: number): number {
  const K = xs.length - 1;
  const first = xs[0];
  const last = xs[K];
  const n = first.length / dim;
  let total = 0;
  for (let k = 0; k < K; k++) {
    const a = xs[k];
    const b = xs[k + 1];
    for (let i = 0; i < first.length; i++) {
      const d = last[i] - first[i] - K * (b[i] - a[i]);
      total += d * d;
    }
  }
  return total / (K * n);
}

/** RK4 steps of the density GIF's solves: one frame per step, no interpolation between them. */
const DENSITY_STEPS = 20;

/**
 * The seed project's CFM-vs-Reflow GIF: per model a column with the smoothed histogram of many
 * samples (top) and its velocity field with particles (bottom), one frame per RK4 step from noise
 * to data, so the density and the field that moves it are seen together.
 */
export async function densityAndFieldGif(
  models: { name: string; loaded: Loaded2d }[],
  o: { n: number; seed: number; steps: number },
): Promise<Uint8Array> {
  const frames = await densityAndFieldFrames(models, o);
  const held = [...Array(4).fill(frames[0]), ...frames, ...Array(10).fill(frames[frames.length - 1])];
  return encodeGif(held, { delayMs: 100, loop: true });
}

/** The frames of densityAndFieldGif, one per RK4 step time k / steps. */
export async function densityAndFieldFrames(
  models: { name: string; loaded: Loaded2d }[],
  o: { n: number; seed: number; steps: number },
): Promise<Raster[]> {
  const dataset = models[0].loaded.config.dataset;
  const bounds = toyBounds(dataset);
  const times = Array.from({ length: o.steps + 1 }, (_, k) => k / o.steps);
  const x0 = new Rng(o.seed + 1).normals(o.n * 2);
  const gridN = 17;
  const grid = vectorFieldGrid(bounds, gridN);
  const columns: Raster[][] = [];
  for (const m of models) {
    const f = modelField(mlpModel(m.loaded.config.model), m.loaded.ema, { sampleShape: [2] });
    try {
      const r = await odeint(f.field, x0, { solver: "rk4", nfe: 4 * o.steps, saveAt: times });
      const xs = r.trajectory?.xs ?? [];
      const fields: Float32Array[] = [];
      for (const t of times) fields.push(await f.field(grid, t));
      // One arrow scale for all frames of a model, so speeds compare over time.
      let maxMagnitude = 0;
      for (const v of fields) for (let k = 0; k < v.length; k += 2) maxMagnitude = Math.max(maxMagnitude, Math.hypot(v[k], v[k + 1]) || 0);
      columns.push(
        times.map((t, i) =>
          stacked([
            densityPlot(xs[i], { bounds, bins: 120, smooth: 1.2, size: 300, title: `${m.name} density, t = ${t.toFixed(2)}` }),
            vectorFieldFrame({
              bounds,
              gridN,
              field: fields[i],
              particles: xs[i].subarray(0, Math.min(o.n, 800) * 2),
              t,
              size: 300,
              maxMagnitude,
              title: `${m.name} field`,
            }),
          ]),
        ),
      );
    } finally {
      f.dispose();
    }
  }
  return times.map((_, i) =>
    labelled(
      sideBySide(
        columns.map((c) => c[i]),
        16,
      ),
      `${dataset}: ${o.n} samples per model, RK4 ${o.steps} steps`,
    ),
  );
}

/** What the table's columns measure, in one paragraph. */
function metricLegend(q: QualityReport): string {
  const parts: string[] = [];
  if (q.density)
    parts.push(
      `outside = share of samples outside ${q.density.support}; TV = total variation between a histogram (${q.density.histogram}) and the exact density`,
    );
  if (q.precisionRecall)
    parts.push(`precision/recall = k-NN manifold precision and recall (Kynkäänniemi et al. 2019, k = ${q.precisionRecall.k})`);
  parts.push("sliced-W2 and MMD^2 against fresh data");
  return `Columns: ${parts.join("; ")}.`;
}

/** The NFE column: the count every model made, or each model's when they differ (dopri5). */
function nfeCell(made: number[]): string {
  return new Set(made).size === 1 ? String(made[0]) : made.join(" / ");
}

export async function compare2d(
  models: { name: string; loaded: Loaded2d }[],
  opts: {
    nfes: number[];
    n: number;
    seed: number;
    out: string;
    solver?: SolverName;
    timeGrid?: TimeGridName;
    shift?: number;
    gifParticles?: number;
    densitySamples?: number;
    onLog?: (line: string) => void;
  },
): Promise<CompareResult> {
  await initEngine();
  const dataset = models[0].loaded.config.dataset;
  const dim = models[0].loaded.config.model.dim;
  const solver = opts.solver ?? "euler";
  const x0 = new Rng(opts.seed).normals(opts.n * dim);
  for (const nfe of opts.nfes) stepsForNfe(solver, nfe); // an unspendable budget fails before any work
  const fields = models.map((m) => modelField(mlpModel(m.loaded.config.model), m.loaded.ema, { sampleShape: [dim] }));
  const rows: CompareRow[] = [];
  // trajectories[nfeIndex][modelIndex] = states at each solver step
  const trajectories: Float32Array[][][] = [];
  const straightness: number[] = [];
  try {
    for (const nfe of opts.nfes) {
      const quality: QualityReport[] = [];
      const made: number[] = [];
      const perModel: Float32Array[][] = [];
      for (const f of fields) {
        // The GIF shows the states at the solver's own steps (dopri5: start and end).
        const steps = stepsForNfe(solver, nfe);
        const grid = opts.timeGrid ?? "uniform";
        const saveAt = steps ? timeGrid(grid, steps, 0, 1, { shift: opts.shift }) : [0, 1];
        const r = await odeint(f.field, x0, { solver, nfe, saveAt, timeGrid: grid, shift: opts.shift });
        quality.push(await evaluateToy2d(dataset, r.x));
        made.push(r.nfe);
        perModel.push(r.trajectory?.xs ?? [x0, r.x]);
      }
      rows.push({ nfe, made, quality });
      trajectories.push(perModel);
      opts.onLog?.(
        `NFE ${nfeCell(made)}: ${models
          .map(
            (m, i) =>
              `${m.name} ${qualityCells(quality[i])
                .map((c) => `${c.label} ${c.value}`)
                .join(", ")}`,
          )
          .join("; ")}`,
      );
    }
    for (const f of fields) {
      const r = await odeint(f.field, x0.subarray(0, Math.min(opts.n, 2000) * dim), {
        solver: "euler",
        nfe: 100,
        saveAt: Array.from({ length: 101 }, (_, k) => k / 100),
      });
      straightness.push(straightnessFromEuler(r.trajectory?.xs ?? [], dim));
    }
  } finally {
    for (const f of fields) f.dispose();
  }

  const files: string[] = [];
  // GIF: for each NFE, particles move from noise to data through that many solver steps (linearly
  // interpolated between steps so a 1-step jump is visible as motion), models side by side.
  const bounds = toyBounds(dataset);
  const shown = Math.min(opts.gifParticles ?? 1500, opts.n) * dim;
  const frames: Raster[] = [];
  const framesPerSegment = 24;
  for (let r = 0; r < rows.length; r++) {
    const perModel = trajectories[r];
    for (let f = 0; f <= framesPerSegment; f++) {
      const s = f / framesPerSegment;
      const panels = perModel.map((xs, mi) => {
        const K = xs.length - 1;
        const pos = s * K;
        const k = Math.min(Math.floor(pos), K - 1);
        const w = pos - k;
        const pts = new Float32Array(shown);
        for (let i = 0; i < shown; i++) pts[i] = (1 - w) * xs[k][i] + w * xs[k + 1][i];
        return { title: `${models[mi].name} NFE ${rows[r].made[mi]}`, points: pts };
      });
      const frame = scatterPlot(panels, { bounds });
      frames.push(frame);
      if (f === framesPerSegment) for (let hold = 0; hold < 12; hold++) frames.push(frame);
    }
  }
  const stem = `${dataset}_${models.map((m) => m.name.toLowerCase()).join("_vs_")}`;
  const gifPath = join(opts.out, `${stem}.gif`);
  await writeFileAtomic(gifPath, encodeGif(frames, { delayMs: 60, loop: true }));
  files.push(gifPath);
  const fieldsPath = join(opts.out, `${stem}_fields.gif`);
  await writeFileAtomic(
    fieldsPath,
    await densityAndFieldGif(models, { n: opts.densitySamples ?? opts.n, seed: opts.seed, steps: DENSITY_STEPS }),
  );
  files.push(fieldsPath);

  const names = models.map((m) => m.name);
  // One row per NFE and model, the columns shared with the CLI's quality line; the floor row is
  // the same figures for fresh data (it depends only on the dataset and n).
  const columns = qualityCells(rows[0].quality[0]);
  const header = `| NFE | model | ${columns.map((c) => c.label).join(" | ")} |`;
  const sep = `|---:|:---|${columns.map(() => "---:|").join("")}`;
  const body = rows.flatMap((r) =>
    r.quality.map(
      (q, i) =>
        `| ${r.made[i]} | ${names[i]} | ${qualityCells(q)
          .map((c) => c.value)
          .join(" | ")} |`,
    ),
  );
  const floorRow = `| | fresh data (floor) | ${columns.map((c) => c.floor).join(" | ")} |`;
  const markdown = [
    `# ${names.join(" vs ")} on ${dataset}`,
    "",
    `Same ${opts.n} noise samples, ${solver} solver${(opts.timeGrid ?? "uniform") === "uniform" ? "" : ` on the ${opts.timeGrid} time grid`}, each model's samples against ${opts.n} fresh data points.`,
    "",
    header,
    sep,
    ...body,
    floorRow,
    "",
    metricLegend(rows[0].quality[0]),
    "",
    `Straightness (Liu et al. 2023, E ||(x1 - x0) - v(x_t, t)||^2 along 100-step Euler paths; 0 = straight): ${names.map((n, i) => `${n} ${straightness[i].toFixed(4)}`).join(", ")}`,
    "",
  ].join("\n");
  const mdPath = join(opts.out, `${dataset}_comparison.md`);
  await writeFileAtomic(mdPath, markdown);
  files.push(mdPath);
  return { names, rows, straightness, markdown, files };
}
