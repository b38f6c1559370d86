// Model families (core/models): one home per network, found by checkpoint kind; and the one
// guided field every runtime shares.
import { test } from "node:test";
import assert from "node:assert/strict";
import { UserError } from "../src/core/errors.js";
import { Rng } from "../src/core/rng.js";
import { modelFamily, modelKinds } from "../src/core/models/registry.js";
import { initMlp, mlpFamily, mlpParamCount, type MlpConfig } from "../src/core/models/mlp.js";
import { initUnetParams, unetFamily, unetParamCount, type UnetConfig } from "../src/core/models/unet.js";
import { labelledField } from "../src/core/field.js";

const mlp: MlpConfig = { dim: 2, hidden: 8, depth: 2, timeEmbDim: 4 };
const unet: UnetConfig = { channels: [4, 8], numClasses: 3, timeEmbDim: 4, groups: 4, inChannels: 1, height: 8, width: 8 };

test("the registry finds each family by its checkpoint kind and names the known kinds for an unknown one", () => {
  assert.equal(modelFamily("2d"), mlpFamily);
  assert.equal(modelFamily("image"), unetFamily);
  assert.deepEqual(modelKinds().slice(0, 2), ["2d", "image"]);
  assert.throws(() => modelFamily("gan"), (e: unknown) => e instanceof UserError && /kind 'gan'.*'2d', 'image'/.test(e.message));
});

test("a family's shapes, count, init and sample shape agree with each other", () => {
  const m = mlpFamily.init(mlp, new Rng(1));
  assert.deepEqual(m, initMlp(mlp, new Rng(1)));
  // 2 + 4 inputs -> 8 -> 8 -> 2
  assert.equal(mlpFamily.paramCount(mlp), 6 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2);
  assert.equal(mlpParamCount(mlp), mlpFamily.paramCount(mlp));
  assert.deepEqual(mlpFamily.sampleShape(mlp), [2]);
  assert.equal(mlpFamily.nullLabel(mlp), null);
  const u = unetFamily.init(unet, new Rng(2));
  assert.deepEqual(u, initUnetParams(unet, new Rng(2)));
  const shapes = unetFamily.paramShapes(unet);
  assert.deepEqual(Object.keys(u), Object.keys(shapes));
  for (const [k, s] of Object.entries(shapes)) assert.deepEqual(u[k].shape, s, k);
  assert.equal(unetFamily.paramCount(unet), unetParamCount(unet));
  assert.deepEqual(unetFamily.sampleShape(unet), [8, 8, 1]);
  assert.equal(unetFamily.nullLabel(unet), 3);
  assert.match(unetFamily.describe(unet), /UNet \[4, 8\] · 3 classes · 8×8/);
});

test("parseConfig accepts a stored config and refuses a broken one naming the field", () => {
  assert.deepEqual(mlpFamily.parseConfig({ ...mlp, extra: 1 }, "ckpt.json"), mlp);
  assert.throws(() => mlpFamily.parseConfig({ dim: 2, hidden: "8", depth: 2, timeEmbDim: 4 }, "a/ckpt.json"), (e: unknown) => e instanceof UserError && /a\/ckpt\.json.*"model" section \(hidden/.test(e.message));
  assert.throws(() => mlpFamily.parseConfig(undefined, "x"), UserError);
  assert.deepEqual(unetFamily.parseConfig(unet, "ckpt.json"), unet);
  assert.throws(() => unetFamily.parseConfig({ ...unet, channels: "4,8" }, "u.json"), (e: unknown) => e instanceof UserError && /u\.json.*\(channels/.test(e.message));
  // Buildable fields, but 6 is not a multiple of 4 groups.
  assert.throws(() => unetFamily.parseConfig({ ...unet, channels: [4, 6] }, "u.json"), (e: unknown) => e instanceof UserError && /u\.json has an invalid UNet config: .*6/.test(e.message));
});

test("labelledField: guidance is v_u + w (v_c - v_u) from one network call on both halves", async () => {
  // A fake network whose velocity is x * (label + 1) + t: conditional and unconditional differ.
  const calls: Int32Array[] = [];
  const forward = async (x: Float32Array, t: number, y: Int32Array) => {
    calls.push(y.slice());
    const per = x.length / y.length;
    return Float32Array.from(x, (v, i) => v * (y[Math.floor(i / per)] + 1) + t);
  };
  const labels = Int32Array.of(0, 2);
  const x = Float32Array.of(1, 2, 3, 4);
  const w = 3;
  const guided = labelledField(forward, { sampleSize: 2, labels, guidance: w, nullLabel: 5 });
  const v = await guided(x, 0.5);
  assert.equal(calls.length, 1, "one network call per evaluation");
  assert.deepEqual(Array.from(calls[0]), [0, 2, 5, 5]);
  const expect = Array.from(x, (xi, i) => {
    const c = xi * (labels[Math.floor(i / 2)] + 1) + 0.5;
    const u = xi * 6 + 0.5;
    return u + w * (c - u);
  });
  assert.deepEqual(Array.from(v), expect);
  // w = 1: plain conditional; no labels: label 0 for every sample.
  calls.length = 0;
  assert.deepEqual(Array.from(await labelledField(forward, { sampleSize: 2, labels, guidance: 1, nullLabel: 5 })(x, 0)), [1, 2, 9, 12]);
  assert.deepEqual(Array.from(await labelledField(forward, { sampleSize: 2 })(x, 0)), [1, 2, 3, 4]);
  assert.deepEqual(calls.map((c) => Array.from(c)), [[0, 2], [0, 0]]);
  assert.throws(() => labelledField(forward, { sampleSize: 2, labels, guidance: 2 }), /null label/);
});
