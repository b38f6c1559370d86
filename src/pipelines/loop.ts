// The training loop every pipeline shares: step until done, watch for divergence, report
// progress, checkpoint periodically and at the end, and stop cleanly when asked.
import { UserError } from "../core/errors.js";
import { pausePoint } from "../core/interrupt.js";
import type { FlowBatch, Trainer } from "../core/train.js";

export interface TrainProgress {
  step: number;
  steps: number;
  loss: number;
  /** Exponential moving average of the loss, for a readable progress line. */
  smoothLoss: number;
}

export interface LoopOptions {
  trainer: Trainer;
  steps: number;
  /** Batch for the step about to be taken (trainer.stepCount steps are done). */
  nextBatch: (stepsDone: number) => FlowBatch;
  /** Losses of earlier steps (resumed runs); new losses are appended to this array. */
  losses: number[];
  lr: number;
  /** Writes a checkpoint; called every `checkpointEvery` steps and once at the end. */
  save?: () => Promise<void>;
  checkpointEvery?: number;
  onProgress?: (p: TrainProgress) => void;
  /** Polled between steps; true stops the run early (after a checkpoint). Ctrl-C (src/core/interrupt.ts) always does. */
  shouldStop?: () => boolean;
}

/** Runs the loop; resolves to whether it stopped early. Does not dispose the trainer. */
export async function runTrainingLoop(o: LoopOptions): Promise<{ stopped: boolean }> {
  const { trainer, losses } = o;
  let smooth = losses.length > 0 ? losses[losses.length - 1] : NaN;
  let stopped = false;
  while (trainer.stepCount < o.steps) {
    const loss = await trainer.step(o.nextBatch(trainer.stepCount));
    if (!Number.isFinite(loss)) {
      throw new UserError(`training diverged at step ${trainer.stepCount} (loss ${loss}); lower --lr (now ${o.lr})`);
    }
    losses.push(loss);
    smooth = Number.isNaN(smooth) ? loss : 0.98 * smooth + 0.02 * loss;
    o.onProgress?.({ step: trainer.stepCount, steps: o.steps, loss, smoothLoss: smooth });
    if (o.save && o.checkpointEvery && trainer.stepCount % o.checkpointEvery === 0 && trainer.stepCount < o.steps) await o.save();
    // pausePoint lets the event loop run, or a Ctrl-C handler would never fire during training.
    if ((await pausePoint()) || o.shouldStop?.()) {
      stopped = true;
      break;
    }
  }
  await o.save?.();
  return { stopped };
}
