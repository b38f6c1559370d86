// The CLI (io/checkpoint.ts, reading paths) and the playground (web/checkpointFiles.ts, reading picked
// files) share one bytes-only parser (io/checkpointFormat.ts): every checkpoint one refuses, the other
// refuses too, and both load the same good ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../../../src/core/errors.js";
import { loadCheckpoint, saveCheckpoint, type CheckpointConfig } from "../../../src/io/checkpoint.js";
import { encodeSafetensors, type HostTensor } from "../../../src/io/safetensors.js";
import { readCheckpointFiles } from "../../../src/web/checkpointFiles.js";
import { tempDir } from "../../helpers/cli.js";

const config = (step: number, extra: Record<string, unknown> = {}): CheckpointConfig => ({
  format: "flowmatch-checkpoint",
  version: 1,
  kind: "2d",
  step,
  runId: "run-a",
  path: "straight",
  model: { dim: 2, hidden: 4, depth: 1, timeEmbDim: 0 },
  ...extra,
});

const weights = (fill = 0.5): Record<string, HostTensor> => ({
  "layers.0.weight": { dtype: "F32", shape: [3, 4], data: new Float32Array(12).fill(fill) },
  "layers.0.bias": { dtype: "F32", shape: [4], data: new Float32Array(4).fill(fill) },
});

/** Load the folder both ways; each result is the step it loaded or the UserError's message. */
async function loadBothWays(
  dir: string,
  files: string[] = ["ckpt.safetensors", "ckpt.json"],
): Promise<{ node: number | string; web: number | string }> {
  const outcome = async (load: () => Promise<{ config: CheckpointConfig }>): Promise<number | string> => {
    try {
      return (await load()).config.step;
    } catch (err) {
      assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
      return err.message;
    }
  };
  const picked = files.map((name) => {
    const b = readFileSync(join(dir, name));
    return { name, bytes: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) };
  });
  return { node: await outcome(() => loadCheckpoint(dir)), web: await outcome(() => readCheckpointFiles(picked)) };
}

test("the page and the CLI accept and refuse the same checkpoints", async () => {
  const root = tempDir("fm-ckpt-format-");
  try {
    const save = async (name: string, cfg: CheckpointConfig, tensors = weights()) => {
      const dir = join(root, name);
      await saveCheckpoint(dir, { config: cfg, tensors });
      return dir;
    };
    const refusedByBoth = async (dir: string, pattern: RegExp, files?: string[]) => {
      const r = await loadBothWays(dir, files);
      assert.equal(typeof r.node, "string", `the CLI should refuse ${dir}`);
      assert.equal(typeof r.web, "string", `the page should refuse ${dir} (the CLI says: ${r.node})`);
      assert.match(String(r.node), pattern);
      assert.match(String(r.web), pattern);
    };

    // Good: a plain checkpoint; and only the weights (the config they embed).
    const good = await save("good", config(10));
    assert.deepEqual(await loadBothWays(good), { node: 10, web: 10 });
    rmSync(join(await save("weights-only", config(11)), "ckpt.json"));
    assert.deepEqual(await loadBothWays(join(root, "weights-only"), ["ckpt.safetensors"]), { node: 11, web: 11 });

    // Good: a save killed between its two writes; the newer weights of the same run win.
    const killed = await save("killed", config(100));
    const oldJson = readFileSync(join(killed, "ckpt.json"));
    await save("killed", config(200), weights(0.25));
    writeFileSync(join(killed, "ckpt.json"), oldJson);
    assert.deepEqual(await loadBothWays(killed), { node: 200, web: 200 });

    // Bad: newer weights whose run has the same id and kind but another setting that defines the
    // weights (here the path). The page used to accept these (it compared only runId, kind and step).
    const otherSetup = await save("other-setup", config(100));
    const json = readFileSync(join(otherSetup, "ckpt.json"));
    await save("other-setup", config(200, { path: "cosine" }), weights(0.25));
    writeFileSync(join(otherSetup, "ckpt.json"), json);
    await refusedByBoth(otherSetup, /do not belong to this config/);

    // Bad: weights of another run.
    const mixed = await save("mixed", config(5));
    writeFileSync(
      join(mixed, "ckpt.safetensors"),
      readFileSync(join(await save("other", config(5, { runId: "run-b" }), weights(0.1)), "ckpt.safetensors")),
    );
    await refusedByBoth(mixed, /do not belong to this config/);

    // Bad configs: another format, another version, no kind, a malformed hash.
    for (const [name, edit, pattern] of [
      ["format", { format: "other" }, /not a flowmatch checkpoint config/],
      ["version", { version: 2 }, /checkpoint version 2/],
      ["kind", { kind: 7 }, /no model "kind"/],
      ["step", { step: -1 }, /no valid "step"/],
      ["sha", { weightsSha256: 12 }, /malformed "weightsSha256"/],
    ] as const) {
      const dir = await save(`bad-${name}`, config(1));
      const cfg = JSON.parse(readFileSync(join(dir, "ckpt.json"), "utf8")) as Record<string, unknown>;
      writeFileSync(join(dir, "ckpt.json"), JSON.stringify({ ...cfg, ...edit }));
      await refusedByBoth(dir, pattern);
    }

    // Bad weights: truncated (no hash recorded, so the decoder finds it), and a NaN weight.
    const truncated = await save("truncated", config(1));
    const cfg = JSON.parse(readFileSync(join(truncated, "ckpt.json"), "utf8")) as Record<string, unknown>;
    delete cfg.weightsSha256;
    writeFileSync(join(truncated, "ckpt.json"), JSON.stringify(cfg));
    const full = readFileSync(join(truncated, "ckpt.safetensors"));
    writeFileSync(join(truncated, "ckpt.safetensors"), full.subarray(0, full.length - 4));
    await refusedByBoth(truncated, /is corrupt: .*truncated/);

    const nan = join(root, "nan");
    mkdirSync(nan);
    const poisoned = weights();
    (poisoned["layers.0.bias"].data as Float32Array)[2] = Number.NaN;
    writeFileSync(join(nan, "ckpt.safetensors"), encodeSafetensors(poisoned, { config: JSON.stringify(config(1)) }));
    await refusedByBoth(nan, /tensor "layers\.0\.bias" has a non-finite value \(NaN\) at index 2/, ["ckpt.safetensors"]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
