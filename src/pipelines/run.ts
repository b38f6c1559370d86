// A training run in its output folder, the same way for every trainer (train2d, train-image, both
// reflows): never replace a checkpoint unasked, continue only a checkpoint of the same setup, keep
// the settings every segment of steps was trained with (so a resume never loses that record), then
// train with periodic checkpoints, stop cleanly on Ctrl-C and save at the end.
import { existsSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { UserError } from "../core/errors.js";
import { DEFAULT_ADAM, type HostParams } from "../core/optim.js";
import type { FlowBatch } from "../core/train.js";
import type { LrSchedule } from "../core/lrSchedule.js";
import type { ModelFamily } from "../core/models/family.js";
import { removeStaleTemps } from "../io/atomic.js";
import {
  assertSameSetup,
  checkParams,
  loadCheckpoint,
  saveCheckpoint,
  CONFIG_FILE,
  WEIGHTS_FILE,
  type CheckpointConfig,
  type Setting,
} from "../io/checkpoint.js";
import { stateToTensors, tensorsToState, type TrainerHostState } from "./state.js";
import { runTrainingLoop, type TrainProgress } from "./loop.js";
import { createTrainer, type BackendOptions, type TrainBackend } from "./trainers.js";
import type { LoadedModel } from "./model.js";

/** Steps [from, to) were trained with `train` (the command's training settings). */
export interface TrainSegment {
  from: number;
  to: number;
  train: Record<string, unknown>;
}

export interface RunFolderOptions {
  out: string;
  resume: boolean;
  /** Replace an existing checkpoint instead of refusing. */
  force?: boolean;
  log?: (line: string) => void;
}

/**
 * Cheap checks before any heavy work: refuse to replace a checkpoint without --resume or --force,
 * refuse --resume where there is nothing to resume, and remove temp files a killed save left.
 * Returns whether `out` holds a checkpoint.
 */
export function checkRunFolder(o: RunFolderOptions): boolean {
  if (o.resume && o.force) throw new UserError("pass --resume to continue the checkpoint or --force to replace it, not both");
  const removed = removeStaleTemps(o.out);
  if (removed.length > 0) o.log?.(`removed ${removed.length} temp file(s) left in ${o.out} by an interrupted save: ${removed.join(", ")}`);
  const present = [CONFIG_FILE, WEIGHTS_FILE].filter((f) => existsSync(join(o.out, f)));
  if (present.length > 0 && !o.resume && !o.force) {
    throw new UserError(
      `${o.out} already holds a checkpoint (${present.join(", ")}); pass --resume to continue it or --force to replace it`,
    );
  }
  if (present.length === 0 && o.resume) {
    throw new UserError(
      `--resume: ${o.out} holds no checkpoint (no ${CONFIG_FILE} or ${WEIGHTS_FILE}); run without --resume to start training there`,
    );
  }
  return present.length > 0;
}

export interface OpenRunOptions<C extends CheckpointConfig, M> extends RunFolderOptions {
  /** The command, for messages ("train2d"). */
  command: string;
  /** The network trained, and its config. */
  family: ModelFamily<M>;
  model: M;
  /** The checkpoint config this run writes at `step` (segments are added on save). */
  configAt: (step: number, runId: string) => C;
  /** The settings that define what a config's weights are; a resume must match every one. */
  identity: (config: CheckpointConfig) => Setting[];
}

/** How a run trains once open: weights to start from, backend, optimizer settings, batches. */
export interface RunTrainOptions {
  /** Weights of a fresh run (not called when resuming). */
  init: () => HostParams;
  /** What runs the training step; checkpoints are the same either way. */
  backend: TrainBackend;
  backendOptions?: BackendOptions;
  lr: number;
  /** Rate of each step by its number (its lr is the peak); absent: constant `lr`. */
  schedule?: LrSchedule;
  emaDecay: number;
  /** Train until this step count. */
  steps: number;
  /** Checkpoint every this many steps (and at the end, or when stopped). */
  checkpointEvery: number;
  /** Batch for the step about to be taken (`stepsDone` steps are done). */
  nextBatch: (stepsDone: number) => FlowBatch;
  onProgress?: (p: TrainProgress) => void;
  onLog?: (line: string) => void;
  /** Polled between steps; true checkpoints and stops early. Ctrl-C always does. */
  shouldStop?: () => boolean;
}

export interface RunResult<C extends CheckpointConfig, M> {
  out: string;
  /** The step training started from (the checkpoint's when resuming). */
  startStep: number;
  step: number;
  losses: number[];
  stopped: boolean;
  /** What was trained, as saved: the same as loadModel(out) would read back. */
  model: LoadedModel<C, M>;
}

export interface TrainingRun<C extends CheckpointConfig = CheckpointConfig, M = unknown> {
  runId: string;
  /** The step training starts from: the checkpoint's step when resuming, else 0. */
  startStep: number;
  /** Trainer state to continue from; absent for a fresh run. */
  resume?: { params: HostParams; ema: HostParams; m: HostParams; v: HostParams; step: number; skipped: number };
  /** Loss of every step so far (appended to by the training loop). */
  losses: number[];
  /** Numbers of the steps skipped for a non-finite loss or gradient (resumed runs: the earlier ones too). */
  skipped: number[];
  /** Creates the trainer, trains to `steps` with periodic saves, saves at the end; returns the trained model. */
  train(t: RunTrainOptions): Promise<RunResult<C, M>>;
}

export async function openTrainingRun<C extends CheckpointConfig, M>(o: OpenRunOptions<C, M>): Promise<TrainingRun<C, M>> {
  const log = o.log ?? (() => {});
  const present = checkRunFolder(o);
  let runId: string = randomUUID();
  let startStep = 0;
  let earlier: TrainSegment[] = [];
  let resume: TrainingRun["resume"];
  let losses: number[] = [];
  let skipped: number[] = [];
  if (present && o.force) log(`replacing the checkpoint in ${o.out} (--force)`);
  if (present && o.resume) {
    const { config, tensors, recovered } = await loadCheckpoint(o.out, { kind: o.family.kind, command: `${o.command} --resume` });
    const source = join(o.out, recovered ? WEIGHTS_FILE : CONFIG_FILE);
    if (recovered) log(`${join(o.out, CONFIG_FILE)} is missing; continuing from the config embedded in ${source}`);
    assertSameSetup(o.identity(config), o.identity(o.configAt(0, "")), o.out);
    checkParams(o.family.paramShapes(o.model), tensors, source, o.family.shapeFlags);
    const state = tensorsToState(tensors, source);
    if (!state.m || !state.v)
      throw new UserError(`${source} has no optimizer state, so it cannot be resumed; pass --force to train from scratch there`);
    skipped = state.skipped ?? [];
    resume = { params: state.params, ema: state.ema, m: state.m, v: state.v, step: config.step, skipped: skipped.length };
    losses = state.losses ?? [];
    runId = typeof config.runId === "string" ? config.runId : runId;
    startStep = config.step;
    earlier = storedSegments(config);
    log(`resuming from step ${config.step} (${source})`);
  }
  /** The config saved at `step`: runId and the segments trained so far filled in. */
  const configFor = (step: number): C => {
    const config = o.configAt(step, runId);
    const train = isRecord(config.train) ? config.train : {};
    const last = earlier.at(-1);
    const segments =
      step === startStep
        ? earlier
        : last && last.to === startStep && sameSettings(last.train, train)
          ? [...earlier.slice(0, -1), { from: last.from, to: step, train }]
          : [...earlier, { from: startStep, to: step, train }];
    // Through JSON, so it equals what a read of the saved file gives.
    return JSON.parse(JSON.stringify({ ...config, runId, segments })) as C;
  };

  async function train(t: RunTrainOptions): Promise<RunResult<C, M>> {
    const trainer = await createTrainer(
      t.backend,
      {
        // Each family lays its network out for what runs the step (see ModelFamily.model).
        model: o.family.model(o.model, { runtime: t.backend === "ort" ? "onnxruntime" : "engine" }),
        params: resume?.params ?? t.init(),
        sampleShape: o.family.sampleShape(o.model),
        adam: { ...DEFAULT_ADAM, lr: t.lr },
        emaDecay: t.emaDecay,
        resume,
      },
      t.backendOptions,
    );
    let saved: { step: number; state: TrainerHostState } | null = null;
    const save = async () => {
      const step = trainer.stepCount;
      const state = await trainer.hostState();
      saved = { step, state };
      // Nothing trained since the start: the checkpoint on disk is this state already.
      if (step !== startStep)
        await saveCheckpoint(o.out, { config: configFor(step), tensors: stateToTensors({ ...state, losses, skipped }) });
    };
    let stopped: boolean;
    let last: { step: number; state: TrainerHostState };
    try {
      ({ stopped } = await runTrainingLoop({
        trainer,
        steps: t.steps,
        losses,
        skipped,
        lr: t.lr,
        schedule: t.schedule,
        save,
        checkpointEvery: t.checkpointEvery,
        onProgress: t.onProgress,
        onLog: t.onLog ?? o.log,
        shouldStop: t.shouldStop,
        nextBatch: t.nextBatch,
      }));
      // The loop always ends with a save; its state is the trained model.
      last = saved ?? { step: trainer.stepCount, state: await trainer.hostState() };
    } finally {
      trainer.dispose();
    }
    const config = configFor(last.step);
    const model: LoadedModel<C, M> = {
      kind: config.kind,
      family: o.family,
      config,
      model: o.model,
      params: last.state.params,
      ema: last.state.ema,
      losses,
      skipped,
      path: o.out,
    };
    return { out: o.out, startStep, step: last.step, losses, stopped, model };
  }

  return { runId, startStep, resume, losses, skipped, train };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The segments a checkpoint records; older checkpoints hold only the settings of their last run. */
function storedSegments(config: CheckpointConfig): TrainSegment[] {
  if (Array.isArray(config.segments)) {
    return config.segments.filter(
      (s): s is TrainSegment => isRecord(s) && typeof s.from === "number" && typeof s.to === "number" && isRecord(s.train),
    );
  }
  return isRecord(config.train) ? [{ from: 0, to: config.step, train: config.train }] : [];
}

/** The target step count is where a segment ends, not how it trains. */
function sameSettings(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const key = (t: Record<string, unknown>) => JSON.stringify(Object.entries(t).filter(([k]) => k !== "steps"));
  return key(a) === key(b);
}

/**
 * Which reflow round a checkpoint is: 0 for a model trained on data, k for round k of reflow (its
 * teacher's round + 1). A reflow saved before rounds were recorded counts as round 1.
 */
export function reflowRound(config: CheckpointConfig): number {
  if (!isRecord(config.reflow)) return 0;
  const round = config.reflow.round;
  return typeof round === "number" && Number.isInteger(round) && round >= 1 ? round : 1;
}

/**
 * What a checkpoint holds, for picture titles: "CFM" (trained on data), "k-rectified flow" after
 * k - 1 reflow rounds (Liu et al.: one reflow gives 2-rectified flow), "k-step distillation".
 */
export function flowName(config: CheckpointConfig): string {
  const distill = isRecord(config.reflow) ? config.reflow.distill : undefined;
  if (typeof distill === "number") return `${distill}-step distillation`;
  const round = reflowRound(config);
  return round === 0 ? "CFM" : `${round + 1}-rectified flow`;
}

/** What a reflow student learns from: its teacher and the pairs drawn from it (all null for plain training). */
export function reflowSetup(config: CheckpointConfig): Setting[] {
  const r = isRecord(config.reflow) ? config.reflow : {};
  const value = (x: unknown): Setting["value"] => (typeof x === "string" || typeof x === "number" || typeof x === "boolean" ? x : null);
  return [
    { flag: "--teacher", value: r.teacherRun === undefined ? null : `run ${String(r.teacherRun)} at step ${String(r.teacherStep)}` },
    { flag: "--pairs", value: value(r.pairs) },
    { flag: "--pair-solver", value: value(r.pairSolver) },
    { flag: "--pair-nfe", value: value(r.pairNfe) },
    { flag: "--guidance", value: value(r.guidance) },
    // distill: the student's step count decides the times it trains at.
    { flag: "--student-nfe", value: value(r.distill) },
    // The pairs are drawn with the run's seed, so for reflow the seed is part of the data.
    { flag: "--seed", value: value(r.seed) },
  ];
}
