// reflow / compare: 2-rectified flow distilled from a trained model, and CFM vs Reflow side by side.
import { join } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { UserError } from "../../core/errors.js";
import { parseSolver, parseTimeGrid, SOLVERS, TIME_GRIDS, type SolverName, type TimeGridName } from "../../core/solvers.js";
import { TIME_SAMPLERS, type TimeSamplerName } from "../../core/timeSamplers.js";
import { checkSample2dMemory, renderToy2d } from "../../pipelines/toy2dSampling.js";
import { loadModel, type Loaded2d, type LoadedImage } from "../../pipelines/model.js";
import { DEFAULT_TRAIN_BACKEND, TRAIN_BACKENDS, type TrainBackend } from "../../pipelines/trainers.js";
import { reflow2d, reflowRounds2d } from "../../pipelines/reflow2d.js";
import { compare2d } from "../../pipelines/compare2d.js";
import { checkSolverBudgets, compareSolvers2d } from "../../pipelines/solverCompare.js";
import { createProgress, formatSeconds, skippedField } from "../progress.js";
import {
  asFlag,
  assertWritableDir,
  checkNfeFlags,
  fraction,
  guidance,
  outDir,
  positiveInt,
  positiveNumber,
  sampleCount,
  seed,
  toyDataset,
} from "../options.js";
import { defaultImageOut } from "../../pipelines/images.js";
import { sampleImages } from "../../pipelines/imageSampling.js";
import { reflowImage } from "../../pipelines/reflowImage.js";
import type { TrainProgress } from "../../pipelines/loop.js";

function nfeList(value: string): number[] {
  const list = value.split(",").map((v) => Number(v.trim()));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new InvalidArgumentError(`must be a comma-separated list of positive integers, e.g. 1,2,4,8,100; got "${value}"`);
  }
  return list;
}

/** A comma-separated list of names, each checked by `parse`. */
function listOf<T>(parse: (name: string) => T): (value: string) => T[] {
  return asFlag((value: string) => value.split(",").map((v) => parse(v.trim())));
}

interface CompareFlags {
  dataset?: string;
  ckpts?: string[];
  names?: string[];
  nfe: number[];
  solver: SolverName;
  solvers?: SolverName[];
  timeGrid: TimeGridName[];
  shift: number;
  n: number;
  densityN: number;
  seed: number;
  out?: string;
}

interface ReflowFlags {
  teacher: string;
  pairs: number;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  timeSampler: TimeSamplerName;
  ema: number;
  warmStart: boolean;
  pairSolver: SolverName;
  pairNfe: number;
  guidance: number;
  rounds: number;
  out?: string;
  resume: boolean;
  force: boolean;
  backend: TrainBackend;
}

/** Two progress bars in sequence: teacher pairs, then reflow training. */
function reflowProgress(pairs: number) {
  const pairBar = createProgress("pairs  ", pairs);
  let bar: ReturnType<typeof createProgress> | null = null;
  return {
    onLog: (line: string) => process.stderr.write(line + "\n"),
    onPairs: (done: number) => pairBar.update(done, {}),
    onProgress: (p: TrainProgress) => {
      if (!bar) {
        pairBar.stop();
        bar = createProgress("reflow ", p.steps);
      }
      bar.update(p.step, { loss: p.smoothLoss.toFixed(4), ...skippedField(p) });
    },
    stop() {
      pairBar.stop();
      bar?.stop();
    },
  };
}

async function reflowImageCommand(flags: ReflowFlags, teacher: LoadedImage): Promise<void> {
  const out = flags.out ?? join("outputs", "reflow", defaultImageOut(teacher.config.dataset).split(/[\\/]/).pop() ?? "images");
  if (flags.out === undefined) assertWritableDir(out);
  const progress = reflowProgress(flags.pairs);
  const result = await reflowImage({
    teacher,
    teacherPath: flags.teacher,
    out,
    pairs: flags.pairs,
    steps: flags.steps,
    batchSize: flags.batchSize,
    lr: flags.lr,
    seed: flags.seed,
    emaDecay: flags.ema,
    warmStart: flags.warmStart,
    pairSolver: flags.pairSolver,
    pairNfe: flags.pairNfe,
    guidance: flags.guidance,
    resume: flags.resume,
    force: flags.force,
    backend: flags.backend,
    ...progress,
  }).finally(() => progress.stop());
  if (result.stopped) {
    // Ctrl-C: main exits 130.
    process.stdout.write(`stopped early at step ${result.step}; checkpoint ${join(out, "ckpt.safetensors")}; continue with --resume\n`);
    return;
  }
  const r = await sampleImages(result.model, {
    perClass: 8,
    nfe: 1,
    solver: "euler",
    guidance: flags.guidance,
    seed: flags.seed + 1,
    runtime: "onnx",
    frames: 2,
    out,
  });
  for (const f of r.files) process.stdout.write(`wrote ${f} (euler, NFE ${r.nfe})\n`);
}

