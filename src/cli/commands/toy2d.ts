// train2d / sample2d: conditional flow matching on the 2-D toy datasets.
import { join } from "node:path";
import { Command, Option } from "commander";
import { UserError } from "../../core/errors.js";
import { TOY_DATASETS, type ToyDatasetName } from "../../data/toy2d.js";
import { PATHS, type PathName } from "../../core/paths.js";
import { TIME_SAMPLERS, type TimeSamplerName } from "../../core/timeSamplers.js";
import { SOLVERS, TIME_GRIDS, type SolverName, type TimeGridName } from "../../core/solvers.js";
import { COUPLINGS, type CouplingName } from "../../core/coupling.js";
import { LR_SCHEDULES, type LrScheduleName } from "../../core/lrSchedule.js";
import { DEFAULT_MLP, type MlpConfig } from "../../core/models/mlp.js";
import { checkTrain2dMemory, defaultWarmup, TRAIN2D_DEFAULTS, trainToy2d } from "../../pipelines/toy2d.js";
import { checkSample2dMemory, renderToy2d } from "../../pipelines/toy2dSampling.js";
import { loadModel } from "../../pipelines/model.js";
import { DEFAULT_TRAIN_BACKEND, TRAIN_BACKENDS, type TrainBackend } from "../../pipelines/trainers.js";
import { createProgress, formatSeconds, skippedField } from "../progress.js";
import { writeSamplesFiles } from "../../io/samplesFile.js";
import {
  assertWritableDir,
  checkNfeFlags,
  fraction,
  frameCount,
  nonNegativeInt,
  nonNegativeNumber,
  outDir,
  positiveInt,
  positiveNumber,
  sampleCount,
  samplesFile,
  seed,
  toyDataset,
} from "../options.js";

interface Train2dFlags {
  dataset: ToyDatasetName;
  steps: number;
  batchSize: number;
  lr: number;
  lrSchedule: LrScheduleName;
  warmup?: number;
  hidden: number;
  depth: number;
  timeEmbDim: number;
  fourierFeatures: number;
  fourierScale: number;
  seed: number;
  path: PathName;
  timeSampler: TimeSamplerName;
  coupling: CouplingName;
  reg?: number;
  bridgeSigma: number;
  ema: number;
  out?: string;
  checkpointEvery: number;
  resume: boolean;
  force: boolean;
  n: number;
  solver: SolverName;
  nfe: number;
  frames: number;
  backend: TrainBackend;
}

