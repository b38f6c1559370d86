// Sampling a trained 2-D model: integrate noise to data with any solver, score the samples, and
// draw samples.png, vector_field.gif, loss.png and metrics.json.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { mlpFamily, mlpModel, type MlpConfig } from "../core/models/mlp.js";
import { modelField } from "../core/field.js";
import { assertForwardFits } from "../core/memory.js";
import { odeint, type SolverName, type TimeGridName } from "../core/solvers.js";
import { qualityReport, formatQuality, type QualityReport } from "../core/metrics.js";
import { sampleToy, toyBounds, toyDensity, type ToyDatasetName } from "../data/toy2d.js";
import { writeFileAtomic } from "../io/atomic.js";
import { PALETTE, encodeGif, labelled, linePlot, scatterPlot, vectorFieldFrame, vectorFieldGrid } from "../viz/index.js";
import { weightsOf, type Loaded2d } from "./model.js";
import { flowName } from "./run.js";

/** Refuses, before any allocation, a sample set too large for one forward pass in the engine. */
export function checkSample2dMemory(model: MlpConfig, n: number): void {
  assertForwardFits(mlpFamily, model, n, `sampling ${n} points at once with an MLP of width ${model.hidden}`, "use a smaller --n");
}

export interface SampleOptions {
  n: number;
  solver: SolverName;
  nfe: number;
  seed: number;
  weights: "ema" | "raw";
  /** Fixed-step solvers: where the steps fall (default uniform) and the shifted grid's shift. */
  timeGrid?: TimeGridName;
  shift?: number;
  /** Record states at these times (for GIFs); they never change the samples or the evaluations made. */
  saveAt?: number[];
}

/** Integrate noise to data with a trained 2-D model. */
export async function sampleToy2d(loaded: Loaded2d, opts: SampleOptions) {
  await initEngine();
  if (!Number.isInteger(opts.n) || opts.n < 1) throw new UserError(`--n must be a positive integer, got ${opts.n}`);
  checkSample2dMemory(loaded.config.model, opts.n);
  const f = modelField(mlpModel(loaded.config.model), weightsOf(loaded, opts.weights), {
    sampleShape: [loaded.config.model.dim],
  });
  try {
    const x0 = new Rng(opts.seed).normals(opts.n * loaded.config.model.dim);
    const result = await odeint(f.field, x0, {
      solver: opts.solver,
      nfe: opts.nfe,
      saveAt: opts.saveAt,
      timeGrid: opts.timeGrid,
      shift: opts.shift,
    });
    return { x0, ...result };
  } finally {
    f.dispose();
  }
}

/** The full metric set (metrics.ts qualityReport) of generated 2-D samples against fresh data of the same size. */
export async function evaluateToy2d(dataset: ToyDatasetName, generated: Float32Array): Promise<QualityReport> {
  return qualityReport(generated, (n, seed) => sampleToy(dataset, n, new Rng(seed)), 2, generated.length / 2, {
    density: toyDensity(dataset),
  });
}

/** The time grid for metrics.json: nothing for the default uniform grid, the shift only for the shifted one. */
function gridRecord(o: { timeGrid?: TimeGridName; shift?: number }): { timeGrid?: TimeGridName; shift?: number } {
  const grid = o.timeGrid ?? "uniform";
  if (grid === "uniform") return {};
  return grid === "shifted" ? { timeGrid: grid, shift: o.shift ?? 3 } : { timeGrid: grid };
}

/** Panels of evolution.png: t = 0, 1/9, ..., 1. */
const EVOLUTION_PANELS = 10;

const FLOORS_NOTE = "each *Floor is the same figure for fresh data of n points: what a perfect model would score";

export interface RenderOptions {
  out: string;
  solver: SolverName;
  nfe: number;
  n: number;
  seed: number;
  frames: number;
  timeGrid?: TimeGridName;
  shift?: number;
  losses?: number[];
}

/**
 * samples.png, vector_field.gif, loss.png and metrics.json for a trained 2-D model. The GIF's
 * particles are read off the measured solve's own steps (interpolated between them; see odeint's
 * saveAt), so frames cost no evaluations and never change the samples; `nfe` is the count made.
 */
