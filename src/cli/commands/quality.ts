// train-classifier / eval-image: a quality score for image models from a classifier trained here.
import { Command, InvalidArgumentError, Option } from "commander";
import { SOLVERS, type SolverName } from "../../core/solvers.js";
import { DEFAULT_CLASSIFIER } from "../../core/models/classifier.js";
import { defaultClassifierOut, evalImage, trainClassifier, type LoadedClassifier } from "../../pipelines/classifier.js";
import { loadModel } from "../../pipelines/model.js";
import { DEFAULT_TRAIN_BACKEND, TRAIN_BACKENDS, type TrainBackend } from "../../pipelines/trainers.js";
import { createProgress, formatSeconds } from "../progress.js";
import {
  assertWritableDir,
  checkNfeFlags,
  guidance,
  imageDataset,
  nonNegativeInt,
  outDir,
  positiveInt,
  positiveNumber,
  seed,
} from "../options.js";

function intList(value: string): number[] {
  const list = value.split(",").map((v) => Number(v.trim()));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1))
    throw new InvalidArgumentError(`must be a comma-separated list of positive integers, e.g. 32,64; got "${value}"`);
  return list;
}

export function registerQualityCommands(program: Command): void {
  program
    .command("train-classifier")
    .description("train a small image classifier (for eval-image's accuracy and Fréchet distance); writes a checkpoint")
    .requiredOption("--dataset <spec>", "mnist, fashion-mnist, cifar10:DIR, idx:DIR or folder:DIR", imageDataset)
    .option("--steps <n>", "training steps", positiveInt, 1500)
    .option("--batch-size <n>", "images per step", positiveInt, 64)
    .option("--lr <rate>", "Adam learning rate", positiveNumber, 2e-3)
    .option("--channels <list>", "widths per level (each halves the resolution)", intList, DEFAULT_CLASSIFIER.channels)
    .option("--groups <n>", "GroupNorm groups", positiveInt, DEFAULT_CLASSIFIER.groups)
    .option(
      "--feature-dim <n>",
      "size of the features eval-image compares (the layer before the logits)",
      positiveInt,
      DEFAULT_CLASSIFIER.featureDim,
    )
    .option("--seed <n>", "random seed (0 to 2^32-1)", seed, 0)
    .option("--limit <n>", "use only the first N training images (0 = all)", nonNegativeInt, 0)
    .option("--horizontal-flip", "augment: mirror each training image left-right with probability 1/2", false)
    .option(
      "--rotations",
      "learn features by telling each image's rotation (0/90/180/270°) instead of its class: for data with one class",
      false,
    )
    .option("--grey", "folder:DIR: convert colour images to grey (as train-image --grey)", false)
    .option("--resize <n>", "folder:DIR: scale images so the shorter side is N, then crop the centre N x N", positiveInt)
    .option("--center-crop <n>", "folder:DIR: crop the centre N x N of each image", positiveInt)
    .option("--out <dir>", "output folder (default outputs/classifier/<dataset>)", outDir)
    .option("--checkpoint-every <n>", "checkpoint interval in steps", positiveInt, 250)
    .option("--resume", "continue from the checkpoint in --out", false)
    .addOption(new Option("--force", "replace a checkpoint already in --out (otherwise refused)").default(false).conflicts("resume"))
    .addOption(new Option("--backend <name>", "what runs the training step").choices(TRAIN_BACKENDS).default(DEFAULT_TRAIN_BACKEND))
    .action(
      async (flags: {
        dataset: string;
        steps: number;
        batchSize: number;
        lr: number;
        channels: number[];
        groups: number;
        featureDim: number;
        seed: number;
        limit: number;
        horizontalFlip: boolean;
        rotations: boolean;
        grey: boolean;
        resize?: number;
        centerCrop?: number;
        out?: string;
        checkpointEvery: number;
        resume: boolean;
        force: boolean;
        backend: TrainBackend;
      }) => {
        const out = flags.out ?? defaultClassifierOut(flags.dataset);
        if (flags.out === undefined) assertWritableDir(out);
        const progress = createProgress("train-classifier", flags.steps);
        const started = Date.now();
        const r = await trainClassifier({
          dataset: flags.dataset,
          steps: flags.steps,
          batchSize: flags.batchSize,
          lr: flags.lr,
          seed: flags.seed,
          limit: flags.limit,
          horizontalFlip: flags.horizontalFlip,
          rotations: flags.rotations,
          grey: flags.grey,
          resize: flags.resize,
          centerCrop: flags.centerCrop,
          model: { channels: flags.channels, groups: flags.groups, featureDim: flags.featureDim },
          out,
          checkpointEvery: flags.checkpointEvery,
          resume: flags.resume,
          force: flags.force,
          backend: flags.backend,
          onLog: (line) => process.stderr.write(line + "\n"),
          onProgress: (p) => progress.update(p.step, { "cross-entropy": p.smoothLoss.toFixed(4) }),
        }).finally(() => progress.stop());
        process.stdout.write(
          `trained to step ${r.step} in ${formatSeconds((Date.now() - started) / 1000)}; classifier checkpoint ${r.out}\n`,
        );
      },
    );

  program
    .command("eval-image")
    .description(
      "score an image model with a classifier: class accuracy of its samples, Fréchet distance of features to real images, and that distance between two real sets",
    )
    .requiredOption("--ckpt <path>", "image model checkpoint")
    .requiredOption("--classifier <path>", "classifier checkpoint (train-classifier) of the same dataset")
    .option("--per-class <n>", "samples per class", positiveInt, 100)
    .option("--nfe <n>", "network evaluations", positiveInt, 20)
    .addOption(new Option("--solver <name>", "ODE solver").choices(SOLVERS).default("heun"))
    .option("--guidance <w>", "classifier-free guidance weight", guidance, 2)
    .addOption(new Option("--runtime <name>", "inference runtime").choices(["engine", "onnx"]).default("onnx"))
    .option("--seed <n>", "noise seed", seed, 1)
    .option("--out <dir>", "also write the scored samples' samples.png and trajectory.gif to this folder (default: no pictures)", outDir)
    .action(
      async (
        flags: {
          ckpt: string;
          classifier: string;
          perClass: number;
          nfe: number;
          solver: SolverName;
          guidance: number;
          runtime: "engine" | "onnx";
          seed: number;
          out?: string;
        },
        cmd: Command,
      ) => {
        checkNfeFlags(cmd, flags.solver, [flags.nfe]);
        const model = await loadModel(flags.ckpt, { kind: "image", command: "eval-image" });
        const classifier = (await loadModel(flags.classifier, {
          kind: "classifier",
          command: "eval-image --classifier",
        })) as unknown as LoadedClassifier;
        const r = await evalImage(model, classifier, {
          perClass: flags.perClass,
          nfe: flags.nfe,
          solver: flags.solver,
          guidance: flags.guidance,
          seed: flags.seed,
          runtime: flags.runtime,
          frames: 2,
          out: flags.out,
        });
        process.stdout.write(
          [
            `${r.n} samples (${flags.perClass} per class), ${flags.solver} NFE ${r.nfe}, guidance ${flags.guidance}, seed ${flags.seed}`,
            r.rotations
              ? `seen as upright by the rotation classifier: samples ${(100 * r.accuracy).toFixed(1)}%, real test images ${(100 * r.realAccuracy).toFixed(1)}%`
              : `class accuracy of samples: ${(100 * r.accuracy).toFixed(1)}% (the classifier on real test images: ${(100 * r.realAccuracy).toFixed(1)}%)`,
            `Fréchet distance of classifier features, samples vs real: ${r.frechet.toFixed(4)}`,
            `floor (two real sets: ${r.realSets}): ${r.floor.toFixed(4)}`,
          ].join("\n") + "\n",
        );
      },
    );
}
