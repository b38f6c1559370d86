// loglik: log-likelihood of data under a trained flow (exact divergence for 2-D, Hutchinson for images).
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { Command, Option } from "commander";
import { UserError } from "../../core/errors.js";
import { Rng } from "../../core/rng.js";
import { SOLVERS, type SolverName } from "../../core/solvers.js";
import type { ProbeKind } from "../../core/likelihood.js";
import { sampleToy } from "../../data/toy2d.js";
import { loadImageDataset, recordedImageTransforms } from "../../data/images.js";
import { loadModel } from "../../pipelines/model.js";
import { bitsPerDimImages, logLikelihood2d, renderDensity2d, sampleWithLogDensity2d } from "../../pipelines/loglik.js";
import { assertWritableDir, outDir, positiveInt, positiveNumber, sampleCount, seed } from "../options.js";

/** Rows of "x,y" (a header line and blank lines are skipped). */
async function readCsv2d(path: string): Promise<Float32Array> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new UserError(`cannot read --data ${path}; pass "fresh" or a CSV file of x,y rows`);
  }
  const values: number[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "") return;
    const parts = line
      .split(/[,;\s]+/)
      .filter(Boolean)
      .map(Number);
    if (parts.some((v) => !Number.isFinite(v))) {
      if (i === 0) return; // header
      throw new UserError(`${path}:${i + 1}: expected two numbers "x,y", got "${line}"`);
    }
    if (parts.length !== 2) throw new UserError(`${path}:${i + 1}: expected two numbers "x,y", got ${parts.length}`);
    values.push(...parts);
  });
  if (values.length === 0) throw new UserError(`${path} has no data rows`);
  return Float32Array.from(values);
}

interface LoglikFlags {
  ckpt: string;
  data: string;
  n: number;
  solver: SolverName;
  rtol: number;
  atol: number;
  probes?: number;
  probeKind: ProbeKind;
  seed: number;
  runtime: "engine" | "onnx";
  out?: string;
  density: boolean;
  sample: boolean;
}

