// Sampling a trained image model: the guided velocity field on the engine or on onnxruntime,
// class grids and trajectory GIFs, and ONNX export of the network.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { modelField } from "../core/field.js";
import { odeint, type OdeResult, type SolverName, type VelocityField } from "../core/solvers.js";
import { unetFamily, unetModel, type UnetConfig } from "../core/models/unet.js";
import { assertForwardFits } from "../core/memory.js";
import { writeFileAtomic } from "../io/atomic.js";
import { exportUnetOnnx } from "../io/onnx.js";
import { createOnnxField, onnxVelocityField } from "../io/onnxField.js";
import { encodeGif, imageGrid } from "../viz/index.js";
import type { LoadedImage } from "./model.js";

/** Refuses, before any allocation, sampling n images at once on the engine (guidance doubles the batch) when it cannot fit. */
export function checkImageSampleMemory(cfg: UnetConfig, n: number, guidance: number): void {
  const batch = guidance === 1 ? n : 2 * n;
  assertForwardFits(
    unetFamily,
    cfg,
    batch,
    `sampling ${n} images of ${cfg.height}x${cfg.width} at once${guidance === 1 ? "" : " with guidance (two network passes each)"}`,
    "use a smaller --per-class or --class list, or --runtime onnx",
  );
}

export interface ImageSampleOptions {
  perClass: number;
  classes?: number[];
  nfe: number;
  solver: SolverName;
  guidance: number;
  seed: number;
  runtime: "engine" | "onnx";
  frames: number;
  /** Folder for samples.png and trajectory.gif; without it no pictures are written (scoring only). */
  out?: string;
}

/** A guided velocity field for the image model on the chosen runtime. */
export async function imageField(
  loaded: LoadedImage,
  labels: Int32Array,
  guidance: number,
  runtime: "engine" | "onnx",
): Promise<{ field: VelocityField; dispose: () => void }> {
  const cfg = loaded.config.model;
  const sampleShape = [cfg.height, cfg.width, cfg.inChannels];
  if (runtime === "engine") {
    await initEngine();
    const f = modelField(unetModel(cfg), loaded.ema, { sampleShape, labels, guidance, nullLabel: cfg.numClasses });
    return { field: f.field, dispose: () => f.dispose() };
  }
  const data: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(loaded.ema)) data[k] = v.data;
  // Guidance inside the graph (one run per evaluation); w = 1 is the plain conditional network.
  const guided = guidance !== 1;
  const session = await createOnnxField(await exportUnetOnnx(data, cfg, { guided }), {});
  const field = onnxVelocityField(session, { sampleShape, labels, guidance: guided ? guidance : undefined });
  return { field, dispose: () => session.release() };
}

export async function sampleImages(
  loaded: LoadedImage,
  opts: ImageSampleOptions,
): Promise<{ files: string[]; images: Float32Array; labels: Int32Array; seconds: number; nfe: number }> {
  const cfg = loaded.config.model;
  const classes = opts.classes ?? Array.from({ length: cfg.numClasses }, (_, i) => i);
  for (const c of classes) {
    if (!Number.isInteger(c) || c < 0 || c >= cfg.numClasses)
      throw new UserError(`--class ${c} is out of range; this model has classes 0..${cfg.numClasses - 1}`);
  }
  const labels = Int32Array.from(classes.flatMap((c) => Array<number>(opts.perClass).fill(c)));
  const n = labels.length;
  const per = cfg.height * cfg.width * cfg.inChannels;
  if (opts.runtime === "engine") checkImageSampleMemory(cfg, n, opts.guidance);
  const x0 = new Rng(opts.seed).normals(n * per);
  const f = await imageField(loaded, labels, opts.guidance, opts.runtime);
  const saveAt = Array.from({ length: opts.frames }, (_, i) => i / (opts.frames - 1));
  const started = performance.now();
  let result: OdeResult;
  try {
    result = await odeint(f.field, x0, { solver: opts.solver, nfe: opts.nfe, saveAt });
  } finally {
    f.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  const rowLabels = classes.map((c) => loaded.config.classNames[c] ?? String(c));
  const grid = (x: Float32Array) =>
    imageGrid(x, {
      n,
      height: cfg.height,
      width: cfg.width,
      channels: cfg.inChannels === 3 ? 3 : 1,
      cols: opts.perClass,
      scale: 2,
      range: "minus1to1",
      rowLabels,
    });
  const files: string[] = [];
  if (opts.out === undefined) return { files, images: result.x, labels, seconds, nfe: result.nfe };
  const samplesPath = join(opts.out, "samples.png");
  await writeFileAtomic(samplesPath, grid(result.x).toPng());
  files.push(samplesPath);
  const frames = (result.trajectory?.xs ?? [result.x]).map(grid);
  const held = [...frames, ...Array<(typeof frames)[number]>(8).fill(frames[frames.length - 1])];
  const gifPath = join(opts.out, "trajectory.gif");
  await writeFileAtomic(gifPath, encodeGif(held, { delayMs: 100, loop: true }));
  files.push(gifPath);
  return { files, images: result.x, labels, seconds, nfe: result.nfe };
}

export async function exportOnnx(loaded: LoadedImage, path: string, opts: { guided?: boolean } = {}): Promise<void> {
  const data: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(loaded.ema)) data[k] = v.data;
  await writeFileAtomic(path, await exportUnetOnnx(data, loaded.config.model, opts));
}
