// Log-likelihood of data under a trained flow: 2-D models with the exact divergence (and a density
// heat-map), image models with Hutchinson's estimator, reported in bits per dimension.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import {
  logLikelihood,
  logLikelihoodWith,
  modelDivergenceField,
  sampleWithLogDensityWith,
  bitsPerDim,
  type DivergenceMode,
  type LogLikelihoodResult,
  type ProbeKind,
} from "../core/likelihood.js";
import { mlpModel } from "../core/models/mlp.js";
import { Rng } from "../core/rng.js";
import type { SolverName } from "../core/solvers.js";
import { toyBounds } from "../data/toy2d.js";
import { writeFileAtomic } from "../io/atomic.js";
import { exportDivergenceOnnx } from "../io/onnx.js";
import { createOnnxDivergenceSession } from "../io/onnxField.js";
import type { HostParams } from "../core/optim.js";
import { heatmap, labelled, scatterPlot, sideBySide, valueRange, vectorFieldGrid } from "../viz/index.js";
import { sampleToy2d } from "./toy2dSampling.js";
import type { Loaded2d, LoadedImage } from "./model.js";
import { unetModel } from "../core/models/unet.js";

export interface LoglikOptions {
  solver?: SolverName;
  rtol?: number;
  atol?: number;
  /** Samples per ODE solve (larger batches amortise the engine's per-call cost). */
  batch?: number;
  /** What evaluates the network and its divergence (jvp): the engine, or its trace on onnxruntime. */
  runtime?: "engine" | "onnx";
}

const hostData = (p: HostParams): Record<string, Float32Array> => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.data]));

export interface LoglikSummary {
  logp: Float64Array;
  mean: number;
  stderr: number;
  nfe: number;
  seconds: number;
}

function summarise(logp: Float64Array, nfe: number, seconds: number): LoglikSummary {
  const n = logp.length;
  const mean = logp.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(logp.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(n - 1, 1));
  return { logp, mean, stderr: sd / Math.sqrt(n), nfe, seconds };
}

async function batched(
  x: Float32Array,
  dim: number,
  batch: number,
  run: (chunk: Float32Array) => Promise<{ logp: Float64Array; nfe: number }>,
): Promise<{ logp: Float64Array; nfe: number; seconds: number }> {
  const n = x.length / dim;
  const logp = new Float64Array(n);
  let nfe = 0;
  const started = performance.now();
  for (let s = 0; s < n; s += batch) {
    const e = Math.min(n, s + batch);
    const r = await run(x.subarray(s * dim, e * dim));
    logp.set(r.logp, s);
    nfe += r.nfe;
  }
  return { logp, nfe, seconds: (performance.now() - started) / 1000 };
}

/** log p(x) in nats for a 2-D model (EMA weights), Dopri5 by default; exact divergence unless `divergence` says Hutchinson. */
export async function logLikelihood2d(
  loaded: Loaded2d,
  x: Float32Array,
  opts: LoglikOptions & { nfe?: number; divergence?: DivergenceMode },
): Promise<LoglikSummary> {
  await initEngine();
  const setupStart = performance.now();
  const divergence = opts.divergence ?? "exact";
  // The onnx runtime runs the exact-divergence export; a Hutchinson estimate (density.png's panel) stays on the engine.
  const session =
    opts.runtime === "onnx" && divergence === "exact"
      ? await createOnnxDivergenceSession(
          await exportDivergenceOnnx(hostData(loaded.ema), { kind: "mlp", config: loaded.config.model }, { tangents: 2, exact: true }),
        )
      : null;
  // The export and session start count in the reported time (the engine's jit compile does too).
  const setupSeconds = (performance.now() - setupStart) / 1000;
  const f = session
    ? { ...session.field({ sampleShape: [2], divergence: "exact" }), dispose: () => session.release() }
    : modelDivergenceField(mlpModel(loaded.config.model), loaded.ema, { sampleShape: [2], divergence });
  try {
    const r = await batched(x, 2, opts.batch ?? 2048, (chunk) =>
      logLikelihoodWith(f.field, chunk, {
        sampleShape: [2],
        solver: opts.solver,
        rtol: opts.rtol,
        atol: opts.atol,
        nfe: opts.nfe ?? 48,
        estimates: f.estimates,
      }),
    );
    return summarise(r.logp, r.nfe, setupSeconds + r.seconds);
  } finally {
    await f.dispose();
  }
}

