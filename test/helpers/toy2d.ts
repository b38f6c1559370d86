// 2-D models trained through the pipeline (no CLI) for tests: the settings every such test shares,
// and the checkerboard teacher the reflow tests distil from.
import { join } from "node:path";
import { trainToy2d, type Toy2dTrainOptions, type Toy2dTrainResult } from "../../src/pipelines/toy2d.js";
import { loadModel, type Loaded2d } from "../../src/pipelines/model.js";

/**
 * trainToy2d with the tests' usual settings (batches of 256, lr 2e-3, seed 0, straight path, uniform
 * times, EMA 0.99, independent coupling, one checkpoint at the end) unless `opts` says otherwise.
 */
export function trainToy(
  opts: Pick<Toy2dTrainOptions, "dataset" | "steps" | "model" | "out"> & Partial<Toy2dTrainOptions>,
): Promise<Toy2dTrainResult> {
  return trainToy2d({
    batchSize: 256,
    lr: 2e-3,
    seed: 0,
    path: "straight",
    timeSampler: "uniform",
    emaDecay: 0.99,
    coupling: "independent",
    checkpointEvery: 100000,
    resume: false,
    ...opts,
  });
}

/** Trains an MLP (depth 2, time embedding 16) of `hidden` units on checkerboard for `steps` steps into dir/cfm; returns it as loaded. */
export async function trainCheckerboardTeacher(
  dir: string,
  hidden: number,
  steps: number,
): Promise<{ teacher: Loaded2d; teacherDir: string }> {
  const teacherDir = join(dir, "cfm");
  await trainToy({ dataset: "checkerboard", steps, model: { dim: 2, hidden, depth: 2, timeEmbDim: 16 }, out: teacherDir });
  return { teacher: await loadModel(teacherDir, { kind: "2d" }), teacherDir };
}
