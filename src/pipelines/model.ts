// A trained model as the commands use it: checkpoint read once (config, weights, EMA, training log),
// its network's family found by kind, the stored model config checked by that family and the
// weights checked against its shapes. Training runs return the same object for what they trained.
import { UserError } from "../core/errors.js";
import type { HostParams } from "../core/optim.js";
import type { ModelFamily } from "../core/models/family.js";
import { modelFamily } from "../core/models/registry.js";
import type { MlpConfig } from "../core/models/mlp.js";
import type { UnetConfig } from "../core/models/unet.js";
import { parseToyDataset } from "../data/toy2d.js";
import { checkParams, loadCheckpoint, type CheckpointConfig } from "../io/checkpoint.js";
import { tensorsToState } from "./state.js";
import type { Toy2dCheckpointConfig } from "./toy2d.js";
import type { ImageCheckpointConfig } from "./images.js";

/**
 * A trained model as loadModel returns it (and training runs return what they saved): the checkpoint's config,
 * the model's family and network config, its weights and their EMA, and the training log.
 */
export interface LoadedModel<C extends CheckpointConfig = CheckpointConfig, M = unknown> {
  kind: C["kind"];
  family: ModelFamily<M>;
  /** The whole checkpoint config: the run's metadata (runId, step, dataset, train, segments, reflow). */
  config: C;
  /** The network's config (config.model), checked by the family. */
  model: M;
  /** The trained weights. */
  params: HostParams;
  /** Their exponential moving average (what sampling uses); the weights themselves if none was stored. */
  ema: HostParams;
  /** Loss of every applied training step. */
  losses: number[];
  /** Steps skipped for a non-finite loss or gradient. */
  skipped: number[];
  /** The checkpoint folder or file it came from (or was written to). */
  path: string;
}

/** A loaded 2-D model: an MLP trained by train2d (or a reflow of one). */
export type Loaded2d = LoadedModel<Toy2dCheckpointConfig, MlpConfig>;
/** A loaded image model: a class-conditional UNet trained by train-image (or a reflow of one). */
export type LoadedImage = LoadedModel<ImageCheckpointConfig, UnetConfig>;
/** Every kind this flowmatch has a family for (a new family adds its member here). */
export type KnownModel = Loaded2d | LoadedImage;

/** The stored weights or their EMA. */
export function weightsOf(m: LoadedModel, which: "ema" | "raw"): HostParams {
  return which === "ema" ? m.ema : m.params;
}

/** What a checkpoint of each kind needs beyond its model config (commands rely on these fields). */
const RUN_CHECKS: Record<string, (config: CheckpointConfig, source: string) => void> = {
  "2d": (c) => {
    parseToyDataset(String(c.dataset));
  },
  image: (c, source) => {
    if (typeof c.dataset !== "string") throw new UserError(`${source} has no "dataset"; re-run training to write it again`);
  },
  classifier: (c, source) => {
    if (typeof c.dataset !== "string") throw new UserError(`${source} has no "dataset"; re-run train-classifier to write it again`);
  },
};

/** What loadModel's caller accepts: one model kind only, and the command to name in messages. */
export interface LoadModelOptions {
  /** Refuse a checkpoint of another kind (a command that takes only one). */
  kind?: string;
  /** The command, for messages. */
  command?: string;
}

/**
 * Reads the checkpoint at `path` (folder, .safetensors or .json) once, with every check of
 * io/checkpoint.ts (format, version, hash, finite values, kind), then checks its model config and
 * weight shapes through the kind's ModelFamily. The way to use a model the CLI trained: `family.model(model)`
 * with `ema` gives modelField and logLikelihood what they need.
 */
export async function loadModel(path: string, opts: LoadModelOptions & { kind: "2d" }): Promise<Loaded2d>;
export async function loadModel(path: string, opts: LoadModelOptions & { kind: "image" }): Promise<LoadedImage>;
export async function loadModel(path: string, opts?: LoadModelOptions): Promise<KnownModel>;
export async function loadModel(path: string, opts: LoadModelOptions = {}): Promise<KnownModel> {
  const { config, tensors } = await loadCheckpoint(path, { kind: opts.kind, command: opts.command });
  const family = modelFamily(config.kind);
  const model = family.parseConfig(config.model, path);
  RUN_CHECKS[config.kind]?.(config, path);
  checkParams(family.paramShapes(model), tensors, path, family.mismatchHint ?? family.shapeFlags);
  const state = tensorsToState(tensors, path);
  return {
    kind: config.kind,
    family,
    // The checked model config (defaults filled in, e.g. one channel for old grey checkpoints) for every reader.
    config: { ...config, model },
    model,
    params: state.params,
    ema: state.ema,
    losses: state.losses ?? [],
    skipped: state.skipped ?? [],
    path,
  } as KnownModel;
}