/**
 * n fresh samples of a 2-D model (EMA weights) with their exact log p in nats, from one forward
 * solve per batch (Dopri5 by default); `samples_logp.csv` (x,y,logp) in `out`.
 */
export async function sampleWithLogDensity2d(
  loaded: Loaded2d,
  opts: LoglikOptions & { n: number; seed: number; out: string; nfe?: number },
): Promise<LoglikSummary & { x: Float32Array; file: string }> {
  await initEngine();
  const x0 = new Rng(opts.seed).normals(opts.n * 2);
  const x = new Float32Array(x0.length);
  const f = modelDivergenceField(mlpModel(loaded.config.model), loaded.ema, { sampleShape: [2], divergence: "exact" });
  try {
    let at = 0; // batches run in order
    const r = await batched(x0, 2, opts.batch ?? 2048, async (chunk) => {
      const s = await sampleWithLogDensityWith(f.field, chunk, {
        sampleShape: [2],
        solver: opts.solver,
        rtol: opts.rtol,
        atol: opts.atol,
        nfe: opts.nfe ?? 48,
      });
      x.set(s.x, at);
      at += s.x.length;
      return s;
    });
    const file = join(opts.out, "samples_logp.csv");
    const rows = Array.from(r.logp, (lp, i) => `${x[2 * i]},${x[2 * i + 1]},${lp}`);
    await writeFileAtomic(file, ["x,y,logp", ...rows, ""].join("\n"));
    return { ...summarise(r.logp, r.nfe, r.seconds), x, file };
  } finally {
    f.dispose();
  }
}

/**
 * density.png: exp(log p) on a grid with the exact divergence, the same with Hutchinson's estimate
 * (`probes` probes, fixed per point for the whole solve, as in FFJORD), and the model's samples.
 * Returns the path and the mean |difference| of the two log p over the grid points where both are finite.
 */
export async function renderDensity2d(
  loaded: Loaded2d,
  out: string,
  opts: LoglikOptions & { gridN?: number; probes?: number; probe?: ProbeKind; seed?: number },
): Promise<{ file: string; meanAbsDiff: number; probes: number }> {
  // 64 x 64 points: the two solves (exact and Hutchinson) together cost about what one 80 x 80 did.
  const gridN = opts.gridN ?? 64;
  const probes = opts.probes ?? 1;
  const bounds = toyBounds(loaded.config.dataset);
  const grid = vectorFieldGrid(bounds, gridN);
  // A fixed-step solver for the picture: one far-off grid point must not stall or break the adaptive
  // step size of the whole batch; points whose backward path blows up get density 0.
  const solve = {
    solver: "rk4" as SolverName,
    batch: gridN * gridN,
    ...(opts.solver === "dopri5" || opts.solver === undefined ? {} : { solver: opts.solver }),
  };
  const exact = await logLikelihood2d(loaded, grid, { ...solve, runtime: opts.runtime });
  const hutch = await logLikelihood2d(loaded, grid, {
    ...solve,
    divergence: { hutchinson: probes, seed: opts.seed ?? 0, probe: opts.probe },
  });
  const density = (logp: Float64Array) => Float64Array.from(logp, (v) => (Number.isFinite(v) ? Math.exp(v) : 0));
  let diff = 0;
  let count = 0;
  for (let i = 0; i < exact.logp.length; i++) {
    const d = Math.abs(exact.logp[i] - hutch.logp[i]);
    if (Number.isFinite(d)) (diff += d), count++;
  }
  const meanAbsDiff = count > 0 ? diff / count : Number.NaN;
  const samples = await sampleToy2d(loaded, { n: 3000, solver: "rk4", nfe: 100, seed: 5, weights: "ema" });
  // One colour scale for both maps, so equal colours mean equal densities. It is set by the exact map
  // and topped at its 99th percentile: a sharp model's density has single grid points (on the board's
  // edge) tens of times above the rest, and one-probe Hutchinson estimates scatter far above the truth;
  // on a [min, max] scale either leaves the exact map dark. Values above the top saturate.
  const [pExact, pHutch] = [density(exact.logp), density(hutch.logp)];
  const range = valueRange([pExact], { upperQuantile: 0.99 });
  const picture = sideBySide([
    heatmap(pExact, gridN, { title: "exact divergence: p(x)", bounds, range }),
    heatmap(pHutch, gridN, {
      title: `Hutchinson, ${probes} ${opts.probe ?? "rademacher"} probe${probes === 1 ? "" : "s"}`,
      bounds,
      range,
    }),
    scatterPlot([{ title: "samples", points: samples.x }], { bounds }),
  ]);
  const caption = `${loaded.config.dataset}: mean |log p exact - log p Hutchinson| = ${meanAbsDiff.toFixed(3)} nats over ${count} grid points`;
  const path = join(out, "density.png");
  await writeFileAtomic(path, labelled(picture, caption).toPng());
  return { file: path, meanAbsDiff, probes };
}

