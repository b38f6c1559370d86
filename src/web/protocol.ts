// Messages between the page (main.ts) and the compute worker (worker.ts). Everything heavy —
// engine, training, sampling, checkpoint decoding — runs in the worker; the page only draws.
import type { PathName } from "../core/paths.js";
import type { SolverName } from "../core/solvers.js";
import type { ToyDatasetName } from "../data/toy2d.js";

import type { Bounds } from "../viz/scale.js";

export type { Bounds };

/** "custom" trains on the points drawn with the mouse. */
export type PlaygroundDataset = ToyDatasetName | "custom";

/** Bounds of the drawing area for custom data (same frame as the widest toy sets). */
export const CUSTOM_BOUNDS: Bounds = [-4.5, 4.5, -4.5, 4.5];

/** Arrows per side of the velocity-field grid. */
export const FIELD_GRID_N = 21;

export interface SampleSettings {
  solver: SolverName;
  nfe: number;
  /** Particles integrated from noise for each picture. */
  particles: number;
}

export interface TrainSettings extends SampleSettings {
  dataset: PlaygroundDataset;
  path: PathName;
  steps: number;
  batchSize: number;
  hidden: number;
  depth: number;
  lr: number;
  seed: number;
}

export interface LoadedFile {
  name: string;
  bytes: ArrayBuffer;
}

export type ToWorker =
  /** device "auto" tries WebGPU and falls back to Wasm. */
  | { type: "init"; device: "auto" | "wasm" | "webgpu" }
  | { type: "train"; settings: TrainSettings; customPoints?: Float32Array }
  | { type: "stop" }
  | { type: "reset" }
  /** Re-sample the current model (solver or NFE changed). */
  | { type: "resample"; sample: SampleSettings }
  | { type: "loadCheckpoint"; files: LoadedFile[]; sample: SampleSettings }
  | { type: "generateImages"; label: number | "all"; count: number; guidance: number; solver: SolverName; nfe: number; seed: number };

export interface FlowSnapshot {
  type: "snapshot";
  /** Training step the weights come from. */
  step: number;
  bounds: Bounds;
  /** Solver times of the frames, t[0] = 0 (noise) ... 1 (data). */
  times: number[];
  /** Particle positions per frame, [n, 2] flattened. */
  frames: Float32Array[];
  /** Velocity on vectorFieldGrid(bounds, FIELD_GRID_N) (viz/scale.ts) at each frame's time, [N*N, 2] flattened. */
  fields: Float32Array[];
  /** What produced it, e.g. "rk4, NFE 20". */
  label: string;
  /** Milliseconds the worker spent making it. */
  ms: number;
}

export type FromWorker =
  /** adapter: the WebGPU adapter, described (null on Wasm). */
  | { type: "ready"; device: string; threads: number; isolated: boolean; adapter: string | null }
  /** WebGPU failed to start or in a kernel; the engine now runs on Wasm (sent once, before "ready"). */
  | { type: "engineFallback"; message: string }
  | { type: "progress"; step: number; total: number; losses: number[]; stepsPerSecond: number }
  | FlowSnapshot
  | { type: "trainDone"; step: number; stopped: boolean; stepsPerSecond: number }
  | { type: "checkpoint2d"; summary: string; dataset: string; bounds: Bounds; losses: number[] }
  | { type: "checkpointImage"; summary: string; classNames: string[]; height: number; width: number; channels: number; losses: number[] }
  /** One solver step of image generation: pixels [n, h, w, c] in [-1, 1]. */
  | { type: "imageStep"; t: number; step: number; totalSteps: number; n: number; pixels: Float32Array }
  | { type: "imagesDone"; seconds: number; nfe: number; cancelled: boolean }
  /** `title` names what failed ("Could not load the checkpoint"), `message` the problem and the fix. */
  | { type: "error"; title: string; message: string };
