// flowmatch command line: one binary, one subcommand per job. Each command module registers
// itself on the program; this file only wires them up and turns errors into exit codes.
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { UserError } from "../core/errors.js";
import { Interrupted, stopRequested } from "../core/interrupt.js";
import { handleSigint } from "./interrupt.js";
import { registerToy2dCommands } from "./commands/toy2d.js";
import { registerReflowCommands } from "./commands/reflow.js";
import { registerImageCommands } from "./commands/images.js";
import { registerLoglikCommand } from "./commands/loglik.js";
import { registerServeCommand } from "./commands/serve.js";
import { registerDeviceOption } from "./device.js";
import { registerPytorchCommands } from "./commands/pytorch.js";
import { registerDatasetsCommand } from "./commands/datasets.js";
import { registerQualityCommands } from "./commands/quality.js";

// package.json is two folders up from both src/cli/main.ts and the compiled dist/cli/main.js.
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command("flowmatch")
    .description("Flow matching in TypeScript: train, sample and inspect velocity fields that carry noise to data")
    .version(packageVersion())
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  registerDeviceOption(program);
  registerToy2dCommands(program);
  registerReflowCommands(program);
  registerImageCommands(program);
  registerLoglikCommand(program);
  registerServeCommand(program);
  registerPytorchCommands(program);
  registerDatasetsCommand(program);
  registerQualityCommands(program);
  return program;
}

/** Runs the CLI and resolves to the process exit code (0 ok, 1 bad input or failure, 2 bad flags, 130 Ctrl-C). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const removeSigint = handleSigint();
  try {
    await program.parseAsync(argv);
    // Work cut short by Ctrl-C (a training run that saved and returned) is not a success.
    return stopRequested() ? 130 : 0;
  } catch (err) {
    if (err instanceof Interrupted || stopRequested()) {
      if (!(err instanceof Interrupted)) process.stderr.write(`error after Ctrl-C: ${err instanceof Error ? err.message : String(err)}\n`);
      process.stderr.write("stopped by Ctrl-C\n");
      return 130;
    }
    if (err instanceof CommanderError) {
      // Help and version exit cleanly; commander has already printed usage errors.
      return err.exitCode === 0 || err.code === "commander.helpDisplayed" || err.code === "commander.help" ? 0 : 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    const oom = outOfMemoryMessage(err);
    if (oom) {
      process.stderr.write(`error: ${oom}\n`);
      return 1;
    }
    process.stderr.write(`flowmatch failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  } finally {
    removeSigint();
  }
}

/**
 * Last resort for allocations the up-front estimates let through: the engine's Wasm heap limit or
 * the host running out of memory becomes one line with the fix instead of a stack trace.
 */
function outOfMemoryMessage(err: unknown): string | null {
  if (!(err instanceof Error)) return null;
  const m = err.message;
  if (/memory32 limit|Out of memory|Cannot allocate Wasm memory|WebAssembly\.Memory/i.test(m)) {
    return (
      `out of engine memory (${m}); the engine's WebAssembly heap holds at most 4 GiB: ` +
      `use a smaller --batch-size, --n, --hidden or --channels`
    );
  }
  if (err instanceof RangeError && /Array buffer allocation failed|Invalid typed array length|Invalid array length/i.test(m)) {
    return `out of memory (${m}); use a smaller --batch-size, --n, --pairs, --hidden or --channels`;
  }
  return null;
}
