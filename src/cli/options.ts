// Flag parsers shared by the subcommands: each rejects bad values with a message naming the fix.
import { accessSync, constants, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { InvalidArgumentError, type Command } from "commander";
import { UserError } from "../core/errors.js";
import { stepsForNfe, type SolverName } from "../core/solvers.js";
import { parseToyDataset } from "../data/toy2d.js";
import { checkImageDatasetSpec } from "../data/images.js";
import { checkSamplesPath } from "../io/samplesFile.js";

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

/** A TCP port: 1-65535, or 0 for any free port. */
export function port(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError(`must be an integer from 1 to 65535 (0 picks a free port), got "${value}"`);
  }
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`must be a positive number, got "${value}"`);
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`must be a non-negative number, got "${value}"`);
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

/** Runs a shared validator as a flag parser: its UserError becomes a flag error (exit 2). */
export function asFlag<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (err) {
      if (err instanceof UserError) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

/** An integer in [min, max]; `why` says where the bounds come from. */
export function intInRange(min: number, max: number, why = ""): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}${why ? ` (${why})` : ""}, got "${value}"`);
    }
    return n;
  };
}

/** Seeds feed a 32-bit generator: a larger value would silently wrap onto a smaller seed. */
export const SEED_MAX = 2 ** 32 - 1;
export const seed = intInRange(0, SEED_MAX, "seeds are 32-bit; larger values would repeat smaller seeds");

/** Sample sets for pictures and metrics: the distances compare at least two points. */
export const sampleCount = intInRange(2, Number.MAX_SAFE_INTEGER, "the quality metrics need at least 2 samples");

/** GIF frames: the first is t = 0 and the last t = 1, so at least 2; more than 1000 only costs memory. */
export const frameCount = intInRange(2, 1000, "frame 1 is t=0 and the last is t=1");

/**
 * Classifier-free guidance v = v_u + w (v_c - v_u): 0 is unconditional, 1 conditional, 1-5 the usual
 * range. Beyond 20 the difference term swamps the field and samples leave the data range entirely,
 * and a huge w overflows float32 to Infinity/NaN; negative w steers away from the class.
 */
export const GUIDANCE_RANGE = [-20, 20] as const;
export function guidance(value: string): number {
  const w = Number(value);
  const [lo, hi] = GUIDANCE_RANGE;
  if (!Number.isFinite(w) || w < lo || w > hi) {
    throw new InvalidArgumentError(
      `must be a number from ${lo} to ${hi} (0 = unconditional, 1 = conditional, 1-5 typical), got "${value}"`,
    );
  }
  return w;
}

/**
 * Throws UserError unless `dir` is a folder we can write into or can create: the nearest existing
 * path must be a folder (not a file) and writable. Creates and deletes nothing.
 */
export function assertWritableDir(dir: string, label = "output folder"): void {
  let probe = resolve(dir);
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(probe).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Missing, or below a file (ENOTDIR): look at the parent, which the message will name.
      if (code === "ENOENT" || code === "ENOTDIR") {
        const parent = dirname(probe);
        if (parent === probe) break;
        probe = parent;
        continue;
      }
      throw new UserError(`${label} ${dir} cannot be checked (${code ?? String(err)}); pick another folder`);
    }
    if (!isDir) {
      const what = probe === resolve(dir) ? "is a file" : `is inside ${probe}, which is a file`;
      throw new UserError(`${label} ${dir} ${what}, not a folder; pick a folder path`);
    }
    try {
      accessSync(probe, constants.W_OK | constants.X_OK);
    } catch {
      throw new UserError(`${label} ${dir} is not writable (no write permission on ${probe}); pick a folder you can write to`);
    }
    return;
  }
}

/** --out: a folder that exists or can be created, checked before any work starts. */
export const outDir = asFlag((value: string) => {
  assertWritableDir(value, "folder");
  return value;
});

/** --dataset for the 2-D commands; a typo gets a suggestion. */
export const toyDataset = asFlag(parseToyDataset);

/** --dataset for the image commands: the name's form (folders are read when the command runs). */
/** --save-samples FILE: .safetensors or .npy, not a folder, in a folder we can write. */
export const samplesFile = asFlag((value: string) => {
  checkSamplesPath(value);
  let isDir = false;
  try {
    isDir = statSync(value).isDirectory();
  } catch {
    // Not there yet: written later.
  }
  if (isDir) throw new UserError(`--save-samples ${value} is a folder; pass a file such as ${resolve(value, "samples.npy")}`);
  assertWritableDir(dirname(resolve(value)), "--save-samples folder");
  return value;
});

export const imageDataset = asFlag((value: string) => {
  checkImageDatasetSpec(value);
  return value;
});
/**
 * Before any work: exit 2 when the solver cannot spend the NFE budget exactly (the NFE reported
 * must be the one made), and say that dopri5 ignores an explicit budget and reports its own count.
 */
export function checkNfeFlags(cmd: Command, solver: SolverName, nfes: number[], nfeOption = "nfe"): void {
  const flag = `--${nfeOption.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`;
  if (solver === "dopri5") {
    if (cmd.getOptionValueSource(nfeOption) === "cli")
      process.stderr.write(`note: dopri5 chooses its own steps; ${flag} is ignored and the evaluations made are reported\n`);
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