export function registerLoglikCommand(program: Command): void {
  program
    .command("loglik")
    .description("log-likelihood of data under a trained flow: nats for 2-D models (+ density.png), bits/dim for images")
    .requiredOption("--ckpt <path>", "checkpoint folder, .safetensors or .json")
    .option("--data <source>", '"fresh" (new samples of the training data; the test split for images) or a CSV of x,y rows (2-D)', "fresh")
    .option("--n <n>", "number of points or images (at least 2, for the standard error)", sampleCount, 1000)
    .addOption(new Option("--solver <name>", "ODE solver").choices(SOLVERS).default("dopri5"))
    .option("--rtol <tol>", "relative tolerance (dopri5)", positiveNumber, 1e-5)
    .option("--atol <tol>", "absolute tolerance (dopri5)", positiveNumber, 1e-5)
    .option(
      "--probes <n>",
      "Hutchinson probes per image (image models; default 4) or per grid point of density.png's Hutchinson panel (2-D; default 1)",
      positiveInt,
    )
    .addOption(new Option("--probe-kind <kind>", "Hutchinson probe distribution").choices(["rademacher", "gaussian"]).default("rademacher"))
    .option("--seed <n>", "seed for fresh data and probes (0 to 2^32-1)", seed, 0)
    .addOption(
      new Option("--runtime <name>", "what evaluates the network and its divergence: engine (jax-js) or onnx (its trace on onnxruntime)")
        .choices(["engine", "onnx"])
        .default("engine"),
    )
    .option("--no-density", "skip density.png (2-D models)")
    .option(
      "--sample",
      "draw --n new samples with their log-density in one forward pass; writes samples_logp.csv (x,y,logp) to --out (2-D models)",
      false,
    )
    .option("--out <dir>", "where density.png goes (default: the checkpoint's folder)", outDir)
    .action(async (flags: LoglikFlags) => {
      const loaded = await loadModel(flags.ckpt, { command: "loglik" });
      const out = flags.out ?? (/\.(json|safetensors)$/.test(flags.ckpt) ? dirname(flags.ckpt) : flags.ckpt);
      if (flags.out === undefined && loaded.kind === "2d" && flags.density) assertWritableDir(out);
      const opts = { solver: flags.solver, rtol: flags.rtol, atol: flags.atol, runtime: flags.runtime };
      if (flags.sample) {
        if (loaded.kind !== "2d")
          throw new UserError("--sample is for 2-D models (their divergence is exact); image models take --data fresh");
        if (flags.data !== "fresh")
          throw new UserError("--sample draws new points from the model; drop --data (or drop --sample to score your points)");
        if (flags.out === undefined) assertWritableDir(out);
        const r = await sampleWithLogDensity2d(loaded, { ...opts, n: flags.n, seed: flags.seed, out });
        process.stdout.write(
          `${flags.n} samples with their log-density in one pass: mean log p ${r.mean.toFixed(4)} ± ${r.stderr.toFixed(4)} nats (exact divergence, ${flags.solver}, ${r.nfe} evaluations, ${r.seconds.toFixed(1)} s)\nwrote ${r.file}\n`,
        );
        return;
      }
      if (loaded.kind === "2d") {
        const x =
          flags.data === "fresh" ? sampleToy(loaded.config.dataset, flags.n, new Rng(flags.seed + 99991)) : await readCsv2d(flags.data);
        const r = await logLikelihood2d(loaded, x, opts);
        const n = x.length / 2;
        process.stdout.write(
          `log-likelihood of ${n} ${flags.data === "fresh" ? `fresh ${loaded.config.dataset}` : flags.data} points: ${r.mean.toFixed(4)} ± ${r.stderr.toFixed(4)} nats (exact divergence, ${flags.solver}, ${r.nfe} evaluations, ${r.seconds.toFixed(1)} s)\n`,
        );
        if (flags.density) {
          // The picture's Hutchinson panel: one probe unless --probes is given (the estimator's noise is what it shows).
          const probes = flags.probes ?? 1;
          const d = await renderDensity2d(loaded, out, { ...opts, probes, probe: flags.probeKind, seed: flags.seed });
          process.stdout.write(
            `wrote ${d.file} (exact divergence beside Hutchinson with ${d.probes} probe${d.probes === 1 ? "" : "s"}: mean |difference in log p| ${d.meanAbsDiff.toFixed(3)} nats on the grid)\n`,
          );
        }
      } else if (loaded.kind === "image") {
        if (flags.data !== "fresh")
          throw new UserError("image models take --data fresh (the dataset's test split); CSV input is for 2-D models");
        const ds = await loadImageDataset(loaded.config.dataset, {
          split: "test",
          limit: flags.n,
          ...recordedImageTransforms(loaded.config.train),
        });
        const probes = flags.probes ?? 4;
        const r = await bitsPerDimImages(loaded, ds.images, ds.labels, {
          ...opts,
          rtol: flags.rtol,
          atol: flags.atol,
          probes,
          probe: flags.probeKind,
          seed: flags.seed,
        });
        const probeNote = probes >= 2 ? `, of which ±${r.probeStderr.toFixed(3)} from the probes` : "";
        process.stdout.write(
          `${ds.n} ${loaded.config.dataset} test images: ${r.bpd.toFixed(3)} ± ${r.bpdStderr.toFixed(3)} bits/dim${probeNote} (log p ${r.mean.toFixed(1)} nats; Hutchinson with ${probes} ${flags.probeKind} probes; uniform dequantisation, x = 2(k+u)/256 - 1; ${r.nfe} evaluations, ${r.seconds.toFixed(1)} s)\n`,
        );
      } else {
        throw new UserError(`loglik does not support '${(loaded as { kind: string }).kind}' checkpoints`);
      }
    });
}
