// `--device webgpu` on Node: the same training run and the same sampling on WebGPU (the npm package
// `webgpu`, Dawn) as on Wasm. This machine has no GPU, so the adapter is SwiftShader, the CPU Vulkan
// that Debian's Chromium ships (installed for the browser test); pointing the Vulkan loader at it
// needs no extra package. Mesa's lavapipe (Debian 12) is not usable: Dawn rejects it for lacking
// shaderUniform*ArrayDynamicIndexing. A correctness run only: SwiftShader timings mean nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { decodeSafetensors } from "../../src/io/safetensors.js";
import { runCli, tempDir } from "../helpers/cli.js";
import { writeImageCheckpoint } from "../helpers/playground.js";

const CHROMIUM_LIB = "/usr/lib/chromium";
const SWIFTSHADER_ICD = join(CHROMIUM_LIB, "vk_swiftshader_icd.json");
/** Chromium's own Vulkan loader and SwiftShader driver, for a child process. */
const SWIFTSHADER_ENV = { ...process.env, LD_LIBRARY_PATH: CHROMIUM_LIB, VK_ICD_FILENAMES: SWIFTSHADER_ICD };

function skipReason(): string | false {
  if (!existsSync(SWIFTSHADER_ICD)) return `no SwiftShader Vulkan driver at ${SWIFTSHADER_ICD} (apt-get install chromium)`;
  try {
    createRequire(import.meta.url).resolve("webgpu");
  } catch {
    return 'the "webgpu" package is not installed (npm install)';
  }
  return false;
}
const skip = skipReason();

// The plain MLP: WGSL specifies sin/cos only to 2^-11 absolute error (and only on [-pi, pi]), so the
// default Fourier features would measure the driver's sine (2.5e-4 apart on SwiftShader), not
// whether the engine's kernels are right.
const TRAIN = [
  "train2d",
  "--fourier-features",
  "0",
  "--dataset",
  "moons",
  "--backend",
  "jax",
  "--steps",
  "25",
  "--hidden",
  "16",
  "--depth",
  "2",
  "--time-emb-dim",
  "4",
  "--batch-size",
  "64",
  "--n",
  "300",
  "--nfe",
  "8",
  "--frames",
  "2",
  "--seed",
  "7",
];

function tensors(dir: string): Record<string, Float32Array> {
  const t = decodeSafetensors(readFileSync(join(dir, "ckpt.safetensors"))).tensors;
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.data as Float32Array]));
}

test("--device webgpu trains and samples like Wasm (same seed) on a WebGPU adapter", { skip }, () => {
  const root = tempDir("fm-webgpu-");
  const gpu = runCli([...TRAIN, "--out", join(root, "gpu"), "--device", "webgpu"], { env: SWIFTSHADER_ENV });
  assert.equal(gpu.code, 0, gpu.err);
  const adapter = /device: webgpu on (.*)/.exec(gpu.err)?.[1];
  assert.ok(adapter, `the adapter is named on stderr: ${gpu.err}`);
  process.stdout.write(`# node webgpu adapter: ${adapter}\n`);
  const cpu = runCli([...TRAIN, "--out", join(root, "cpu"), "--device", "wasm"]);
  assert.equal(cpu.code, 0, cpu.err);
  assert.doesNotMatch(cpu.err, /device: webgpu/);

  // float32 on both, summed in different orders: the runs drift apart by rounding only. Measured:
  // largest relative difference 2.7e-6 after 25 Adam steps; 1e-4 leaves a 40x margin for other
  // drivers while any wrong kernel (a different network or update) lands orders of magnitude off.
  const [a, b] = [tensors(join(root, "gpu")), tensors(join(root, "cpu"))];
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
  let worst = 0;
  for (const k of Object.keys(b)) {
    for (let i = 0; i < b[k].length; i++) worst = Math.max(worst, Math.abs(a[k][i] - b[k][i]) / Math.max(1, Math.abs(b[k][i])));
  }
  assert.ok(worst <= 1e-4, `WebGPU and Wasm checkpoints differ by ${worst.toExponential(2)}`);
  const loss = a["log.loss"];
  assert.ok(loss.length === 25 && loss[24] !== loss[0], "the checkpoint logs 25 losses");
  process.stdout.write(`# largest relative weight/loss difference WebGPU vs Wasm: ${worst.toExponential(2)}\n`);

  // Sampling the Wasm checkpoint on WebGPU: the same noise gives the same samples, so the same metrics.
  const samples = (dev: string, env?: NodeJS.ProcessEnv) => {
    const out = join(root, `sample-${dev}`);
    const r = runCli(
      ["sample2d", "--ckpt", join(root, "cpu"), "--n", "300", "--nfe", "8", "--frames", "2", "--out", out, "--device", dev],
      { env },
    );
    assert.equal(r.code, 0, r.err);
    return JSON.parse(readFileSync(join(out, "metrics.json"), "utf8")) as Record<string, unknown>;
  };
  const [mg, mc] = [samples("webgpu", SWIFTSHADER_ENV), samples("wasm")];
  const numbers = (m: unknown, prefix = ""): [string, number][] =>
    typeof m === "number"
      ? [[prefix, m]]
      : m && typeof m === "object"
        ? Object.entries(m).flatMap(([k, v]) => numbers(v, `${prefix}.${k}`))
        : [];
  const [ng, nc] = [new Map(numbers(mg)), numbers(mc)];
  assert.ok(nc.length > 3, JSON.stringify(mc));
  for (const [k, v] of nc) {
    if (/seconds|time|perSecond/i.test(k)) continue; // wall-clock figures differ by design
    assert.ok(Math.abs((ng.get(k) ?? NaN) - v) <= 1e-3 * Math.max(1, Math.abs(v)), `${k}: webgpu ${ng.get(k)} vs wasm ${v}`);
  }
});

test("--device means jax-js: sample-image leaves its onnxruntime default for the engine", async () => {
  const root = tempDir("fm-device-img-");
  await writeImageCheckpoint(root);
  const r = runCli([
    "sample-image",
    "--ckpt",
    root,
    "--per-class",
    "1",
    "--nfe",
    "2",
    "--solver",
    "euler",
    "--frames",
    "2",
    "--out",
    join(root, "out"),
    "--device",
    "wasm",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /sampled 3 images with euler NFE 2 on engine/);
  const plain = runCli([
    "sample-image",
    "--ckpt",
    root,
    "--per-class",
    "1",
    "--nfe",
    "2",
    "--solver",
    "euler",
    "--frames",
    "2",
    "--out",
    join(root, "out2"),
  ]);
  assert.match(plain.out, /on onnx/, "without --device the default stays onnxruntime");
});
