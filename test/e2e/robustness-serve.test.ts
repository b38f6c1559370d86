// `flowmatch serve` as a careless user meets it: --out pointing at a folder of their own files, at
// the project itself, at a file; a busy port; a bad --port; a symlink out of the served folder.
// Nothing the user had may be deleted or changed, and refusals come before anything is written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { assertTreeKept, runCli, snapshotTree, startCli, tempDir } from "../helpers/cli.js";

const MANIFEST = ".flowmatch-playground.json";
const BUILT = ["index.html", "styles.css", "main.js", "worker.js"];

/** A folder with a user's notes and a (fake) checkpoint in a subfolder. */
function userFolder(): string {
  const dir = tempDir("fm-serve-user-");
  writeFileSync(join(dir, "notes.txt"), "my notes\n");
  mkdirSync(join(dir, "run"));
  writeFileSync(join(dir, "run", "ckpt.safetensors"), Buffer.from([1, 2, 3, 4, 5]));
  return dir;
}

/** Asserts the folder holds exactly the entries it had (kept byte for byte, nothing added). */
function assertUntouched(before: Map<string, string>, root: string): void {
  assertTreeKept(before, root);
  assert.deepEqual([...snapshotTree(root).keys()].sort(), [...before.keys()].sort(), "nothing may be added");
}

function assertOneLineError(stderr: string, pattern: RegExp): void {
  assert.match(stderr, pattern);
  assert.doesNotMatch(stderr, /\n\s+at /, `no stack trace expected:\n${stderr}`);
}

test("--out a folder holding the user's files is refused and every file is kept", () => {
  const dir = userFolder();
  const before = snapshotTree(dir);
  const r = runCli(["serve", "--build-only", "--out", dir]);
  assert.equal(r.code, 1, r.err);
  assertOneLineError(r.err, /not a flowmatch playground build.*--out/);
  assertUntouched(before, dir);
});

test("--out . inside a project is refused and nothing is deleted", () => {
  const project = tempDir("fm-serve-project-");
  writeFileSync(join(project, "package.json"), '{"name":"mine"}\n');
  mkdirSync(join(project, ".git"));
  writeFileSync(join(project, ".git", "HEAD"), "ref: refs/heads/main\n");
  mkdirSync(join(project, "src"));
  writeFileSync(join(project, "src", "index.ts"), "export const x = 1;\n");
  const before = snapshotTree(project);
  const r = runCli(["serve", "--build-only", "--out", "."], { cwd: project });
  assert.equal(r.code, 1, r.err);
  assertOneLineError(r.err, /not a flowmatch playground build/);
  assertUntouched(before, project);
});

test("--out a file is refused and the file is kept", () => {
  const dir = tempDir("fm-serve-file-");
  const file = join(dir, "somefile");
  writeFileSync(file, "precious\n");
  const before = snapshotTree(dir);
  const r = runCli(["serve", "--build-only", "--out", file]);
  assert.equal(r.code, 1, r.err);
  assertOneLineError(r.err, /is a file/);
  assertUntouched(before, dir);
});

test("a second build into a previous build's folder replaces only the files the build wrote", () => {
  const dir = join(tempDir("fm-serve-rebuild-"), "web");
  const first = runCli(["serve", "--build-only", "--out", dir]);
  assert.equal(first.code, 0, first.err);
  for (const name of [...BUILT, MANIFEST]) assert.ok(existsSync(join(dir, name)), `${name} missing after the first build`);
  const fresh = readFileSync(join(dir, "main.js"));
  const manifest = JSON.parse(readFileSync(join(dir, MANIFEST), "utf8")) as { files: string[] };
  for (const name of BUILT) assert.ok(manifest.files.includes(name), `manifest lacks ${name}`);
  // The user adds notes; an older build had written a file this build no longer produces.
  writeFileSync(join(dir, "notes.txt"), "mine\n");
  mkdirSync(join(dir, "shots"));
  writeFileSync(join(dir, "shots", "a.png"), Buffer.from([9, 9]));
  writeFileSync(join(dir, "old-chunk.js"), "// from an older build\n");
  writeFileSync(join(dir, MANIFEST), JSON.stringify({ ...manifest, files: [...manifest.files, "old-chunk.js"] }));
  writeFileSync(join(dir, "main.js"), "// stale\n");
  const userFiles = new Map([...snapshotTree(dir)].filter(([rel]) => rel === "notes.txt" || rel.startsWith("shots")));

  const second = runCli(["serve", "--build-only", "--out", dir]);
  assert.equal(second.code, 0, second.err);
  assertTreeKept(userFiles, dir);
  assert.ok(!existsSync(join(dir, "old-chunk.js")), "a file only the older build wrote should be removed");
  assert.deepEqual(readFileSync(join(dir, "main.js")), fresh, "main.js should be rebuilt");
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.endsWith(".tmp")),
    [],
    "no temp files left",
  );
});

test("a busy port is refused before anything is built", async () => {
  const blocker: Server = createServer();
  await new Promise<void>((done) => blocker.listen(0, "127.0.0.1", done));
  const address = blocker.address();
  const port = typeof address === "object" && address ? address.port : 0;
  try {
    const parent = tempDir("fm-serve-port-");
    const out = join(parent, "web");
    const r = runCli(["serve", "--port", String(port), "--out", out]);
    assert.equal(r.code, 1, r.err);
    assertOneLineError(r.err, new RegExp(`port ${port}.*already in use.*--port`));
    assert.ok(!existsSync(out), "nothing may be built when the port is busy");
  } finally {
    await new Promise<void>((done) => blocker.close(() => done()));
  }
});

test("--port 70000 exits 2 with a message naming the valid range", () => {
  const parent = tempDir("fm-serve-badport-");
  const out = join(parent, "web");
  for (const bad of ["70000", "-1", "8080.5", "http"]) {
    const r = runCli(["serve", "--port", bad, "--out", out]);
    assert.equal(r.code, 2, `--port ${bad}: ${r.err}`);
    assertOneLineError(r.err, /--port.*65535/);
  }
  assert.ok(!existsSync(out), "nothing may be built for a bad flag");
});

test("a symlink inside the served folder that points outside it is not served", async () => {
  const parent = tempDir("fm-serve-link-");
  const secretDir = join(parent, "private");
  mkdirSync(secretDir);
  writeFileSync(join(secretDir, "secret.txt"), "top secret\n");
  const out = join(parent, "web");
  const child = startCli(["serve", "--port", "0", "--out", out]);
  try {
    let stdout = "";
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start within 60 s: ${stderr}`)), 60_000);
      child.stdout?.on("data", (d: Buffer) => {
        stdout += d.toString();
        const m = /playground at (http:\/\/\S+)/.exec(stdout);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
    // Links the user adds while it serves: two out of the folder, one inside it.
    symlinkSync(join(secretDir, "secret.txt"), join(out, "secret.txt"));
    symlinkSync(secretDir, join(out, "private"));
    symlinkSync(join(out, "index.html"), join(out, "alias.html"));
    for (const path of ["secret.txt", "private/secret.txt"]) {
      const res = await fetch(new URL(path, url));
      const body = await res.text();
      assert.ok(res.status === 403 || res.status === 404, `${path} answered ${res.status}`);
      assert.doesNotMatch(body, /top secret/);
    }
    const inside = await fetch(new URL("alias.html", url));
    assert.equal(inside.status, 200, "a link to a file inside the folder is still served");
    const traversal = await fetch(new URL("/%2e%2e/private/secret.txt", url));
    assert.ok(traversal.status === 403 || traversal.status === 404, `traversal answered ${traversal.status}`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
    }
  }
});
