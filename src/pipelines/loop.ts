// The training loop every pipeline shares: step until done, watch for divergence, report
// progress, checkpoint periodically and at the end, and stop cleanly when asked.
import { UserError } from "../core/errors.js";
import { pausePoint } from "../core/interrupt.js";
import type { FlowBatch, StepOutcome, Trainer } from "../core/train.js";
import { lrAt, type LrSchedule } from "../core/lrSchedule.js";

export interface TrainProgress {
  step: number;
  steps: number;
  loss: number;
  /** Exponential moving average of the loss, for a readable progress line. */
  smoothLoss: number;
  /** Steps skipped so far because their loss or gradient was not finite. */
  skipped: number;
}

export interface LoopOptions {
  trainer: Trainer;
  steps: number;
  /** Batch for the step about to be taken (trainer.stepCount steps are done). */
  nextBatch: (stepsDone: number) => FlowBatch;
  /** Losses of earlier applied steps (resumed runs); new finite losses are appended to this array. */
  losses: number[];
  /** Steps skipped earlier (resumed runs); the numbers of newly skipped steps are appended. */
  skipped?: number[];
  /** The (peak) learning rate, for messages; the trainer's own rate unless `schedule` is given. */
  lr: number;
  /** Rate of each step by its number (resumed runs continue the curve); absent: the trainer's constant rate. */
  schedule?: LrSchedule;
  /** Writes a checkpoint; called every `checkpointEvery` steps and once at the end. */
  save?: () => Promise<void>;
  checkpointEvery?: number;
  onProgress?: (p: TrainProgress) => void;
  /** One line per skipped step. */
  onLog?: (line: string) => void;
  /** Polled between steps; true stops the run early (after a checkpoint). Ctrl-C (src/core/interrupt.ts) always does. */
  shouldStop?: () => boolean;
}

/**
 * Consecutive skipped steps that stop a run. A skipped step changes nothing, so the next one differs
 * only in its batch: an isolated bad value is stepped over, while a cause that persists (weights that
 * overflow on any input, broken data) fails every step. Twenty fresh batches failing in a row is not
 * chance, and costs well under a second on the 2-D model and seconds on the image model.
 */
export const MAX_CONSECUTIVE_SKIPS = 20;

/** Runs the loop; resolves to whether it stopped early. Does not dispose the trainer. */
export async function runTrainingLoop(o: LoopOptions): Promise<{ stopped: boolean }> {
  const { trainer, losses } = o;
  const skipped = o.skipped ?? [];
  let smooth = losses.length > 0 ? losses[losses.length - 1] : NaN;
  let stopped = false;
  // A resumed run starts from a checkpoint at its current step.
  let lastSaved: number | null = trainer.stepCount > 0 ? trainer.stepCount : null;
  const streak: { outcome: StepOutcome; badData: string | null }[] = [];
  while (trainer.stepCount < o.steps) {
    const batch = o.nextBatch(trainer.stepCount);
    const loss = await trainer.step(batch, o.schedule ? lrAt(o.schedule, trainer.stepCount) : undefined);
    const outcome = trainer.lastStep as StepOutcome;
    if (outcome.applied) {
      streak.length = 0;
      losses.push(loss);
      smooth = Number.isNaN(smooth) ? loss : 0.98 * smooth + 0.02 * loss;
    } else {
      skipped.push(trainer.stepCount);
      streak.push({ outcome, badData: nonFiniteField(batch) });
      o.onLog?.(`step ${trainer.stepCount}: ${describeBad(outcome)}; update skipped, weights unchanged`);
    }
    o.onProgress?.({ step: trainer.stepCount, steps: o.steps, loss, smoothLoss: smooth, skipped: skipped.length });
    if (streak.length >= MAX_CONSECUTIVE_SKIPS) throw new UserError(stopMessage(trainer.stepCount, streak, losses, lastSaved, o.lr));
    // No periodic save in the middle of a run of bad steps: the last good checkpoint stays as it is.
    if (o.save && o.checkpointEvery && trainer.stepCount % o.checkpointEvery === 0 && trainer.stepCount < o.steps && streak.length === 0) {
      await o.save();
      lastSaved = trainer.stepCount;
    }
    // pausePoint lets the event loop run, or a Ctrl-C handler would never fire during training.
    if ((await pausePoint()) || o.shouldStop?.()) {
      stopped = true;
      break;
    }
  }
  await o.save?.();
  return { stopped };
}

function describeBad(s: StepOutcome): string {
  return Number.isFinite(s.loss) ? `gradient norm is ${s.gradNorm} (loss ${s.loss.toPrecision(5)})` : `loss is ${s.loss}`;
}

/** The first batch field holding a NaN or an infinity, or null. */
function nonFiniteField(b: FlowBatch): string | null {
  for (const [name, a] of [
    ["x1 (data)", b.x1],
    ["x0 (noise)", b.x0],
    ["t", b.t],
    ["path coefficients", b.coef],
  ] as const) {
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return name;
  }
  return null;
}

/**
 * Did the loss rise before it went non-finite? Compares the mean of the last few losses (`later`:
 * finite losses of skipped steps, after the applied ones) with the lowest mean of an equally long
 * window of applied losses. null: no applied loss to compare with.
 */
export function lossTrend(applied: readonly number[], later: readonly number[] = []): { rising: boolean; from: number; to: number } | null {
  const n = applied.length;
  if (n === 0) return null;
  const w = Math.max(1, Math.min(50, Math.floor(n / 4)));
  const mean = (a: readonly number[], end: number) => {
    let s = 0;
    for (let i = end - w; i < end; i++) s += a[i];
    return s / w;
  };
  let from = Infinity;
  for (let end = w; end <= n; end++) from = Math.min(from, mean(applied, end));
  const all = [...applied, ...later];
  const to = mean(all, all.length);
  return { rising: to > 1.5 * from, from, to };
}

function stopMessage(
  step: number,
  streak: { outcome: StepOutcome; badData: string | null }[],
  losses: number[],
  lastSaved: number | null,
  lr: number,
): string {
  const lossBad = streak.filter((s) => !Number.isFinite(s.outcome.loss)).length;
  const what = lossBad === streak.length ? "loss" : lossBad === 0 ? "gradient norm" : "loss or gradient norm";
  const last = streak[streak.length - 1].outcome;
  const kept = lastSaved !== null ? `the checkpoint from step ${lastSaved} is kept` : "no checkpoint was written";
  const head =
    `training stopped at step ${step}: ${streak.length} steps in a row (${step - streak.length + 1}-${step}) had a non-finite ${what} ` +
    `(last: ${describeBad(last)}), so none of them was applied; ${kept}.`;
  const badData = streak.find((s) => s.badData !== null)?.badData;
  if (badData) return `${head} The training batch itself held NaN or infinite values in ${badData}: check the training data.`;
  // Finite losses of the skipped steps count too: a loss that grew huge before its gradient overflowed.
  const trend = lossTrend(losses, streak.map((s) => s.outcome.loss).filter(Number.isFinite));
  if (trend?.rising) {
    return `${head} The loss rose from ${trend.from.toPrecision(4)} to ${trend.to.toPrecision(4)} before this, so the learning rate is the likely cause: lower --lr (now ${lr}).`;
  }
  const steady = trend
    ? ` The loss was not rising before this (about ${trend.to.toPrecision(4)}), so the learning rate is an unlikely cause.`
    : "";
  return `${head}${steady} This looks like a numerical problem in the model or the engine; please report it with the command line that produced it.`;
}