export async function renderToy2d(
  loaded: Loaded2d,
  opts: RenderOptions,
): Promise<{ files: string[]; quality: QualityReport; summary: string; nfe: number; samples: Float32Array }> {
  const { dataset } = loaded.config;
  const bounds = toyBounds(dataset);
  const frameTimes = Array.from({ length: opts.frames }, (_, i) => i / (opts.frames - 1));
  // The evolution strip's times join the GIF's in one solve (saved states never change it).
  const stripTimes = Array.from({ length: EVOLUTION_PANELS }, (_, i) => i / (EVOLUTION_PANELS - 1));
  const saveAt = [...new Set([...frameTimes, ...stripTimes])].sort((a, b) => a - b);
  const sample = await sampleToy2d(loaded, {
    n: opts.n,
    solver: opts.solver,
    nfe: opts.nfe,
    seed: opts.seed,
    weights: "ema",
    saveAt,
    timeGrid: opts.timeGrid,
    shift: opts.shift,
  });
  const trajectory = sample.trajectory;
  if (!trajectory) throw new Error("solver returned no trajectory");
  const stateAt = (t: number) => trajectory.xs[saveAt.indexOf(t)];
  const real = sampleToy(dataset, opts.n, new Rng(opts.seed + 1));
  const quality = await evaluateToy2d(dataset, sample.x);
  const files: string[] = [];
  const write = async (name: string, data: Uint8Array | string) => {
    const path = join(opts.out, name);
    await writeFileAtomic(path, data);
    files.push(path);
  };

  const scatter = scatterPlot(
    [
      { title: `${dataset} data`, points: real },
      { title: `generated ${opts.solver} NFE ${sample.nfe}`, points: sample.x },
    ],
    { bounds },
  );
  await write("samples.png", scatter.toPng());

  // The seed project's "ODE sampling evolution": the same samples at 10 times from noise to data.
  const evolution = scatterPlot(
    stripTimes.map((t) => ({ title: `t = ${t.toFixed(2)}`, points: stateAt(t), color: PALETTE[0] })),
    { bounds, size: 150 },
  );
  await write("evolution.png", labelled(evolution, `${dataset}: ${opts.solver}, NFE ${sample.nfe}, states at 10 times`).toPng());

  // The learned field on a grid, one frame per saved time, with the particles that ride it.
  const gridN = 21;
  const grid = vectorFieldGrid(bounds, gridN);
  const f = modelField(mlpModel(loaded.config.model), loaded.ema, { sampleShape: [2] });
  const frames = [];
  try {
    for (const t of frameTimes) {
      const field = await f.field(grid, t);
      frames.push(
        vectorFieldFrame({
          bounds,
          gridN,
          field,
          particles: stateAt(t).subarray(0, Math.min(opts.n, 1500) * 2),
          t,
          title: `${dataset} ${flowName(loaded.config)}`,
        }),
      );
    }
  } finally {
    f.dispose();
  }
  // Hold the first and last frames so the eye can settle on noise and on data.
  const held = [...Array(5).fill(frames[0]), ...frames, ...Array(10).fill(frames[frames.length - 1])];
  await write("vector_field.gif", encodeGif(held, { delayMs: 80, loop: true }));

  if (opts.losses && opts.losses.length > 0) {
    await write(
      "loss.png",
      linePlot([{ name: `${flowName(loaded.config)} loss`, values: opts.losses }], { title: `${dataset} training loss` }).toPng(),
    );
  }
  const summary = formatQuality(quality);
  await write(
    "metrics.json",
    JSON.stringify(
      {
        dataset,
        solver: opts.solver,
        ...gridRecord(opts),
        nfe: sample.nfe,
        steps: sample.steps,
        n: opts.n,
        step: loaded.config.step,
        ...quality,
        floors: FLOORS_NOTE,
      },
      null,
      2,
    ) + "\n",
  );
  return { files, quality, summary, nfe: sample.nfe, samples: sample.x };
}
