// Learning-rate schedules: the rate of each training step as a function of the step's number alone,
// so a resumed run continues the curve where it stopped (no state beyond the step count).
import { UserError } from "./errors.js";

/** The schedules lrAt knows: a constant rate, or linear warm-up then cosine decay to zero. */
export const LR_SCHEDULES = ["constant", "cosine"] as const;
export type LrScheduleName = (typeof LR_SCHEDULES)[number];

export interface LrSchedule {
  kind: LrScheduleName;
  /** The peak rate (the constant rate for "constant"). */
  lr: number;
  /** Steps of linear warm-up from lr / warmup up to lr (0 = none). */
  warmup: number;
  /** The run's total steps: cosine reaches zero here. */
  steps: number;
}

/**
 * The rate of the step taken after `done` steps (0-based): during warm-up lr (done + 1) / warmup,
 * then constant lr, or for cosine lr (1 + cos(pi p)) / 2 with p the fraction of the post-warm-up
 * steps already done (the last step's rate is small but not zero).
 */
export function lrAt(s: LrSchedule, done: number): number {
  if (done < s.warmup) return (s.lr * (done + 1)) / s.warmup;
  if (s.kind === "constant") return s.lr;
  const p = Math.min(1, (done - s.warmup) / Math.max(1, s.steps - s.warmup));
  return (s.lr * (1 + Math.cos(Math.PI * p))) / 2;
}

/** Refuses a schedule that cannot be followed (naming the flags); returns it. */
export function checkLrSchedule(s: LrSchedule): LrSchedule {
  if (!(LR_SCHEDULES as readonly string[]).includes(s.kind))
    throw new UserError(`unknown --lr-schedule "${s.kind}"; choose one of: ${LR_SCHEDULES.join(", ")}`);
  if (!(s.lr > 0)) throw new UserError(`--lr must be positive, got ${s.lr}`);
  if (!Number.isInteger(s.warmup) || s.warmup < 0) throw new UserError(`--warmup must be a non-negative integer, got ${s.warmup}`);
  if (s.warmup >= s.steps)
    throw new UserError(
      `--warmup ${s.warmup} is not shorter than --steps ${s.steps}: the rate would never reach --lr; use a smaller --warmup`,
    );
  return s;
}
