// Benchmarks (not tests): training steps/s, sampling samples/s and memory over a long run.
// Usage: npm run bench [-- section ...]   sections: mlp-train, mlp-sample, memory (default: all).
// Reference on this 2-core machine (../shared/ENGINE.md): PyTorch CPU takes ~3.95 ms per step of
// the 3->256->256->256->2 MLP at batch 256.
import { initEngine } from "../src/engine/index.js";
import { Rng } from "../src/core/rng.js";
import { FlowTrainer } from "../src/core/train.js";
import { DEFAULT_ADAM } from "../src/core/optim.js";
import { initMlp, mlpModel, type MlpConfig } from "../src/core/models/mlp.js";
import { getScheduler, pathCoefficients } from "../src/core/schedulers.js";
import { modelField } from "../src/core/field.js";
import { odeint } from "../src/core/solvers.js";
import { sampleToy } from "../src/data/toy2d.js";
import type { UnetConfig } from "../src/core/models/unet.js";
import { initUnetParams, unetModel } from "../src/pipelines/images.js";
import { createOnnxField, exportUnetOnnx } from "../src/io/onnx.js";

const PYTORCH_MS_PER_STEP = 3.95;
const BENCH_MLP: MlpConfig = { dim: 2, hidden: 256, depth: 3, timeEmbDim: 0 }; // 3 -> 256 -> 256 -> 256 -> 2

type Section = (report: (line: string) => void) => Promise<void>;

function makeTrainer(cfg: MlpConfig, seed: number) {
  const rng = new Rng(seed);
  const trainer = new FlowTrainer({ model: mlpModel(cfg), params: initMlp(cfg, rng), sampleShape: [2], adam: DEFAULT_ADAM, emaDecay: 0.999 });
  const scheduler = getScheduler("straight");
  const batchOf = (n: number) => {
    const t = rng.uniforms(n);
    return { x0: rng.normals(2 * n), x1: sampleToy("checkerboard", n, rng), t, coef: pathCoefficients(scheduler, t) };
  };
  return { trainer, batchOf };
}

/** Image model: the README recipe's UNet and the default one, on MNIST-shaped data. */
async function unetTrainRate(channels: number[], batch: number, steps: number): Promise<number> {
  const cfg: UnetConfig = { channels, numClasses: 10, timeEmbDim: 64, groups: 8, inChannels: 1, height: 28, width: 28 };
  const rng = new Rng(3);
  const trainer = new FlowTrainer({ model: unetModel(cfg), params: initUnetParams(cfg, rng), sampleShape: [28, 28, 1], adam: DEFAULT_ADAM, emaDecay: 0.999 });
  const scheduler = getScheduler("straight");
  const batchOf = () => {
    const t = rng.uniforms(batch);
    return { x0: rng.normals(batch * 784), x1: rng.normals(batch * 784), t, coef: pathCoefficients(scheduler, t), labels: Int32Array.from({ length: batch }, () => rng.int(11)) };
  };
  for (let i = 0; i < 3; i++) await trainer.step(batchOf());
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await trainer.step(batchOf());
  const secs = (performance.now() - t0) / 1000;
  trainer.dispose();
  return (steps * batch) / secs;
}