/**
 * Uniform dequantisation for bits/dim: datasets store 8-bit pixels k as 2k/255 - 1; this recovers k
 * and returns x = 2(k + u)/256 - 1 with u ~ U(0, 1) (seeded), the convention `bitsPerDim` assumes.
 */
export function dequantizeImages(images: Float32Array, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from(images, (v) => {
    const k = Math.min(255, Math.max(0, Math.round(((v + 1) * 255) / 2)));
    return (2 * (k + rng.uniform())) / 256 - 1;
  });
}

/**
 * Bits per dimension of images under an image model with Hutchinson's divergence estimate
 * (`probes` vectors, fixed for the whole integration), conditioned on their labels. `images` are
 * dataset values (2k/255 - 1); they are dequantised here with seeded uniform noise.
 * `bpdStderr` is the standard error over images (it includes the probe noise); `probeStderr` is
 * the part of it that comes from the probes alone (root mean square of the per-image standard
 * errors, divided by sqrt(n)), in bits/dim.
 */
export async function bitsPerDimImages(
  loaded: LoadedImage,
  images: Float32Array,
  labels: Int32Array,
  opts: LoglikOptions & { probes: number; seed: number; probe?: ProbeKind },
): Promise<LoglikSummary & { bpd: number; bpdStderr: number; probeStderr: number }> {
  await initEngine();
  const cfg = loaded.config.model;
  const sampleShape = [cfg.height, cfg.width, cfg.inChannels];
  const dim = cfg.height * cfg.width * cfg.inChannels;
  const batch = opts.batch ?? 16;
  const n = images.length / dim;
  const logp = new Float64Array(n);
  let probeVariance = 0;
  let nfe = 0;
  const dequantized = dequantizeImages(images, opts.seed + 7);
  const started = performance.now();
  const session =
    opts.runtime === "onnx"
      ? await createOnnxDivergenceSession(
          await exportDivergenceOnnx(hostData(loaded.ema), { kind: "unet", config: cfg }, { tangents: opts.probes, exact: false }),
        )
      : null;
  try {
    for (let s = 0; s < n; s += batch) {
      const e = Math.min(n, s + batch);
      const chunk = dequantized.subarray(s * dim, e * dim);
      const divergence = { hutchinson: opts.probes, seed: opts.seed + s, probe: opts.probe };
      const solve = { sampleShape, solver: opts.solver, rtol: opts.rtol ?? 1e-4, atol: opts.atol ?? 1e-4 };
      let r: LogLikelihoodResult;
      if (session) {
        const f = session.field({ sampleShape, labels: labels.subarray(s, e), divergence });
        r = await logLikelihoodWith(f.field, chunk, { ...solve, estimates: f.estimates });
      } else {
        r = await logLikelihood(unetModel(cfg), loaded.ema, chunk, { ...solve, divergence, labels: labels.subarray(s, e) });
      }
      logp.set(r.logp, s);
      for (const se of r.stderr ?? []) probeVariance += se * se;
      nfe += r.nfe;
    }
  } finally {
    await session?.release();
  }
  const summary = summarise(logp, nfe, (performance.now() - started) / 1000);
  const toBits = 1 / (dim * Math.LN2);
  return {
    ...summary,
    bpd: bitsPerDim(summary.mean, dim),
    bpdStderr: summary.stderr * toBits,
    probeStderr: (Math.sqrt(probeVariance / n) / Math.sqrt(n)) * toBits,
  };
}
