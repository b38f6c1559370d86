// train-image / sample-image / export: class-conditional flow matching on images.
import { existsSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { PATHS, type PathName } from "../../core/paths.js";
import { TIME_SAMPLERS, type TimeSamplerName } from "../../core/timeSamplers.js";
import { SOLVERS, type SolverName } from "../../core/solvers.js";
import { UserError } from "../../core/errors.js";
import { checkpointFiles } from "../../io/checkpoint.js";
import { defaultImageOut, IMAGE_COUPLINGS, IMAGE_TRAIN_DEFAULTS, trainImage, type ImageCoupling } from "../../pipelines/images.js";
import { LR_SCHEDULES, type LrScheduleName } from "../../core/lrSchedule.js";
import { exportOnnx, sampleImages } from "../../pipelines/imageSampling.js";
import { loadModel } from "../../pipelines/model.js";
import { DEFAULT_UNET } from "../../core/models/unet.js";
import { DEFAULT_TRAIN_BACKEND, TRAIN_BACKENDS, type TrainBackend } from "../../pipelines/trainers.js";
import { exportMlpOnnx } from "../../io/onnx.js";
import { writeFileAtomic } from "../../io/atomic.js";
import { writeSamplesFiles } from "../../io/samplesFile.js";
import { createProgress, formatSeconds, skippedField } from "../progress.js";
import { stopRequested } from "../../core/interrupt.js";
import { addPytorchExportOptions, runPytorchExport, type PytorchExportFlags } from "./pytorch.js";
import {
  assertWritableDir,
  checkNfeFlags,
  fraction,
  frameCount,
  guidance,
  imageDataset,
  nonNegativeInt,
  outDir,
  positiveInt,
  positiveNumber,
  samplesFile,
  seed,
} from "../options.js";

/** The file's real path, or (not there yet) its real folder's plus its name. */
function realPathOf(path: string): string {
  if (existsSync(path)) return realpathSync(path);
  return existsSync(dirname(path)) ? join(realpathSync(dirname(path)), basename(path)) : path;
}

/** Refuse an --onnx output that would replace one of the command's inputs, or that is a folder. */
function assertNotInput(out: string, inputs: string[]): void {
  if (existsSync(out) && statSync(out).isDirectory())
    throw new UserError(`--onnx ${out} is a folder; pass a file path such as ${join(out, "model.onnx")}`);
  const real = realPathOf(out);
  const hit = inputs.find((p) => realPathOf(p) === real);
  if (hit)
    throw new UserError(
      `--onnx ${out} is the checkpoint being exported (${hit}); pass another file, such as ${join(dirname(out), "model.onnx")}`,
    );
}

function intList(value: string): number[] {
  const list = value.split(",").map((v) => Number(v.trim()));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new InvalidArgumentError(`must be a comma-separated list of positive integers, e.g. 32,64,64; got "${value}"`);
  }
  return list;
}

function sizeList(value: string): number[] {
  const list = value.split(",").map((v) => Number(v.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1))
    throw new InvalidArgumentError(`must be feature-map sizes in pixels like 16 or 8,16; got "${value}"`);
  return list;
}

function classList(value: string): number[] {
  const list = value.split(",").map((v) => Number(v.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 0)) throw new InvalidArgumentError(`must be class indices like 0,3,7; got "${value}"`);
  return list;
}

interface TrainImageFlags {
  dataset: string;
  steps: number;
  batchSize: number;
  lr: number;
  lrSchedule: LrScheduleName;
  warmup: number;
  channels: number[];
  resBlocks: number;
  attention: number[];
  attentionHeads: number;
  timeEmbDim: number;
  groups: number;
  ema: number;
  labelDropout: number;
  seed: number;
  path: PathName;
  timeSampler: TimeSamplerName;
  limit: number;
  grey: boolean;
  resize?: number;
  centerCrop?: number;
  horizontalFlip: boolean;
  out?: string;
  checkpointEvery: number;
  resume: boolean;
  force: boolean;
  perClass: number;
  nfe: number;
  solver: SolverName;
  guidance: number;
  timeLimit?: number;
  backend: TrainBackend;
  coupling: ImageCoupling;
}