export function registerToy2dCommands(program: Command): void {
  program
    .command("train2d")
    .description("train conditional flow matching on a 2-D toy dataset; writes ckpt, samples.png, vector_field.gif, loss.png")
    .requiredOption("--dataset <name>", `toy dataset: ${TOY_DATASETS.join(", ")}`, toyDataset)
    .option("--steps <n>", "training steps", positiveInt, TRAIN2D_DEFAULTS.steps)
    .option("--batch-size <n>", "samples per step", positiveInt, TRAIN2D_DEFAULTS.batchSize)
    .option("--lr <rate>", "Adam learning rate (the peak of --lr-schedule)", positiveNumber, TRAIN2D_DEFAULTS.lr)
    .addOption(
      new Option("--lr-schedule <name>", "learning rate over the run: constant, or cosine decay to 0 at --steps (after --warmup)")
        .choices(LR_SCHEDULES)
        .default(TRAIN2D_DEFAULTS.lrSchedule),
    )
    .option(
      "--warmup <n>",
      `steps of linear warm-up to --lr (default ${TRAIN2D_DEFAULTS.warmup}, at most a tenth of --steps)`,
      nonNegativeInt,
    )
    .option("--hidden <n>", "MLP width", positiveInt, DEFAULT_MLP.hidden)
    .option("--depth <n>", "MLP hidden layers", positiveInt, DEFAULT_MLP.depth)
    .option("--time-emb-dim <n>", "sinusoidal time embedding size (0 = raw t)", nonNegativeInt, DEFAULT_MLP.timeEmbDim)
    .option(
      "--fourier-features <n>",
      "Fourier features of x at the MLP input: n [sin, cos] pairs (0 = none)",
      nonNegativeInt,
      DEFAULT_MLP.fourierFeatures ?? 0,
    )
    .option(
      "--fourier-scale <s>",
      "initial frequency spread of --fourier-features, in cycles per unit of x",
      positiveNumber,
      DEFAULT_MLP.fourierScale ?? 1,
    )
    .option("--seed <n>", "random seed (0 to 2^32-1)", seed, 0)
    .addOption(new Option("--path <name>", "probability path").choices(PATHS).default("straight"))
    .addOption(
      new Option("--time-sampler <name>", "training time distribution").choices(TIME_SAMPLERS).default(TRAIN2D_DEFAULTS.timeSampler),
    )
    .addOption(
      new Option("--coupling <name>", "noise-data pairing in a batch (ot = minibatch optimal transport, sinkhorn = entropic OT with --reg)")
        .choices(COUPLINGS)
        .default("independent"),
    )
    .option(
      "--reg <eps>",
      "entropic regularisation of --coupling sinkhorn, in squared-distance units (Schrodinger bridge: 2 sigma^2)",
      positiveNumber,
    )
    .option(
      "--bridge-sigma <s>",
      "Schrodinger-bridge CFM: Brownian-bridge noise s sqrt(t(1-t)) on the straight path (0 = none)",
      nonNegativeNumber,
      0,
    )
    .option("--ema <decay>", "EMA decay of the weights", fraction, TRAIN2D_DEFAULTS.emaDecay)
    .option("--out <dir>", "output folder (default outputs/cfm/<dataset>)", outDir)
    .option("--checkpoint-every <n>", "checkpoint interval in steps", positiveInt, 1000)
    .option("--resume", "continue from the checkpoint in --out", false)
    .addOption(new Option("--force", "replace a checkpoint already in --out (otherwise refused)").default(false).conflicts("resume"))
    .option("--n <n>", "samples to draw for pictures and metrics (at least 2)", sampleCount, 4000)
    .addOption(new Option("--solver <name>", "ODE solver for sampling").choices(SOLVERS).default("rk4"))
    .option("--nfe <n>", "network evaluations for sampling", positiveInt, 100)
    .option("--frames <n>", "GIF frames from t=0 to t=1 (2 to 1000)", frameCount, 41)
    .addOption(
      new Option("--backend <name>", "what runs the training step: ort = onnxruntime (fast), jax = jax-js on Wasm")
        .choices(TRAIN_BACKENDS)
        .default(DEFAULT_TRAIN_BACKEND),
    )
    .action(async (flags: Train2dFlags, cmd: Command) => {
      checkNfeFlags(cmd, flags.solver, [flags.nfe]);
      const dataset = flags.dataset;
      const out = flags.out ?? join("outputs", "cfm", dataset);
      // Everything that could fail after training is checked before it starts.
      if (flags.out === undefined) assertWritableDir(out);
      const model: MlpConfig = { dim: 2, hidden: flags.hidden, depth: flags.depth, timeEmbDim: flags.timeEmbDim };
      if (flags.fourierFeatures > 0) Object.assign(model, { fourierFeatures: flags.fourierFeatures, fourierScale: flags.fourierScale });
      checkTrain2dMemory(model, flags.batchSize, flags.backend);
      checkSample2dMemory(model, flags.n);
      const progress = createProgress("train2d", flags.steps);
      const started = Date.now();
      const result = await trainToy2d({
        dataset,
        steps: flags.steps,
        batchSize: flags.batchSize,
        lr: flags.lr,
        lrSchedule: flags.lrSchedule,
        warmup: flags.warmup ?? defaultWarmup(flags.steps),
        seed: flags.seed,
        path: flags.path,
        timeSampler: flags.timeSampler,
        coupling: flags.coupling,
        reg: flags.reg,
        bridgeSigma: flags.bridgeSigma,
        emaDecay: flags.ema,
        model,
        out,
        checkpointEvery: flags.checkpointEvery,
        resume: flags.resume,
        force: flags.force,
        backend: flags.backend,
        onLog: (line) => process.stderr.write(line + "\n"),
        onProgress: (p) => {
          progress.update(p.step, { loss: p.smoothLoss.toFixed(4), ...skippedField(p) });
        },
      }).finally(() => progress.stop());
      const secs = (Date.now() - started) / 1000;
      const trained = result.step - result.startStep;
      process.stdout.write(
        trained === 0
          ? `already at step ${result.step} of ${flags.steps}; nothing to train; checkpoint ${join(out, "ckpt.safetensors")}\n`
          : `trained ${trained} steps in ${formatSeconds(secs)} (${(trained / secs).toFixed(1)} steps/s); checkpoint ${join(out, "ckpt.safetensors")}\n`,
      );
      if (result.stopped) {
        // Ctrl-C: main exits 130.
        process.stdout.write(`stopped early at step ${result.step}; continue with --resume\n`);
        return;
      }
      const rendered = await renderToy2d(result.model, {
        out,
        solver: flags.solver,
        nfe: flags.nfe,
        n: flags.n,
        seed: flags.seed + 12345,
        frames: flags.frames,
        losses: result.losses,
      });
      for (const f of rendered.files) process.stdout.write(`wrote ${f}\n`);
      process.stdout.write(`quality (${flags.solver}, NFE ${rendered.nfe}, n=${flags.n}): ${rendered.summary}\n`);
    });

  program
    .command("sample2d")
    .description("sample a trained 2-D model; writes samples.png, vector_field.gif and metrics.json")
    .requiredOption("--ckpt <path>", "checkpoint folder, .safetensors or .json")
    .option("--n <n>", "number of samples (at least 2)", sampleCount, 4000)
    .addOption(new Option("--solver <name>", "ODE solver").choices(SOLVERS).default("rk4"))
    .option("--nfe <n>", "network evaluations (fixed-step solvers)", positiveInt, 100)
    .option("--seed <n>", "noise seed (0 to 2^32-1)", seed, 1)
    .addOption(
      new Option(
        "--time-grid <name>",
        "where a fixed-step solver's steps fall (shifted: more near the noise; edm: small steps at both ends)",
      )
        .choices(TIME_GRIDS)
        .default("uniform"),
    )
    .option("--shift <s>", "shift of the shifted grid (> 1: more steps near the noise)", positiveNumber, 3)
    .option("--frames <n>", "GIF frames (2 to 1000)", frameCount, 41)
    .option("--out <dir>", "output folder (default: the checkpoint's folder)", outDir)
    .option("--save-samples <file>", "also save the samples [n, 2]: FILE.safetensors or FILE.npy", samplesFile)
    .action(
      async (
        flags: {
          ckpt: string;
          n: number;
          solver: SolverName;
          nfe: number;
          seed: number;
          timeGrid: TimeGridName;
          shift: number;
          frames: number;
          out?: string;
          saveSamples?: string;
        },
        cmd: Command,
      ) => {
        checkNfeFlags(cmd, flags.solver, [flags.nfe]);
        if (flags.solver === "dopri5" && flags.timeGrid !== "uniform")
          throw new UserError("dopri5 chooses its own steps; drop --time-grid or pick a fixed-step solver");
        if (cmd.getOptionValueSource("shift") === "cli" && flags.timeGrid !== "shifted")
          throw new UserError("--shift applies to --time-grid shifted only");
        const loaded = await loadModel(flags.ckpt, { kind: "2d", command: "sample2d" });
        const out =
          flags.out ?? (flags.ckpt.endsWith(".json") || flags.ckpt.endsWith(".safetensors") ? join(flags.ckpt, "..") : flags.ckpt);
        if (flags.out === undefined) assertWritableDir(out);
        const rendered = await renderToy2d(loaded, {
          out,
          solver: flags.solver,
          nfe: flags.nfe,
          n: flags.n,
          seed: flags.seed,
          frames: flags.frames,
          timeGrid: flags.timeGrid,
          shift: flags.shift,
        });
        for (const f of rendered.files) process.stdout.write(`wrote ${f}\n`);
        if (flags.saveSamples) {
          const meta = {
            checkpoint: flags.ckpt,
            step: String(loaded.config.step),
            solver: flags.solver,
            nfe: String(rendered.nfe),
            seed: String(flags.seed),
            timeGrid: flags.timeGrid,
          };
          for (const f of await writeSamplesFiles(flags.saveSamples, rendered.samples, [2], null, meta))
            process.stdout.write(`wrote ${f}\n`);
        }
        const grid =
          flags.timeGrid === "uniform" ? "" : `, ${flags.timeGrid} grid${flags.timeGrid === "shifted" ? ` (shift ${flags.shift})` : ""}`;
        process.stdout.write(`quality (${flags.solver}, NFE ${rendered.nfe}${grid}, n=${flags.n}): ${rendered.summary}\n`);
      },
    );
}
