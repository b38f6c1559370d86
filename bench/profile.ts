// Where the time of one traced training step goes on onnxruntime: per-op-type kernel time from
// onnxruntime's session profiler, and the node counts of the graph before and after onnxruntime's
// own optimisation (what it fused). A development tool; npm run bench is the benchmark.
//
// --ab compares the translator's optimisations on and off (TranslateOptions.optimize), --ab-threads
// 1 vs 2 threads, --ab-nchwc NCHWc convs vs plain Conv, --ab-mempattern onnxruntime's memory pattern
// on vs off: the two sessions run alternate steps, so machine load hits both alike; it prints wall
// and CPU time per step (CPU time moves less with load). --ab-data-parallel compares the trainer's
// two ways of using N threads (one graph vs one batch shard per thread; wall time only, as the
// shards' CPU time is on another thread).
//
// Usage: node --import tsx bench/profile.ts <workload id> [--threads N] [--steps N] [--save DIR] [--ab | --ab-threads | --ab-nchwc | --ab-mempattern | --ab-data-parallel]
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { onnxOpCounts as opCounts } from "../src/engine/onnx/proto.js";
import { initEngine } from "../src/engine/index.js";
import { createTrainer, traceTrainStep } from "../src/pipelines/trainers.js";
import { createOrtSession, nchwcBlockSize } from "../src/engine/onnx/session.js";
import { DEFAULT_ADAM, adamStepSize } from "../src/core/optim.js";
import { mlpFamily } from "../src/core/models/mlp.js";
import { unetFamily } from "../src/core/models/unet.js";
import { Rng } from "../src/core/rng.js";
import { getScheduler, pathCoefficients } from "../src/core/paths.js";
import { WORKLOADS, initialParams, isMlp, sampleShape } from "./workloads.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: "string", default: "1" },
    steps: { type: "string", default: "30" },
    top: { type: "string", default: "25" },
    ab: { type: "boolean" },
    "ab-threads": { type: "boolean" },
    "ab-nchwc": { type: "boolean" },
    "ab-mempattern": { type: "boolean" },
    "ab-data-parallel": { type: "boolean" },
    save: { type: "string" },
  },
});
const found = WORKLOADS.find((x) => x.id === positionals[0]);
if (!found || !(found.kind === "train-mlp" || found.kind === "train-unet")) {
  console.error(
    `usage: bench/profile.ts <${WORKLOADS.filter((x) => x.kind.startsWith("train"))
      .map((x) => x.id)
      .join("|")}> [--threads N] [--steps N]`,
  );
  process.exit(2);
}
const w = found;
const threads = Number(values.threads);
const steps = Number(values.steps);
await initEngine();
const params = initialParams(w);
// Laid out for onnxruntime as the ort trainer's model is (ModelFamily.model).
const model = isMlp(w) ? mlpFamily.model(w.model, { runtime: "onnxruntime" }) : unetFamily.model(w.model, { runtime: "onnxruntime" });
const shapes = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.shape]));
const stepOpts = { model, params, sampleShape: sampleShape(w), adam: DEFAULT_ADAM, emaDecay: 0.999 };