/** The flags reflow and distill share (the student's training and its teacher pairs). */
function addReflowFlags(cmd: Command): Command {
  return cmd
    .option("--pairs <n>", "(noise, sample) pairs drawn from the teacher", positiveInt, 20000)
    .option("--steps <n>", "training steps", positiveInt, 5000)
    .option("--batch-size <n>", "pairs per step", positiveInt, 256)
    .option("--lr <rate>", "Adam learning rate", positiveNumber, 5e-4)
    .option("--seed <n>", "random seed (0 to 2^32-1)", seed, 0)
    .addOption(new Option("--time-sampler <name>", "training time distribution (reflow)").choices(TIME_SAMPLERS).default("uniform"))
    .option("--ema <decay>", "EMA decay", fraction, 0.999)
    .option("--no-warm-start", "start from fresh weights instead of the teacher's")
    .addOption(new Option("--pair-solver <name>", "solver that generates the pairs").choices(SOLVERS).default("rk4"))
    .option("--pair-nfe <n>", "network evaluations per pair", positiveInt, 100)
    .option("--resume", "continue the student checkpoint in --out", false)
    .addOption(new Option("--force", "replace a checkpoint already in --out (otherwise refused)").default(false).conflicts("resume"))
    .addOption(
      new Option("--backend <name>", "what runs the training step: ort = onnxruntime (fast), jax = jax-js on Wasm")
        .choices(TRAIN_BACKENDS)
        .default(DEFAULT_TRAIN_BACKEND),
    );
}

/** 2-D reflow (one round or k) and distillation (`studentNfe` steps): train, then draw each student. */
async function reflow2dCommand(flags: ReflowFlags, teacher: Loaded2d, rounds: number, studentNfe?: number): Promise<void> {
  const command = studentNfe === undefined ? "reflow" : "distill";
  const out = flags.out ?? join("outputs", command, teacher.config.dataset);
  if (flags.out === undefined) assertWritableDir(out);
  const started = Date.now();
  const common = {
    teacher,
    teacherPath: flags.teacher,
    out,
    pairs: flags.pairs,
    steps: flags.steps,
    batchSize: flags.batchSize,
    lr: flags.lr,
    seed: flags.seed,
    timeSampler: flags.timeSampler,
    emaDecay: flags.ema,
    warmStart: flags.warmStart,
    pairSolver: flags.pairSolver,
    pairNfe: flags.pairNfe,
    distillSteps: studentNfe,
    resume: flags.resume,
    force: flags.force,
    backend: flags.backend,
  };
  let trained: { out: string; model: Loaded2d; losses: number[] }[];
  if (rounds === 1) {
    const progress = reflowProgress(flags.pairs);
    const result = await reflow2d({ ...common, ...progress }).finally(() => progress.stop());
    if (result.stopped) {
      // Ctrl-C: main exits 130.
      process.stdout.write(`stopped early at step ${result.step}; checkpoint ${join(out, "ckpt.safetensors")}; continue with --resume\n`);
      return;
    }
    trained = [{ out, model: result.model, losses: result.losses }];
  } else {
    let progress = reflowProgress(flags.pairs);
    const result = await reflowRounds2d({
      ...common,
      rounds,
      onLog: (line) => process.stderr.write(line + "\n"),
      onRound: (r) => {
        progress.stop();
        process.stderr.write(`round ${r}/${rounds}\n`);
        progress = reflowProgress(flags.pairs);
      },
      onPairs: (done) => progress.onPairs(done),
      onProgress: (p) => progress.onProgress(p),
    }).finally(() => progress.stop());
    const last = result.rounds.at(-1);
    if (result.stopped && last) {
      process.stdout.write(
        `stopped early in round ${last.round} at step ${last.model.config.step}; checkpoint ${join(last.out, "ckpt.safetensors")}; continue with --resume\n`,
      );
      return;
    }
    trained = result.rounds.map((r) => ({ out: r.out, model: r.model, losses: r.model.losses }));
  }
  process.stdout.write(
    `${command} trained in ${formatSeconds((Date.now() - started) / 1000)}; checkpoint${trained.length > 1 ? "s" : ""} ${trained.map((t) => join(t.out, "ckpt.safetensors")).join(", ")}\n`,
  );
  const nfe = studentNfe ?? 1;
  for (const t of trained) {
    const rendered = await renderToy2d(t.model, {
      out: t.out,
      solver: "euler",
      nfe,
      n: 4000,
      seed: flags.seed + 12345,
      frames: 21,
      losses: t.losses,
    });
    for (const f of rendered.files) process.stdout.write(`wrote ${f}\n`);
    process.stdout.write(`quality${trained.length > 1 ? ` of ${t.out}` : ""} (euler, NFE ${rendered.nfe}): ${rendered.summary}\n`);
  }
}

