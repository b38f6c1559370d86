// flowmatch's side of one benchmark workload on one backend, in its own process (so its peak RSS
// is that workload's), driven by bench/run.ts with the same JSON-lines protocol as
// bench/torch_reference.py:
//   {"op":"setup","workload":spec,"weights":path,"backend":"jax"|"ort","threads":n|null} -> {"ok","params","threads"}
//   {"op":"run","seconds":s,"minIters":m} -> {"iters","seconds","rssKiB"}: iterate until both are reached
//   {"op":"finish"} -> {"maxRssKiB","rssKiB"}, then exit
// Replies are stdout lines starting with PROTOCOL_PREFIX; anything else on stdout is not protocol.
import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { decodeSafetensors } from "../src/io/safetensors.js";
import type { HostParams } from "../src/core/optim.js";
import type { FlowBatch } from "../src/core/train.js";
import { Rng } from "../src/core/rng.js";
import { getScheduler, pathCoefficients } from "../src/core/paths.js";
import { isMlp, sampleShape, type Backend, type Workload } from "./workloads.js";
import { PROTOCOL_PREFIX } from "./protocol.js";

interface Runner {
  params: number;
  threads: string;
  iterate(): Promise<void>;
  dispose(): Promise<void>;
}

function loadParams(path: string): HostParams {
  const { tensors } = decodeSafetensors(readFileSync(path), path);
  const out: HostParams = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array)) throw new Error(`${path}: ${name} is not float32`);
    out[name] = { shape: t.shape, data: t.data };
  }
  return out;
}

const count = (p: HostParams) => Object.values(p).reduce((n, a) => n + a.data.length, 0);
const hostData = (p: HostParams) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.data]));

async function jaxThreads(): Promise<string> {
  const { engineThreadCount } = await import("../src/engine/index.js");
  return `jax-js pool ${engineThreadCount()}`;
}

/** How the ort trainer uses its threads (BackendOptions.dataParallel). */
function ortThreadText(threads: number, dataParallel: boolean): string {
  return dataParallel && threads > 1 ? `onnxruntime, ${threads} data-parallel shards` : `onnxruntime intra-op ${threads}`;
}

/** A few batches drawn up front and cycled (the PyTorch side does the same): data prep is not timed. */
function batchPool(w: Workload, rng: Rng): FlowBatch[] {
  const per = sampleShape(w).reduce((a, b) => a * b, 1);
  const n = w.batch;
  const scheduler = getScheduler("straight");
  return Array.from({ length: 4 }, () => {
    const t = rng.uniforms(n);
    const b: FlowBatch = { x0: rng.normals(n * per), x1: rng.normals(n * per), t, coef: pathCoefficients(scheduler, t) };
    if (!isMlp(w)) b.labels = Int32Array.from({ length: n }, () => rng.int(w.model.numClasses + 1));
    return b;
  });
}

