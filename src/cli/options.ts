// Flag parsers shared by the subcommands: each rejects bad values with a message naming the fix.
import { InvalidArgumentError, type Command } from "commander";
import { UserError } from "../core/errors.js";
import { stepsForNfe, type SolverName } from "../core/solvers.js";

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`must be a positive integer, got "${value}"`);
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`must be a non-negative integer, got "${value}"`);
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`must be a positive number, got "${value}"`);
  return n;
}

export function number(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`must be a number, got "${value}"`);
  return n;
}

export function fraction(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError(`must be a number in [0, 1), got "${value}"`);
  return n;
}

export function oneOf<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`must be one of ${choices.join(", ")}; got "${value}"`);
    }
    return value as T;
  };
}

/**
 * Before any work: exit 2 when the solver cannot spend the NFE budget exactly (the NFE reported
 * must be the one made), and say that dopri5 ignores an explicit budget and reports its own count.
 */
export function checkNfeFlags(cmd: Command, solver: SolverName, nfes: number[], nfeOption = "nfe"): void {
  const flag = `--${nfeOption.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`;
  if (solver === "dopri5") {
    if (cmd.getOptionValueSource(nfeOption) === "cli") process.stderr.write(`note: dopri5 chooses its own steps; ${flag} is ignored and the evaluations made are reported\n`);
    return;
  }
  for (const nfe of nfes) {
    try {
      stepsForNfe(solver, nfe, flag);
    } catch (err) {
      if (err instanceof UserError) cmd.error(`error: ${err.message}`, { exitCode: 2, code: "flowmatch.nfe" });
      throw err;
    }
  }
}
