// export --format pytorch / import --from pytorch: move a run to PyTorch's distributed training and back.
import { Command, Option } from "commander";
import { UserError } from "../../core/errors.js";
import { exportPytorch, importPytorch } from "../../pipelines/pytorch.js";
import { assertWritableDir, positiveInt } from "../options.js";

export interface PytorchExportFlags {
  ckpt: string;
  out?: string;
  force: boolean;
  dataSize?: number;
}

/** The options `export` takes for --format pytorch (the command itself lives with the ONNX export). */
export function addPytorchExportOptions(cmd: Command): Command {
  return cmd
    .option(
      "--out <dir>",
      "--format pytorch: folder for the package (model.py, train.py, config.json, weights.safetensors, data.safetensors)",
    )
    .option("--force", "--format pytorch: replace a package already in --out", false)
    .option("--data-size <n>", "--format pytorch, 2-D runs: points of the dataset written for train.py (default 200000)", positiveInt);
}

export async function runPytorchExport(flags: PytorchExportFlags): Promise<void> {
  if (flags.out === undefined) throw new UserError("--format pytorch writes a folder: pass --out <dir>");
  assertWritableDir(flags.out);
  const { files, config } = await exportPytorch({
    ckpt: flags.ckpt,
    out: flags.out,
    force: flags.force,
    dataSize: flags.dataSize,
    log: (l) => process.stderr.write(l + "\n"),
  });
  for (const f of files) process.stdout.write(`wrote ${f}\n`);
  if (config.notContinuable) {
    process.stdout.write(
      `PyTorch package of a ${config.kind} at step ${config.step}: model.py loads it, but train.py cannot continue it (${config.notContinuable})\n`,
    );
    return;
  }
  process.stdout.write(
    `PyTorch package of a ${config.kind} at step ${config.step}; continue it with: cd ${flags.out} && torchrun --nproc_per_node 2 train.py --steps ${config.step + 1000} --out run\n` +
      "(torch < 2.0 on Python 3.11, e.g. Debian's python3-torch 1.13: add --redirects 1 --tee 1 after torchrun)\n",
  );
}

export function registerPytorchCommands(program: Command): void {
  program
    .command("import")
    .description(
      "turn a PyTorch checkpoint (a package from export --format pytorch or its train.py, or a state dict) into a flowmatch checkpoint",
    )
    .addOption(new Option("--from <format>", "source format").choices(["pytorch"]).makeOptionMandatory())
    .argument("<source>", "package folder (config.json + weights.safetensors), or a .safetensors/.pt state dict with --config")
    .requiredOption("--out <dir>", "folder for the flowmatch checkpoint (ckpt.json, ckpt.safetensors)")
    .option("--config <path>", "architecture of a bare state dict: a package folder or config.json, or a flowmatch checkpoint")
    .option("--force", "replace a checkpoint already in --out", false)
    .action(async (source: string, flags: { out: string; config?: string; force: boolean }) => {
      assertWritableDir(flags.out);
      const r = await importPytorch({ from: source, out: flags.out, config: flags.config, force: flags.force });
      process.stdout.write(
        `wrote a flowmatch '${r.config.kind}' checkpoint at step ${r.step} to ${flags.out}${r.hasOptimizer ? " (with Adam state: train2d/train-image --resume continue it)" : " (weights only: sample, compare and export it)"}\n`,
      );
    });
}