export function registerImageCommands(program: Command): void {
  program
    .command("train-image")
    .description("train a class-conditional UNet velocity field on images; writes ckpt, loss.png, samples.png, trajectory.gif")
    .requiredOption(
      "--dataset <spec>",
      "mnist, fashion-mnist, idx:DIR (IDX files) or folder:DIR (PNG files, one subfolder per class)",
      imageDataset,
    )
    .option("--steps <n>", "training steps", positiveInt, IMAGE_TRAIN_DEFAULTS.steps)
    .option("--batch-size <n>", "images per step", positiveInt, IMAGE_TRAIN_DEFAULTS.batchSize)
    .option("--lr <rate>", "Adam learning rate (the peak of --lr-schedule)", positiveNumber, IMAGE_TRAIN_DEFAULTS.lr)
    .addOption(
      new Option("--lr-schedule <name>", "learning rate over the run: constant, or cosine decay to 0 at --steps (after --warmup)")
        .choices(LR_SCHEDULES)
        .default(IMAGE_TRAIN_DEFAULTS.lrSchedule),
    )
    .option("--warmup <n>", "steps of linear warm-up to --lr", nonNegativeInt, IMAGE_TRAIN_DEFAULTS.warmup)
    .option("--channels <list>", "UNet widths per resolution", intList, DEFAULT_UNET.channels)
    .option("--res-blocks <n>", "residual blocks per resolution level", positiveInt, 1)
    .option(
      "--attention <list>",
      "self-attention after the res blocks at these feature-map sizes, e.g. 16 or 8,16 (default none)",
      sizeList,
      [],
    )
    .option("--attention-heads <n>", "attention heads (must divide the channels at those sizes)", positiveInt, 1)
    .option("--time-emb-dim <n>", "time/class embedding size", positiveInt, DEFAULT_UNET.timeEmbDim)
    .option("--groups <n>", "GroupNorm groups", positiveInt, DEFAULT_UNET.groups)
    .option("--ema <decay>", "EMA decay of the weights", fraction, IMAGE_TRAIN_DEFAULTS.emaDecay)
    .option(
      "--label-dropout <p>",
      "probability of training a sample unconditionally (for guidance)",
      fraction,
      IMAGE_TRAIN_DEFAULTS.labelDropout,
    )
    .option("--seed <n>", "random seed (0 to 2^32-1)", seed, 0)
    .addOption(new Option("--path <name>", "probability path").choices(PATHS).default("straight"))
    .addOption(
      new Option("--time-sampler <name>", "training time distribution").choices(TIME_SAMPLERS).default(IMAGE_TRAIN_DEFAULTS.timeSampler),
    )
    .addOption(
      new Option("--coupling <name>", "noise-image pairing in a batch (ot = exact OT within each class, so each class keeps N(0, I) noise)")
        .choices(IMAGE_COUPLINGS)
        .default("independent"),
    )
    .option("--limit <n>", "use only the first N training images (0 = all)", nonNegativeInt, 0)
    .option("--grey", "folder:DIR: convert colour images to grey (default: grey only when every image is)", false)
    .option("--resize <n>", "folder:DIR: scale images so the shorter side is N, then crop the centre N x N", positiveInt)
    .option("--center-crop <n>", "folder:DIR: crop the centre N x N of each image", positiveInt)
    .option("--horizontal-flip", "augment: mirror each training image left-right with probability 1/2 (seeded)", false)
    .option("--out <dir>", "output folder (default outputs/cfm/<dataset>)", outDir)
    .option("--checkpoint-every <n>", "checkpoint interval in steps", positiveInt, 250)
    .option("--resume", "continue from the checkpoint in --out", false)
    .addOption(new Option("--force", "replace a checkpoint already in --out (otherwise refused)").default(false).conflicts("resume"))
    .option("--time-limit <minutes>", "stop training after this many minutes (checkpoint, then sample as usual)", positiveNumber)
    .option("--per-class <n>", "samples per class in the final grid", positiveInt, 8)
    .option("--nfe <n>", "network evaluations for the final samples", positiveInt, 20)
    .addOption(new Option("--solver <name>", "ODE solver for the final samples").choices(SOLVERS).default("heun"))
    .option("--guidance <w>", "classifier-free guidance weight for the final samples (-20 to 20)", guidance, 2)
    .addOption(
      new Option("--backend <name>", "what runs the training step: ort = onnxruntime (fast), jax = jax-js on Wasm")
        .choices(TRAIN_BACKENDS)
        .default(DEFAULT_TRAIN_BACKEND),
    )
    .action(async (flags: TrainImageFlags, cmd: Command) => {
      checkNfeFlags(cmd, flags.solver, [flags.nfe]);
      if (flags.out === undefined) assertWritableDir(defaultImageOut(flags.dataset));
      const progress = createProgress("train-image", flags.steps);
      const started = Date.now();
      let firstStep = -1;
      const deadline = flags.timeLimit ? started + flags.timeLimit * 60_000 : Infinity;
      let timeUp = false;
      const result = await trainImage({
        dataset: flags.dataset,
        steps: flags.steps,
        batchSize: flags.batchSize,
        lr: flags.lr,
        lrSchedule: flags.lrSchedule,
        warmup: flags.warmup,
        seed: flags.seed,
        path: flags.path,
        timeSampler: flags.timeSampler,
        emaDecay: flags.ema,
        labelDropout: flags.labelDropout,
        limit: flags.limit,
        grey: flags.grey,
        resize: flags.resize,
        centerCrop: flags.centerCrop,
        horizontalFlip: flags.horizontalFlip,
        coupling: flags.coupling,
        model: {
          channels: flags.channels,
          timeEmbDim: flags.timeEmbDim,
          groups: flags.groups,
          resBlocks: flags.resBlocks,
          attention: flags.attention,
          attentionHeads: flags.attentionHeads,
        },
        out: flags.out,
        checkpointEvery: flags.checkpointEvery,
        resume: flags.resume,
        force: flags.force,
        finalSamples: { perClass: flags.perClass, guidance: flags.guidance },
        backend: flags.backend,
        onLog: (line) => process.stderr.write(line + "\n"),
        onProgress: (p) => {
          if (firstStep < 0) firstStep = p.step - 1;
          const imgPerSec = ((p.step - firstStep) * flags.batchSize) / Math.max((Date.now() - started) / 1000, 1e-3);
          progress.update(p.step, { loss: p.smoothLoss.toFixed(4), "img/s": imgPerSec.toFixed(1), ...skippedField(p) });
        },
        shouldStop: () => {
          timeUp = Date.now() > deadline;
          return timeUp;
        },
      }).finally(() => progress.stop());
      const secs = (Date.now() - started) / 1000;
      process.stdout.write(
        result.step === result.startStep
          ? `already at step ${result.step} of ${flags.steps}; nothing to train; checkpoint ${join(result.out, "ckpt.safetensors")}\n`
          : `trained to step ${result.step} in ${formatSeconds(secs)}; checkpoint ${join(result.out, "ckpt.safetensors")}\n`,
      );
      if (result.stopped && stopRequested()) {
        // Ctrl-C: main exits 130.
        process.stdout.write(`stopped early at step ${result.step}; continue with --resume\n`);
        return;
      } else if (result.stopped) {
        process.stdout.write(`time limit of ${flags.timeLimit} min reached at step ${result.step}; continue later with --resume\n`);
      }
      const s = await sampleImages(result.model, {
        perClass: flags.perClass,
        nfe: flags.nfe,
        solver: flags.solver,
        guidance: flags.guidance,
        seed: flags.seed + 1,
        runtime: "engine",
        frames: 11,
        out: result.out,
      });
      for (const f of s.files) process.stdout.write(`wrote ${f}\n`);
    });

  program
    .command("sample-image")
    .description("sample a trained image model: samples.png (one row per class) and trajectory.gif")
    .requiredOption("--ckpt <path>", "image checkpoint folder, .safetensors or .json")
    .option("--per-class <n>", "samples per class", positiveInt, 8)
    .option("--class <list>", "only these classes, e.g. 3,7", classList)
    .option("--nfe <n>", "network evaluations", positiveInt, 20)
    .addOption(new Option("--solver <name>", "ODE solver").choices(SOLVERS).default("heun"))
    .option("--guidance <w>", "classifier-free guidance weight (1 = conditional, 0 = unconditional; -20 to 20)", guidance, 2)
    .addOption(new Option("--runtime <name>", "inference runtime").choices(["engine", "onnx"]).default("onnx"))
    .option("--seed <n>", "noise seed (0 to 2^32-1)", seed, 1)
    .option("--frames <n>", "trajectory GIF frames (2 to 1000)", frameCount, 11)
    .option("--out <dir>", "output folder (default: the checkpoint's folder)", outDir)
    .option(
      "--save-samples <file>",
      "also save the samples [n, H, W, C] in [-1, 1] and their labels: FILE.safetensors, or FILE.npy (labels in FILE.labels.npy)",
      samplesFile,
    )
    .action(
      async (
        flags: {
          ckpt: string;
          perClass: number;
          class?: number[];
          nfe: number;
          solver: SolverName;
          guidance: number;
          runtime: "engine" | "onnx";
          seed: number;
          frames: number;
          out?: string;
          saveSamples?: string;
        },
        cmd: Command,
      ) => {
        checkNfeFlags(cmd, flags.solver, [flags.nfe]);
        const loaded = await loadModel(flags.ckpt, { kind: "image", command: "sample-image" });
        const out = flags.out ?? (/\.(json|safetensors)$/.test(flags.ckpt) ? dirname(flags.ckpt) : flags.ckpt);
        if (flags.out === undefined) assertWritableDir(out);
        const r = await sampleImages(loaded, {
          perClass: flags.perClass,
          classes: flags.class,
          nfe: flags.nfe,
          solver: flags.solver,
          guidance: flags.guidance,
          seed: flags.seed,
          runtime: flags.runtime,
          frames: flags.frames,
          out,
        });
        const n = r.images.length / (loaded.config.model.height * loaded.config.model.width * loaded.config.model.inChannels);
        process.stdout.write(
          `sampled ${n} images with ${flags.solver} NFE ${r.nfe} on ${flags.runtime} in ${r.seconds.toFixed(2)} s (${(n / r.seconds).toFixed(1)} images/s)\n`,
        );
        for (const f of r.files) process.stdout.write(`wrote ${f}\n`);
        if (flags.saveSamples) {
          const m = loaded.config.model;
          const meta = {
            checkpoint: flags.ckpt,
            step: String(loaded.config.step),
            solver: flags.solver,
            nfe: String(r.nfe),
            guidance: String(flags.guidance),
            seed: String(flags.seed),
            range: "[-1, 1]",
            layout: "NHWC",
          };
          for (const f of await writeSamplesFiles(flags.saveSamples, r.images, [m.height, m.width, m.inChannels], r.labels, meta))
            process.stdout.write(`wrote ${f}\n`);
        }
      },
    );

  const exportCommand = program
    .command("export")
    .description("export a checkpoint's velocity network (EMA weights) as ONNX, or the whole run as a PyTorch package (--format pytorch)")
    .requiredOption("--ckpt <path>", "checkpoint folder, .safetensors or .json")
    .option("--onnx <file>", "output .onnx file")
    .option("--guided", "image models: add a guidance-weight input w (float32 scalar); v = v_uncond + w (v_cond - v_uncond) in one graph")
    .addOption(
      new Option("--format <name>", "onnx, or pytorch: a package that continues training under torchrun")
        .choices(["onnx", "pytorch"])
        .default("onnx"),
    );
  addPytorchExportOptions(exportCommand).action(
    async (flags: PytorchExportFlags & { onnx?: string; guided?: boolean; format: "onnx" | "pytorch" }, cmd: Command) => {
      if (flags.format === "pytorch") return runPytorchExport(flags);
      if (flags.onnx === undefined)
        return cmd.error("error: required option '--onnx <file>' not specified (or pass --format pytorch --out <dir>)", { exitCode: 2 });
      const { weightsPath, configPath } = await checkpointFiles(flags.ckpt);
      assertNotInput(flags.onnx, [weightsPath, configPath]);
      const loaded = await loadModel(flags.ckpt, { command: "export" });
      if (loaded.kind === "image") {
        await exportOnnx(loaded, flags.onnx, { guided: flags.guided });
      } else if (loaded.kind === "2d") {
        if (flags.guided) throw new UserError("--guided needs a class-conditional image model; 2-D models have no labels: drop --guided");
        const data: Record<string, Float32Array> = {};
        for (const [k, v] of Object.entries(loaded.ema)) data[k] = v.data;
        await writeFileAtomic(flags.onnx, await exportMlpOnnx(data, loaded.config.model));
      } else {
        throw new UserError(`cannot export a '${(loaded as { kind: string }).kind}' checkpoint; export supports '2d' and 'image' models`);
      }
      process.stdout.write(`wrote ${flags.onnx}\n`);
    },
  );
}
