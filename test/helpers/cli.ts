// Shared helpers for tests that use flowmatch as a user would: run the CLI in a child process,
// and prove that nothing the user had was deleted or changed.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, lstatSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import assert from "node:assert/strict";

/**
 * How the tests start the CLI: from the TypeScript sources through tsx (`node ...CLI_ARGS ...args`),
 * so no build is needed. The compiled package (bin/flowmatch.js -> dist) is tested by
 * test/e2e/package.test.ts.
 */
// tsx by its resolved URL: `--import tsx` would resolve from the child's cwd, often a temp folder.
export const CLI_ARGS: readonly string[] = [
  "--import",
  import.meta.resolve("tsx"),
  join(import.meta.dirname, "..", "..", "src", "cli", "bin.ts"),
];

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** Runs `flowmatch ...args` to completion with the same Node binary as the test. */
export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [...CLI_ARGS, ...args], {
    encoding: "utf8",
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    timeout: opts.timeoutMs ?? 180_000,
  });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

/** Starts `flowmatch ...args` without waiting; for tests that signal or kill it mid-run. */
export function startCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  return spawn(process.execPath, [...CLI_ARGS, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/**
 * Trains a tiny 2-D model through the CLI into `out` (MLP 1x16, batches of 32; 200 samples drawn
 * with NFE `nfe` and `frames` GIF frames afterwards) and asserts it succeeded.
 */
export function trainTiny2d(out: string, steps: number, opts: { dataset?: string; nfe?: number; frames?: number } = {}): CliResult {
  const r = runCli([
    "train2d",
    "--dataset",
    opts.dataset ?? "moons",
    "--steps",
    String(steps),
    "--out",
    out,
    "--hidden",
    "16",
    "--depth",
    "1",
    "--batch-size",
    "32",
    "--n",
    "200",
    "--nfe",
    String(opts.nfe ?? 4),
    "--frames",
    String(opts.frames ?? 2),
  ]);
  assert.equal(r.code, 0, r.err);
  return r;
}

/**
 * train-image of a tiny UNet (widths 4,8, 4 groups, time embedding 4, batches of 4, jax backend) with
 * one Euler sample per class at the end, `extra` flags added; asserts it succeeded.
 */
export function trainTinyImage(out: string, dataset: string, steps: number, extra: string[] = []): CliResult {
  const r = runCli([
    "train-image",
    "--dataset",
    dataset,
    "--channels",
    "4,8",
    "--groups",
    "4",
    "--time-emb-dim",
    "4",
    "--batch-size",
    "4",
    "--steps",
    String(steps),
    "--per-class",
    "1",
    "--nfe",
    "1",
    "--solver",
    "euler",
    "--backend",
    "jax",
    ...extra,
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  return r;
}

/** How an interrupted process ended: exit code or signal, ms from the SIGINT to the exit, and its output. */
export interface InterruptResult {
  code: number | null;
  signal: string | null;
  ms: number;
  out: string;
  err: string;
}

/**
 * Ctrl-C as a user presses it: waits until `child` (started with piped stdout and stderr) prints
 * `ready` on `stream`, sends one SIGINT and resolves to how it ended. Rejects (killing the child) if
 * it exits first or is not ready within 240 s; a child still running 60 s after the SIGINT is killed.
 */
export async function interruptWhenReady(
  child: ChildProcess,
  ready: RegExp,
  stream: "stdout" | "stderr" = "stderr",
): Promise<InterruptResult> {
  let out = "";
  let err = "";
  // "close", not "exit": the output is complete only once the streams have closed.
  const exited = new Promise<[number | null, string | null]>((resolve) => child.once("close", (code, signal) => resolve([code, signal])));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`never became ready (${ready}); stderr:\n${err}`)), 240_000);
    const onData = (which: "stdout" | "stderr") => (d: Buffer) => {
      if (which === "stdout") out += d.toString();
      else err += d.toString();
      if (which === stream && ready.test(which === "stdout" ? out : err)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData("stdout"));
    child.stderr?.on("data", onData("stderr"));
    void exited.then(() => reject(new Error(`exited before it was interrupted; stderr:\n${err}`)));
  }).catch((e: unknown) => {
    child.kill("SIGKILL");
    throw e;
  });
  const sent = Date.now();
  child.kill("SIGINT");
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const [code, signal] = await exited;
  clearTimeout(killer);
  return { code, signal, ms: Date.now() - sent, out, err };
}

/** A fresh temporary folder for one test. */
export function tempDir(prefix = "fm-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Every entry below `root` (files by SHA-256, links by target, folders by name), keyed by relative path. */
export function snapshotTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const rel = relative(root, path);
      const st = lstatSync(path);
      if (st.isSymbolicLink()) out.set(rel, `link:${readlinkSync(path)}`);
      else if (st.isDirectory()) {
        out.set(rel, "dir");
        walk(path);
      } else out.set(rel, `file:${createHash("sha256").update(readFileSync(path)).digest("hex")}`);
    }
  };
  walk(root);
  return out;
}

/** Asserts every entry of an earlier snapshot is still there, byte for byte (new entries are allowed). */
export function assertTreeKept(before: Map<string, string>, root: string): void {
  const after = snapshotTree(root);
  for (const [rel, digest] of before) {
    assert.equal(after.get(rel), digest, `${rel} was ${after.has(rel) ? "changed" : "deleted"}`);
  }
}