function makeFeeds(inputNames: readonly string[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const flat = (f: (x: number) => number) => Float32Array.from(Object.values(params).flatMap((p) => Array.from(p.data, f)));
  for (const g of ["params", "m", "v", "ema"]) {
    const data = flat(g === "m" || g === "v" ? () => 0 : (x) => x);
    feeds[`0.${g}.flat`] = new ort.Tensor("float32", data, [data.length]);
  }
  const rng = new Rng(1);
  const per = sampleShape(w).reduce((a, b) => a * b, 1);
  const full = [w.batch, ...sampleShape(w)];
  const t = rng.uniforms(w.batch);
  feeds["1"] = new ort.Tensor("float32", rng.normals(w.batch * per), full);
  feeds["2"] = new ort.Tensor("float32", rng.normals(w.batch * per), full);
  feeds["3"] = new ort.Tensor("float32", t, [w.batch]);
  feeds["4"] = new ort.Tensor("float32", pathCoefficients(getScheduler("straight"), t), [w.batch, 4]);
  feeds["5"] = new ort.Tensor("int32", new Int32Array(w.batch), [w.batch]);
  feeds["6"] = new ort.Tensor("float32", Float32Array.of(adamStepSize(DEFAULT_ADAM, 1)), []);
  feeds["7"] = new ort.Tensor("float32", Float32Array.of(0.5), []);
  for (const k of Object.keys(feeds)) if (!inputNames.includes(k)) delete feeds[k];
  return feeds;
}

if (values["ab-data-parallel"]) {
  // The trainer itself (createTrainer, which traces its own graphs), on --threads threads (2 when
  // 1 is given): one graph on that many intra-op threads vs one batch shard per thread
  // (BackendOptions.dataParallel), steps alternating.
  const n = values.threads === "1" ? 2 : threads;
  const memPattern = isMlp(w);
  const trainers = await Promise.all(
    [false, true].map((dataParallel) => createTrainer("ort", stepOpts, { threads: n, dataParallel, memPattern })),
  );
  const feeds = makeFeeds(["1", "2", "3", "4", "5"]);
  const batch = {
    x0: feeds["1"].data as Float32Array,
    x1: feeds["2"].data as Float32Array,
    t: feeds["3"].data as Float32Array,
    coef: feeds["4"].data as Float32Array,
    labels: feeds["5"].data as Int32Array,
  };
  const times: number[][] = [[], []];
  for (let i = 0; i < steps + 3; i++)
    for (let k = 0; k < 2; k++) {
      const t0 = performance.now();
      await trainers[k].step(batch);
      if (i >= 3) times[k].push(performance.now() - t0);
    }
  const med = (xs: number[]) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
  console.log(
    `${w.id}, ${n} threads: one graph ${med(times[0]).toFixed(2)} ms/step, data-parallel ${med(times[1]).toFixed(2)} ms/step; ratio ${(med(times[1]) / med(times[0])).toFixed(3)}; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
  );
  for (const t of trainers) t.dispose();
  process.exit(0);
}

// As the ort trainer builds it (OrtTrainer: NCHWc convs where the machine has them).
const traced = await traceTrainStep(stepOpts, shapes, w.batch, { nchwcBlock: await nchwcBlockSize() });

const fmt = (c: Record<string, number>) =>
  Object.entries(c)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");

if (values.ab || values["ab-threads"] || values["ab-nchwc"] || values["ab-mempattern"]) {
  const plain = values.ab
    ? await traceTrainStep(stepOpts, shapes, w.batch, { optimize: false })
    : values["ab-nchwc"]
      ? await traceTrainStep(stepOpts, shapes, w.batch)
      : traced;
  const variants = values.ab
    ? [
        { label: "optimized", bytes: traced.bytes, threads },
        { label: "plain", bytes: plain.bytes, threads },
      ]
    : values["ab-nchwc"]
      ? [
          { label: "nchwc", bytes: traced.bytes, threads },
          { label: "plain Conv", bytes: plain.bytes, threads },
        ]
      : values["ab-mempattern"]
        ? [
            { label: "memory pattern", bytes: traced.bytes, threads, memPattern: true },
            { label: "no memory pattern", bytes: traced.bytes, threads, memPattern: false },
          ]
        : [
            { label: "1 thread", bytes: traced.bytes, threads: 1 },
            { label: "2 threads", bytes: traced.bytes, threads: 2 },
          ];
  const sessions = await Promise.all(
    variants.map((v) => createOrtSession(v.bytes, { threads: v.threads, memPattern: "memPattern" in v ? v.memPattern : isMlp(w) })),
  );
  const feeds = makeFeeds(sessions[0].inputNames);
  const times: number[][] = variants.map(() => []);
  const cpu: number[][] = variants.map(() => []);
  for (let i = 0; i < steps + 3; i++) {
    for (let k = 0; k < sessions.length; k++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await sessions[k].run(feeds);
      const c = process.cpuUsage(c0);
      if (i >= 3) {
        times[k].push(performance.now() - t0);
        cpu[k].push((c.user + c.system) / 1000);
      }
    }
  }
  const med = (xs: number[]) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
  console.log(
    `${w.id}: ${variants.map((v, k) => `${v.label} ${med(times[k]).toFixed(2)} ms/step (CPU ${med(cpu[k]).toFixed(2)} ms)`).join(", ")}; ratio ${(med(times[0]) / med(times[1])).toFixed(3)}, CPU ${(med(cpu[0]) / med(cpu[1])).toFixed(3)}; per-pair ratio median ${med(times[0].map((t, i) => t / times[1][i])).toFixed(3)}; nodes ${traced.stats.nodes} vs ${plain.stats.nodes}; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
  );
  process.exit(0);
}

const dir = mkdtempSync(join(os.tmpdir(), "flowmatch-prof-"));
const optimized = join(dir, "optimized.onnx");
const session = await ort.InferenceSession.create(traced.bytes, {
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
  logSeverityLevel: 3,
  enableMemPattern: isMlp(w),
  enableProfiling: true,
  profileFilePrefix: join(dir, "prof"),
  optimizedModelFilePath: optimized,
  extra: { session: { intra_op: { allow_spinning: "0" } } },
});
const feeds = makeFeeds(session.inputNames);
for (let i = 0; i < steps; i++) await session.run(feeds);
session.endProfiling();
await session.release();
const file = readdirSync(dir)
  .filter((n) => n.startsWith("prof"))
  .map((n) => join(dir, n))[0];
const events = JSON.parse(readFileSync(file, "utf8")) as {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; input_type_shape?: unknown; output_type_shape?: unknown };
}[];
const shapesOf = new Map<string, string>();
const byOp = new Map<string, number>();
const byNode = new Map<string, number>();
let kernels = 0;
const runs: number[] = [];
for (const e of events) {
  if (e.cat === "Node" && e.name.endsWith("_kernel_time")) {
    const k = e.args?.op_name ?? "?";
    byOp.set(k, (byOp.get(k) ?? 0) + e.dur);
    byNode.set(e.name, (byNode.get(e.name) ?? 0) + e.dur);
    const sh = (x: unknown) => JSON.stringify(x).replace(/"float"|"int64"|"int32"|"bool"|[{}"]/g, "");
    shapesOf.set(e.name, `${k} ${sh(e.args?.input_type_shape)} -> ${sh(e.args?.output_type_shape)}`);
    kernels += e.dur;
  }
  if (e.cat === "Session" && e.name === "model_run") runs.push(e.dur);
}
// The first runs include allocator growth: report the later half.
const late = runs.slice(runs.length >> 1);
const perRun = (us: number) => (us / runs.length / 1000).toFixed(2);
console.log(
  `${w.id} threads ${threads}: model_run ${(late.reduce((a, b) => a + b, 0) / late.length / 1000).toFixed(2)} ms/step (median of later half), kernels ${perRun(kernels)} ms/step; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
);
console.log(
  `by op type (ms/step): ${[...byOp.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 16)
    .map(([k, v]) => `${k} ${perRun(v)}`)
    .join(", ")}`,
);
console.log("top nodes (ms/step):");
for (const [k, v] of [...byNode.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
  console.log(`  ${perRun(v)} ${k.replace("_kernel_time", "")} ${shapesOf.get(k)}`);
console.log(`translated: ${traced.stats.nodes} nodes: ${fmt(opCounts(traced.bytes))}`);
console.log(`after onnxruntime 'all': ${fmt(opCounts(readFileSync(optimized)))}`);
if (values.save) {
  writeFileSync(join(values.save, `${w.id}.onnx`), traced.bytes);
  writeFileSync(join(values.save, `${w.id}.optimized.onnx`), readFileSync(optimized));
}
rmSync(dir, { recursive: true, force: true });
process.exit(0);