export function registerReflowCommands(program: Command): void {
  addReflowFlags(
    program
      .command("reflow")
      .description("train a 2-rectified flow from a trained CFM checkpoint (2-D or image teacher); writes outputs/reflow/<dataset>/")
      .requiredOption("--teacher <path>", "checkpoint of the trained teacher model")
      .option(
        "--rounds <k>",
        "k-rectified flow (2-D): round r learns from round r-1's pairs; writes <out>/round1 ... round<k>",
        positiveInt,
        1,
      )
      .option("--guidance <w>", "guidance weight the teacher samples image pairs with (-20 to 20)", guidance, 2),
  )
    .option("--out <dir>", "output folder (default outputs/reflow/<dataset>)", outDir)
    .action(async (flags: ReflowFlags, cmd: Command) => {
      checkNfeFlags(cmd, flags.pairSolver, [flags.pairNfe], "pairNfe");
      const teacher = await loadModel(flags.teacher, { command: "reflow" });
      if (teacher.kind === "image") {
        if (flags.rounds > 1) throw new UserError("--rounds applies to 2-D teachers; image reflow trains one round");
        return reflowImageCommand(flags, teacher);
      }
      if (teacher.kind !== "2d")
        throw new UserError(`reflow supports '2d' and 'image' checkpoints, not '${(teacher as { kind: string }).kind}'`);
      return reflow2dCommand(flags, teacher, flags.rounds);
    });

  addReflowFlags(
    program
      .command("distill")
      .description("train a k-step student (default one step) on a 2-D teacher's (noise, sample) pairs; writes outputs/distill/<dataset>/")
      .requiredOption("--teacher <path>", "checkpoint of the teacher (a CFM or reflow model)")
      .option("--student-nfe <k>", "Euler steps the student takes from noise to data (1 = one-step model)", positiveInt, 1),
  )
    .option("--out <dir>", "output folder (default outputs/distill/<dataset>)", outDir)
    .action(async (flags: ReflowFlags & { studentNfe: number }, cmd: Command) => {
      checkNfeFlags(cmd, flags.pairSolver, [flags.pairNfe], "pairNfe");
      if (cmd.getOptionValueSource("timeSampler") === "cli")
        throw new UserError(
          "--time-sampler does not apply to distill: the student trains at its own step times (0, 1/k, ...); drop the flag",
        );
      const teacher = await loadModel(flags.teacher, { command: "distill" });
      if (teacher.kind !== "2d")
        throw new UserError(`distill supports '2d' checkpoints; ${flags.teacher} is a '${teacher.kind}' checkpoint`);
      await reflow2dCommand(flags, teacher, 1, flags.studentNfe);
    });

  program
    .command("compare")
    .description("CFM vs Reflow at low step counts: side-by-side GIF, quality table per NFE and straightness")
    .option("--dataset <name>", "use outputs/cfm/<dataset> and outputs/reflow/<dataset>", toyDataset)
    .option("--ckpts <paths...>", "explicit checkpoints to compare (two or more)")
    .option("--names <names...>", "labels for the checkpoints (default CFM Reflow)")
    .option("--nfe <list>", "step counts to compare (default 1,2,4,8,100; with --solvers 2,3,...,10)", nfeList)
    .addOption(new Option("--solver <name>", "ODE solver").choices(SOLVERS).default("euler"))
    .option(
      "--solvers <list>",
      `fixed-step solvers to compare at equal NFE, e.g. euler,heun,ab2 (writes <dataset>_solvers.md; one checkpoint is enough)`,
      listOf(parseSolver),
    )
    .option("--time-grid <list>", `where the steps fall: ${TIME_GRIDS.join(", ")} (a list with --solvers)`, listOf(parseTimeGrid), [
      "uniform",
    ] as TimeGridName[])
    .option("--shift <s>", "shift of the shifted grid (> 1: more steps near the noise)", positiveNumber, 3)
    .option("--n <n>", "samples per model (at least 2)", sampleCount, 4000)
    .option("--density-n <n>", "samples per model in the density-and-field GIF (<out>/<dataset>_<names>_fields.gif)", sampleCount, 20000)
    .option("--seed <n>", "noise seed (0 to 2^32-1)", seed, 3)
    .option("--out <dir>", "output folder (default outputs/comparisons)", outDir)
    .action(async (flags: CompareFlags, cmd: Command) => {
      const nfes = flags.nfe ?? (flags.solvers ? [2, 3, 4, 5, 6, 7, 8, 9, 10] : [1, 2, 4, 8, 100]);
      if (flags.solvers) {
        try {
          checkSolverBudgets(flags.solvers, nfes);
        } catch (err) {
          if (err instanceof UserError) cmd.error(`error: ${err.message}`, { exitCode: 2, code: "flowmatch.nfe" });
          throw err;
        }
      } else {
        checkNfeFlags(cmd, flags.solver, nfes);
        if (flags.timeGrid.length > 1) throw new UserError("--time-grid takes a list only with --solvers; pass one grid");
        if (flags.solver === "dopri5" && flags.timeGrid[0] !== "uniform")
          throw new UserError("dopri5 chooses its own steps; drop --time-grid or pick a fixed-step solver");
      }
      const out = flags.out ?? join("outputs", "comparisons");
      if (flags.out === undefined) assertWritableDir(out);
      let paths: string[];
      if (flags.ckpts) {
        if (flags.ckpts.length < 2 && !flags.solvers) throw new UserError("--ckpts needs at least two checkpoints to compare");
        paths = flags.ckpts;
      } else if (flags.dataset) {
        const ds = flags.dataset;
        paths = [join("outputs", "cfm", ds), join("outputs", "reflow", ds)];
      } else {
        throw new UserError("pass --dataset NAME (uses outputs/cfm/NAME and outputs/reflow/NAME) or --ckpts A B");
      }
      const names = flags.names ?? (paths.length === 2 ? ["CFM", "Reflow"] : paths.map((_, i) => `model${i + 1}`));
      if (names.length !== paths.length) throw new UserError(`--names has ${names.length} labels for ${paths.length} checkpoints`);
      const models = [];
      for (let i = 0; i < paths.length; i++)
        models.push({ name: names[i], loaded: await loadModel(paths[i], { kind: "2d", command: "compare" }) });
      for (const m of models) checkSample2dMemory(m.loaded.config.model, Math.max(flags.n, flags.densityN));
      const datasets = new Set(models.map((m) => m.loaded.config.dataset));
      if (datasets.size > 1)
        throw new UserError(
          `the checkpoints were trained on different datasets (${[...datasets].join(", ")}); compare models of one dataset`,
        );
      if (flags.solvers) {
        const r = await compareSolvers2d(models, {
          solvers: flags.solvers,
          grids: flags.timeGrid,
          nfes,
          n: flags.n,
          seed: flags.seed,
          out,
          shift: flags.shift,
        });
        process.stdout.write(r.markdown + "\n");
        for (const f of r.files) process.stdout.write(`wrote ${f}\n`);
        return;
      }
      const result = await compare2d(models, {
        nfes,
        n: flags.n,
        seed: flags.seed,
        out,
        solver: flags.solver,
        timeGrid: flags.timeGrid[0],
        shift: flags.shift,
        densitySamples: flags.densityN,
      });
      process.stdout.write(result.markdown + "\n");
      for (const f of result.files) process.stdout.write(`wrote ${f}\n`);
    });
}
