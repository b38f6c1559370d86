// Starting or continuing a training run in its output folder, the same way for every training
// command: never replace a checkpoint unasked, continue only a checkpoint of the same setup, and
// keep the settings every segment of steps was trained with, so a resume never loses that record.
import { existsSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { UserError } from "../core/errors.js";
import type { HostParams } from "../core/optim.js";
import { removeStaleTemps } from "../io/atomic.js";
import { assertSameSetup, checkParams, loadCheckpoint, saveCheckpoint, CONFIG_FILE, WEIGHTS_FILE, type CheckpointConfig, type Setting } from "../io/checkpoint.js";
import type { HostTensor } from "../io/safetensors.js";
import { tensorsToState } from "./state.js";

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
    throw new UserError(`${o.out} already holds a checkpoint (${present.join(", ")}); pass --resume to continue it or --force to replace it`);
  }
  if (present.length === 0 && o.resume) {
    throw new UserError(`--resume: ${o.out} holds no checkpoint (no ${CONFIG_FILE} or ${WEIGHTS_FILE}); run without --resume to start training there`);
  }
  return present.length > 0;
}

export interface OpenRunOptions extends RunFolderOptions {
  kind: string;
  /** The command, for messages ("train2d"). */
  command: string;
  /** The config this run would write (any step, any runId): compared with a stored one through `identity`. */
  next: CheckpointConfig;
  /** The settings that define what a config's weights are; a resume must match every one. */
  identity: (config: CheckpointConfig) => Setting[];
  /** Parameter shapes of this run's model. */
  shapes: Record<string, number[]>;
}

export interface TrainingRun {
  runId: string;
  /** The step training starts from: the checkpoint's step when resuming, else 0. */
  startStep: number;
  /** Trainer state to continue from; absent for a fresh run. */
  resume?: { params: HostParams; ema: HostParams; m: HostParams; v: HostParams; step: number; skipped: number };
  /** Loss of every step so far (appended to by the training loop). */
  losses: number[];
  /** Numbers of the steps skipped for a non-finite loss or gradient (resumed runs: the earlier ones too). */
  skipped: number[];
  /** Writes `config` (its runId and segments filled in); a no-op when nothing was trained since the start. */
  save(config: CheckpointConfig, tensors: Record<string, HostTensor>): Promise<void>;
}

export async function openTrainingRun(o: OpenRunOptions): Promise<TrainingRun> {
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
    const { config, tensors, recovered } = await loadCheckpoint(o.out, { kind: o.kind, command: `${o.command} --resume` });
    const source = join(o.out, recovered ? WEIGHTS_FILE : CONFIG_FILE);
    if (recovered) log(`${join(o.out, CONFIG_FILE)} is missing; continuing from the config embedded in ${source}`);
    assertSameSetup(o.identity(config), o.identity(o.next), o.out);
    checkParams(o.shapes, tensors, source);
    const state = tensorsToState(tensors, source);
    if (!state.m || !state.v) throw new UserError(`${source} has no optimizer state, so it cannot be resumed; pass --force to train from scratch there`);
    skipped = state.skipped ?? [];
    resume = { params: state.params, ema: state.ema, m: state.m, v: state.v, step: config.step, skipped: skipped.length };
    losses = state.losses ?? [];
    runId = typeof config.runId === "string" ? config.runId : runId;
    startStep = config.step;
    earlier = storedSegments(config);
    log(`resuming from step ${config.step} (${source})`);
  }
  return {
    runId,
    startStep,
    resume,
    losses,
    skipped,
    async save(config, tensors) {
      if (config.step === startStep) return;
      const train = isRecord(config.train) ? config.train : {};
      const last = earlier.at(-1);
      const segments =
        last && last.to === startStep && sameSettings(last.train, train)
          ? [...earlier.slice(0, -1), { from: last.from, to: config.step, train }]
          : [...earlier, { from: startStep, to: config.step, train }];
      await saveCheckpoint(o.out, { config: { ...config, runId, segments }, tensors });
    },
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The segments a checkpoint records; older checkpoints hold only the settings of their last run. */
function storedSegments(config: CheckpointConfig): TrainSegment[] {
  if (Array.isArray(config.segments)) {
    return config.segments.filter((s): s is TrainSegment => isRecord(s) && typeof s.from === "number" && typeof s.to === "number" && isRecord(s.train));
  }
  return isRecord(config.train) ? [{ from: 0, to: config.step, train: config.train }] : [];
}

/** The target step count is where a segment ends, not how it trains. */
function sameSettings(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const key = (t: Record<string, unknown>) => JSON.stringify(Object.entries(t).filter(([k]) => k !== "steps"));
  return key(a) === key(b);
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
    // The pairs are drawn with the run's seed, so for reflow the seed is part of the data.
    { flag: "--seed", value: value(r.seed) },
  ];
}