const sections: Record<string, Section> = {
  async "mlp-train"(report) {
    const { trainer, batchOf } = makeTrainer(BENCH_MLP, 0);
    // Warm-up: compilation plus V8's tier-up of the generated Wasm kernels takes a few hundred steps.
    for (let i = 0; i < 300; i++) await trainer.step(batchOf(256));
    const steps = 500;
    const batches = Array.from({ length: steps }, () => batchOf(256));
    const t0 = performance.now();
    for (const b of batches) await trainer.step(b);
    const ms = (performance.now() - t0) / steps;
    trainer.dispose();
    report(`mlp-train  3->256->256->256->2, batch 256, Adam+EMA, jit: ${ms.toFixed(2)} ms/step = ${(1000 / ms).toFixed(1)} steps/s; PyTorch CPU reference ${PYTORCH_MS_PER_STEP} ms/step -> ${(ms / PYTORCH_MS_PER_STEP).toFixed(2)}x`);
  },
  async "mlp-sample"(report) {
    const cfg: MlpConfig = { dim: 2, hidden: 256, depth: 3, timeEmbDim: 32 };
    const rng = new Rng(1);
    const f = modelField(mlpModel(cfg), initMlp(cfg, rng), { sampleShape: [2] });
    const n = 1024;
    const x = rng.normals(2 * n);
    for (let i = 0; i < 50; i++) await f.field(x, 0.5);
    const evals = 200;
    let t0 = performance.now();
    for (let i = 0; i < evals; i++) await f.field(x, i / evals);
    const msPerEval = (performance.now() - t0) / evals;
    t0 = performance.now();
    await odeint(f.field, x, { solver: "rk4", nfe: 100 });
    const secs = (performance.now() - t0) / 1000;
    f.dispose();
    report(`mlp-sample forward batch ${n}: ${msPerEval.toFixed(2)} ms/eval (PyTorch CPU reference 3.4 ms); rk4 NFE 100: ${(n / secs).toFixed(0)} samples/s`);
  },
  async "unet-train"(report) {
    for (const [channels, batch] of [
      [[16, 32, 32], 32],
      [[32, 64, 64], 16],
    ] as [number[], number][]) {
      const rate = await unetTrainRate(channels, batch, 10);
      report(`unet-train channels [${channels}] batch ${batch}: ${rate.toFixed(1)} images/s (PyTorch CPU reference 140-185 images/s for a 1.1M UNet)`);
    }
  },
  async "unet-sample"(report) {
    const cfg: UnetConfig = { channels: [32, 64, 64], numClasses: 10, timeEmbDim: 64, groups: 8, inChannels: 1, height: 28, width: 28 };
    const rng = new Rng(4);
    const params = initUnetParams(cfg, rng);
    const n = 64;
    const x = rng.normals(n * 784);
    const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
    const engine = modelField(unetModel(cfg), params, { sampleShape: [28, 28, 1], labels });
    await engine.field(x, 0.5);
    let t0 = performance.now();
    for (let i = 0; i < 5; i++) await engine.field(x, i / 5);
    const engineRate = (5 * n) / ((performance.now() - t0) / 1000);
    engine.dispose();
    const data: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(params)) data[k] = v.data;
    const session = await createOnnxField(exportUnetOnnx(data, cfg), {});
    const y = BigInt64Array.from(labels, (l) => BigInt(l));
    await session.run(x, new Float32Array(n).fill(0.5), y, [n, 28, 28, 1]);
    t0 = performance.now();
    for (let i = 0; i < 20; i++) await session.run(x, new Float32Array(n).fill(i / 20), y, [n, 28, 28, 1]);
    const onnxRate = (20 * n) / ((performance.now() - t0) / 1000);
    session.release();
    report(`unet-sample channels [32,64,64] batch ${n}, one network evaluation: engine ${engineRate.toFixed(1)} images/s, onnxruntime ${onnxRate.toFixed(1)} images/s (${(onnxRate / engineRate).toFixed(1)}x); PyTorch CPU reference ~500 images/s`);
  },
  async memory(report) {
    const { trainer, batchOf } = makeTrainer(BENCH_MLP, 2);
    const rss = () => process.memoryUsage().rss / 2 ** 20;
    for (let i = 0; i < 300; i++) await trainer.step(batchOf(256));
    const before = rss();
    const steps = 3000;
    for (let i = 0; i < steps; i++) await trainer.step(batchOf(256));
    const after = rss();
    trainer.dispose();
    report(`memory     RSS after warm-up ${before.toFixed(0)} MiB, after ${steps} more steps ${after.toFixed(0)} MiB (${(((after - before) * 1024) / steps).toFixed(2)} KiB/step)`);
  },
};

const wanted = process.argv.slice(2).filter((a) => a !== "--");
const names = wanted.length > 0 ? wanted : Object.keys(sections);
await initEngine();
for (const name of names) {
  const section = sections[name];
  if (!section) {
    console.error(`unknown bench section "${name}"; choose from ${Object.keys(sections).join(", ")}`);
    process.exit(2);
  }
  await section((line) => console.log(line));
}