async function setup(w: Workload, params: HostParams, backend: Backend, threads: number | null): Promise<Runner> {
  const rng = new Rng(1);
  if (w.kind === "train-mlp" || w.kind === "train-unet") {
    const { initEngine } = await import("../src/engine/index.js");
    const { createTrainer } = await import("../src/pipelines/trainers.js");
    const { DEFAULT_ADAM } = await import("../src/core/optim.js");
    const { mlpFamily } = await import("../src/core/models/mlp.js");
    const { unetFamily } = await import("../src/core/models/unet.js");
    await initEngine();
    // Laid out for the backend as the trainers do (ModelFamily.model); the UNet as train-image runs
    // it: no memory pattern, data-parallel (one batch shard per thread).
    const runtime = backend === "ort" ? "onnxruntime" : "engine";
    const model = isMlp(w) ? mlpFamily.model(w.model, { runtime }) : unetFamily.model(w.model, { runtime });
    const ortThreads = threads ?? 2; // trainers.ts's default
    const trainer = await createTrainer(
      backend,
      { model, params, sampleShape: sampleShape(w), adam: DEFAULT_ADAM, emaDecay: 0.999 },
      { threads: ortThreads, memPattern: isMlp(w), dataParallel: !isMlp(w) },
    );
    const pool = batchPool(w, rng);
    let i = 0;
    return {
      params: count(params),
      threads: backend === "jax" ? await jaxThreads() : ortThreadText(ortThreads, !isMlp(w)),
      async iterate() {
        const loss = await trainer.step(pool[i++ % pool.length]);
        if (!Number.isFinite(loss)) throw new Error(`loss became ${loss}`);
      },
      async dispose() {
        trainer.dispose();
      },
    };
  }
  const n = w.batch;
  const shape = [n, ...sampleShape(w)];
  const x = rng.normals(shape.reduce((a, b) => a * b, 1));
  const { exportMlpOnnx, exportUnetOnnx } = await import("../src/io/onnx.js");
  const { createOnnxField } = await import("../src/io/onnxField.js");
  const ortThreads = threads ?? 2; // createOnnxField's default
  if (isMlp(w)) {
    const { odeint } = await import("../src/core/solvers.js");
    const nfe = w.nfe ?? 100;
    let field: (x: Float32Array, t: number) => Promise<Float32Array>;
    let release: () => Promise<void>;
    let threadText: string;
    if (backend === "jax") {
      const { initEngine } = await import("../src/engine/index.js");
      const { modelField } = await import("../src/core/field.js");
      const { mlpModel } = await import("../src/core/models/mlp.js");
      await initEngine();
      const f = modelField(mlpModel(w.model), params, { sampleShape: sampleShape(w) });
      field = async (xs, t) => f.field(xs, t);
      release = async () => f.dispose();
      threadText = await jaxThreads();
    } else {
      const session = await createOnnxField(await exportMlpOnnx(hostData(params), w.model), { threads: ortThreads });
      field = (xs, t) => session.run(xs, new Float32Array(n).fill(t), undefined, shape);
      release = () => session.release();
      threadText = `onnxruntime intra-op ${ortThreads}`;
    }
    return {
      params: count(params),
      threads: threadText,
      async iterate() {
        const r = await odeint(field, x, { solver: "rk4", nfe });
        if (r.nfe !== nfe) throw new Error(`RK4 made ${r.nfe} evaluations, expected ${nfe}`);
      },
      dispose: release,
    };
  }
  // forward-unet
  const labels = Int32Array.from({ length: n }, () => rng.int(w.model.numClasses + 1));
  const t = rng.uniforms(n);
  if (backend === "jax") {
    const { initEngine, jit, fromHost, toHost, np, tree } = await import("../src/engine/index.js");
    const { toEngine } = await import("../src/core/train.js");
    const { unetModel } = await import("../src/core/models/unet.js");
    await initEngine();
    const model = unetModel(w.model);
    const p = toEngine(params);
    const forward = jit((pp: typeof p, xx, tt, yy) => model.apply(pp, xx, tt, yy));
    return {
      params: count(params),
      threads: await jaxThreads(),
      async iterate() {
        await toHost(forward(tree.ref(p), fromHost(x, shape), fromHost(t, [n]), np.array(labels, { dtype: np.int32 })));
      },
      async dispose() {
        tree.dispose(p);
        forward.dispose();
      },
    };
  }
  const session = await createOnnxField(await exportUnetOnnx(hostData(params), w.model), { threads: ortThreads });
  const y = BigInt64Array.from(labels, (l) => BigInt(l));
  return {
    params: count(params),
    threads: `onnxruntime intra-op ${ortThreads}`,
    async iterate() {
      await session.run(x, t, y, shape);
    },
    dispose: () => session.release(),
  };
}

const rssKiB = () => Math.round(process.memoryUsage().rss / 1024);

async function main(): Promise<void> {
  const reply = (obj: object) => process.stdout.write(`${PROTOCOL_PREFIX}${JSON.stringify(obj)}\n`);
  let runner: Runner | null = null;
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === "") continue;
    const req = JSON.parse(line) as {
      op: string;
      workload?: Workload;
      weights?: string;
      backend?: Backend;
      threads?: number | null;
      seconds?: number;
      minIters?: number;
    };
    try {
      if (req.op === "setup") {
        runner = await setup(req.workload as Workload, loadParams(req.weights as string), req.backend as Backend, req.threads ?? null);
        reply({ ok: true, params: runner.params, threads: runner.threads });
      } else if (req.op === "run") {
        if (!runner) throw new Error("run before setup");
        let iters = 0;
        const start = performance.now();
        let elapsed = 0;
        do {
          await runner.iterate();
          iters++;
          elapsed = (performance.now() - start) / 1000;
        } while (iters < (req.minIters ?? 1) || elapsed < (req.seconds ?? 0));
        reply({ iters, seconds: elapsed, rssKiB: rssKiB() });
      } else if (req.op === "finish") {
        await runner?.dispose();
        reply({ maxRssKiB: process.resourceUsage().maxRSS, rssKiB: rssKiB() });
        break;
      } else throw new Error(`unknown op ${req.op}`);
    } catch (err) {
      reply({ error: err instanceof Error ? err.message : String(err) });
      break;
    }
  }
  // jax-js's worker threads would keep the process alive.
  process.exit(0);
}

await main();
