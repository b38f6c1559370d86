// Shared by the browser playground tests (web.test.ts on Wasm, web-webgpu.test.ts on WebGPU):
// checkpoints written the way the CLI writes them, and reading the page's state and canvases.
import type { Page } from "playwright-core";
import type { PlaygroundState } from "../../src/web/main.js";
import { initEngine } from "../../src/engine/index.js";
import { Rng } from "../../src/core/rng.js";
import { DEFAULT_ADAM } from "../../src/core/optim.js";
import { FlowTrainer } from "../../src/core/train.js";
import { pathCoefficients, straightScheduler } from "../../src/core/paths.js";
import { initMlp, mlpModel, type MlpConfig } from "../../src/core/models/mlp.js";
import { initUnet, unetParamShapes, type UnetConfig } from "../../src/core/models/unet.js";
import { sampleToy } from "../../src/data/toy2d.js";
import { saveCheckpoint, type CheckpointConfig } from "../../src/io/checkpoint.js";
import { stateToTensors } from "../../src/pipelines/state.js";

export const CHROMIUM = "/usr/bin/chromium";

export async function playgroundState(page: Page): Promise<PlaygroundState> {
  return page.evaluate(() => JSON.parse(JSON.stringify(window.__flowmatch.state)) as PlaygroundState);
}

/** Pixels of a canvas matching a colour test, counted in the page. */
export async function countPixels(page: Page, selector: string, kind: "particle" | "bright" | "colour"): Promise<number> {
  return page.evaluate(
    ([sel, k]) => {
      const canvas = document.querySelector(sel) as HTMLCanvasElement;
      const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
      const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) {
        const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
        // Particles are red (#d1495b) over a near-white plot; image tiles are grey on near-black.
        // "colour": channels far apart (colour image tiles; grey tiles and the UI have none).
        if (
          k === "particle"
            ? r > 150 && r - g > 50 && r - b > 40
            : k === "colour"
              ? Math.max(Math.abs(r - g), Math.abs(g - b)) > 40
              : r > 60 && Math.abs(r - g) < 10
        )
          n++;
      }
      return n;
    },
    [selector, kind] as const,
  );
}

/** A tiny 2-D checkpoint written the way the CLI writes one: a few real training steps, then saveCheckpoint. */
export async function write2dCheckpoint(dir: string, hidden: number): Promise<void> {
  await initEngine();
  const cfg: MlpConfig = { dim: 2, hidden, depth: 2, timeEmbDim: 8 };
  const trainer = new FlowTrainer({
    model: mlpModel(cfg),
    params: initMlp(cfg, new Rng(1)),
    sampleShape: [2],
    adam: DEFAULT_ADAM,
    emaDecay: 0.99,
  });
  const rng = new Rng(2);
  const losses: number[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const t = rng.uniforms(64);
      losses.push(
        await trainer.step({ x0: rng.normals(128), x1: sampleToy("moons", 64, rng), t, coef: pathCoefficients(straightScheduler, t) }),
      );
    }
    const config: CheckpointConfig = {
      format: "flowmatch-checkpoint",
      version: 1,
      kind: "2d",
      runId: `web-test-${hidden}`,
      step: trainer.stepCount,
      dataset: "moons",
      model: cfg,
      path: "straight",
    };
    await saveCheckpoint(dir, { config, tensors: stateToTensors({ ...(await trainer.hostState()), losses }) });
  } finally {
    trainer.dispose();
  }
}

/** A tiny class-conditional UNet checkpoint (fresh weights) in the image checkpoint layout; grey unless `inChannels` is 3. */
export async function writeImageCheckpoint(dir: string, inChannels = 1): Promise<void> {
  const model: UnetConfig = { channels: [8, 8], numClasses: 3, timeEmbDim: 8, groups: 4, inChannels, height: 8, width: 8 };
  const data = initUnet(model, new Rng(3));
  const params = Object.fromEntries(Object.entries(unetParamShapes(model)).map(([name, shape]) => [name, { shape, data: data[name] }]));
  const config: CheckpointConfig = {
    format: "flowmatch-checkpoint",
    version: 1,
    kind: "image",
    runId: "web-test-image",
    step: 0,
    dataset: inChannels === 3 ? "tiny-rgb" : "tiny",
    classNames: ["zero", "one", "two"],
    model,
    path: "straight",
  };
  await saveCheckpoint(dir, { config, tensors: stateToTensors({ params, ema: params }) });
}
