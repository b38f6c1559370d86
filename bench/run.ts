// Benchmark: flowmatch against PyTorch replicas of its own models, measured in the same run.
//
// Each workload runs in fresh child processes (one per flowmatch backend, bench/worker.ts, and one
// PyTorch process, bench/torch_reference.py) so peak RSS is per workload. The children take turns:
// every round each runs a block of about --block-seconds of its iterations while the others wait,
// so all of them see the same machine load. Reported time per iteration is the median over blocks;
// ratio = flowmatch time / PyTorch time from this run (> 1: flowmatch is slower). Without a usable
// PyTorch the reference is "not available" — never a stored number.
//
// Both sides get the same threads (--threads, default 1: PyTorch's better setting on a small shared
// machine); --flowmatch-threads N gives flowmatch a different count (the output says so).
//
// rss-2d trains the 2-D default for 10,000 steps per side (1,000 with --quick) in interleaved chunks
// and reports RSS at start (after the first chunk), middle and end: flat means no leak.
// --busy-loop starts one busy-loop process (pinned to core 0 where taskset exists) for the whole
// run, so every side is measured under the same competing CPU load.
//
// Usage: npm run bench [-- --only mlp,unet-recipe] [--quick] [--backend jax|ort] [--threads N]
//        [--flowmatch-threads N] [--rounds N] [--block-seconds S] [--busy-loop] [--steps N (long runs)]
//        [--python PATH] [--out DIR]
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { encodeSafetensors } from "../src/io/safetensors.js";
import { writeFileAtomic } from "../src/io/atomic.js";
import { BACKENDS, WORKLOADS, initialParams, paramCount, paramTensors, selectWorkloads, type Backend, type Workload } from "./workloads.js";
import { PROTOCOL_PREFIX } from "./protocol.js";

const HERE = import.meta.dirname;
const TORCH_SCRIPT = join(HERE, "torch_reference.py");
const WORKER = join(HERE, "worker.ts");

class BenchError extends Error {}

interface Options {
  only: string[];
  quick: boolean;
  backends: Backend[];
  /** flowmatch's threads: jax-js pool size (FLOWMATCH_THREADS) and onnxruntime intra-op threads. */
  threads: number;
  torchThreads: number;
  rounds: number;
  /** Fewest rounds when slow iterations make `rounds` exceed the per-workload time budget. */
  minRounds: number;
  /** Seconds of timed blocks per workload that the default rounds are cut back to (not with --rounds). */
  budgetSeconds: number;
  blockSeconds: number;
  warmupSeconds: number;
  python: string;
  outDir: string;
  busyLoop: boolean;
  /** Steps of the long (memory) runs instead of the workload's (--steps). */
  steps: number | null;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv.filter((a) => a !== "--"),
    options: {
      only: { type: "string" },
      quick: { type: "boolean", default: false },
      backend: { type: "string" },
      threads: { type: "string", default: "1" },
      "flowmatch-threads": { type: "string" },
      rounds: { type: "string" },
      "block-seconds": { type: "string" },
      python: { type: "string", default: process.env.FLOWMATCH_BENCH_PYTHON ?? "/usr/bin/python3" },
      out: { type: "string", default: join("outputs", "bench") },
      "busy-loop": { type: "boolean", default: false },
      steps: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      readFileSync(new URL(import.meta.url), "utf8")
        .split("\n")
        .filter((l) => l.startsWith("//"))
        .map((l) => l.slice(3))
        .join("\n"),
    );
    process.exit(0);
  }
  const posInt = (flag: string, raw: string): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new BenchError(`--${flag} must be a positive integer, got "${raw}"`);
    return n;
  };
  const posNum = (flag: string, raw: string): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) throw new BenchError(`--${flag} must be a positive number of seconds, got "${raw}"`);
    return n;
  };
  const only = values.only
    ? values.only
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
  for (const name of only) {
    if (selectWorkloads([name]).length === 0)
      throw new BenchError(
        `--only: unknown workload "${name}"; choose from ${WORKLOADS.map((w) => w.id).join(", ")} or a group (mlp, unet, sample)`,
      );
  }
  let backends = [...BACKENDS];
  if (values.backend !== undefined) {
    if (!(BACKENDS as readonly string[]).includes(values.backend))
      throw new BenchError(`--backend must be one of ${BACKENDS.join(", ")}, got "${values.backend}"`);
    backends = [values.backend as Backend];
  }
  const quick = values.quick as boolean;
  return {
    only,
    quick,
    backends,
    threads: posInt(
      values["flowmatch-threads"] === undefined ? "threads" : "flowmatch-threads",
      values["flowmatch-threads"] ?? (values.threads as string),
    ),
    torchThreads: posInt("threads", values.threads as string),
    rounds: values.rounds === undefined ? (quick ? 2 : 5) : posInt("rounds", values.rounds),
    minRounds: values.rounds === undefined ? (quick ? 1 : 3) : posInt("rounds", values.rounds),
    budgetSeconds: quick ? 10 : 100,
    blockSeconds: values["block-seconds"] === undefined ? (quick ? 0.5 : 2) : posNum("block-seconds", values["block-seconds"]),
    warmupSeconds: quick ? 1 : 3,
    python: values.python as string,
    outDir: values.out as string,
    busyLoop: values["busy-loop"] as boolean,
    steps: values.steps === undefined ? null : posInt("steps", values.steps),
  };
}

/** One benchmark child speaking the JSON-lines protocol (flowmatch worker or PyTorch replica). */
class Child {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly replies: string[] = [];
  private waiting: ((line: string | null) => void) | null = null;
  private closed = false;
  private stderr = "";

  constructor(
    readonly label: string,
    command: string,
    args: string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.proc = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    this.proc.stderr.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.proc.on("error", (err) => {
      this.stderr += `\n${err.message}`;
      this.deliver(null);
    });
    createInterface({ input: this.proc.stdout }).on("line", (line) => {
      if (line.startsWith(PROTOCOL_PREFIX)) this.deliver(line.slice(PROTOCOL_PREFIX.length));
    });
    this.proc.on("close", () => {
      this.closed = true;
      this.deliver(null);
    });
  }

  private deliver(line: string | null): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(line);
    } else if (line !== null) this.replies.push(line);
  }

  /** Send one request and wait for its reply; throws with the child's message or its stderr tail. */
  async request<T>(req: object, timeoutMs: number): Promise<T> {
    if (this.closed) throw new BenchError(`${this.label} exited early: ${this.tail()}`);
    this.proc.stdin.write(`${JSON.stringify(req)}\n`);
    const line =
      this.replies.shift() ??
      (await new Promise<string | null>((resolve) => {
        const timer = setTimeout(() => {
          this.waiting = null;
          resolve("timeout");
        }, timeoutMs);
        this.waiting = (l) => {
          clearTimeout(timer);
          resolve(l);
        };
      }));
    if (line === "timeout") {
      this.kill();
      throw new BenchError(`${this.label} did not answer within ${timeoutMs / 1000} s`);
    }
    if (line === null) throw new BenchError(`${this.label} exited: ${this.tail()}`);
    const reply = JSON.parse(line) as T & { error?: string };
    if (reply.error) throw new BenchError(`${this.label}: ${reply.error}`);
    return reply;
  }

  private tail(): string {
    return this.stderr.trim().split("\n").slice(-3).join(" | ") || "no message";
  }

  kill(): void {
    if (!this.closed) this.proc.kill("SIGKILL");
  }
}

interface RunReply {
  iters: number;
  seconds: number;
  rssKiB: number;
}
interface SideResult {
  side: string;
  backend: Backend | "torch";
  threads: string;
  params: number;
  /** Seconds per iteration in each timed block, in round order. */
  blocks: number[];
  iterations: number;
  medianSeconds: number;
  maxRssKiB: number;
  /** RSS after warm-up and after the last timed block (growth = leak suspect). */
  rssFirstKiB: number;
  rssLastKiB: number;
  /** Memory runs (Workload.steps): RSS after the first chunk, at the middle and at the end. */
  rssAt: { step: number; kib: number }[];
}
interface WorkloadResult {
  id: string;
  title: string;
  unit: Workload["unit"];
  kind: Workload["kind"];
  model: Workload["model"];
  batch: number;
  params: number;
  /** Interleaved rounds actually run. */
  rounds: number;
  flowmatch: SideResult[];
  torch: SideResult | null;
  /** Why the reference is missing, when it is. */
  torchNote: string | null;
  /** flowmatch time / PyTorch time per backend (null without a reference). */
  ratios: Record<string, number | null>;
  errors: string[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function loadAvg(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").trim().split(/\s+/).slice(0, 3).join(" ");
  } catch {
    return os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ");
  }
}

interface TorchInfo {
  python: string;
  torch: string | null;
  numpy?: string;
  error?: string;
}

function probeTorch(python: string): TorchInfo {
  const r = spawnSync(python, [TORCH_SCRIPT, "info"], { encoding: "utf8", timeout: 120_000 });
  if (r.error || r.status !== 0) return { python: "", torch: null, error: r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`) };
  try {
    return JSON.parse(r.stdout.trim().split("\n").pop() as string) as TorchInfo;
  } catch {
    return { python: "", torch: null, error: `unexpected output: ${r.stdout.slice(0, 200)}` };
  }
}

/** Show a time per iteration in the workload's unit. */
function formatTime(w: { unit: Workload["unit"]; batch: number }, secs: number): string {
  if (w.unit === "ms/step") return `${(secs * 1000).toFixed(secs < 0.1 ? 2 : 1)} ms/step`;
  if (w.unit === "img/s") return `${(w.batch / secs).toFixed(0)} img/s`;
  return `${secs.toFixed(2)} s/run`;
}

async function runWorkload(w: Workload, opts: Options, torch: TorchInfo, log: (s: string) => void): Promise<WorkloadResult> {
  const result: WorkloadResult = {
    id: w.id,
    title: w.title,
    unit: w.unit,
    kind: w.kind,
    model: w.model,
    batch: w.batch,
    params: paramCount(w),
    rounds: 0,
    flowmatch: [],
    torch: null,
    torchNote: torch.torch ? null : `reference not available (${opts.python}: ${torch.error ?? "no torch"})`,
    ratios: {},
    errors: [],
  };
  const dir = mkdtempSync(join(os.tmpdir(), "flowmatch-bench-"));
  const weights = join(dir, "weights.safetensors");
  await writeFileAtomic(weights, encodeSafetensors(paramTensors(initialParams(w))));
  const env = { ...process.env, FLOWMATCH_THREADS: String(opts.threads) };
  const sides: { child: Child; backend: Backend | "torch"; setup: object }[] = [];
  for (const backend of w.backends.filter((b) => opts.backends.includes(b))) {
    const child = new Child(`flowmatch ${backend}`, process.execPath, ["--import", "tsx", WORKER], env);
    sides.push({ child, backend, setup: { op: "setup", workload: w, weights, backend, threads: opts.threads } });
  }
  if (torch.torch) {
    const t = String(opts.torchThreads);
    const torchEnv = { ...process.env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t };
    const child = new Child("PyTorch", opts.python, ["-u", TORCH_SCRIPT, "serve"], torchEnv);
    sides.push({ child, backend: "torch", setup: { op: "setup", workload: { ...w, weights }, threads: opts.torchThreads } });
  }
  const alive = new Map<(typeof sides)[number], SideResult>();
  const fail = (side: (typeof sides)[number], err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    result.errors.push(msg);
    log(`  ${w.id}: ${msg}`);
    side.child.kill();
    alive.delete(side);
  };
  try {
    // Setup (model build, weight load, compilation) is not timed: run the children side by side.
    await Promise.all(
      sides.map(async (side) => {
        try {
          const r = await side.child.request<{ params: number; threads: string | number }>(side.setup, 600_000);
          if (r.params !== result.params)
            throw new BenchError(`${side.child.label} model has ${r.params} parameters, flowmatch's has ${result.params}`);
          const threads = side.backend === "torch" ? `PyTorch ${r.threads}` : String(r.threads);
          alive.set(side, {
            side: side.child.label,
            backend: side.backend,
            threads,
            params: r.params,
            blocks: [],
            iterations: 0,
            medianSeconds: NaN,
            maxRssKiB: 0,
            rssFirstKiB: 0,
            rssLastKiB: 0,
            rssAt: [],
          });
        } catch (err) {
          fail(side, err);
        }
      }),
    );
    const runTimeout = (s: number) => 600_000 + 20_000 * s;
    const steps = "steps" in w && w.steps ? (opts.steps ?? (opts.quick ? Math.min(w.steps, 1000) : w.steps)) : 0;
    if (steps) {
      // Memory run: chunks of steps, sides taking turns; each chunk's time per step is a block.
      const chunks = 20;
      const per = Math.ceil(steps / chunks);
      for (let c = 0; c < chunks; c++) {
        for (const side of sides) {
          const res = alive.get(side);
          if (!res) continue;
          try {
            const r = await side.child.request<RunReply>({ op: "run", seconds: 0, minIters: per }, runTimeout(per));
            res.blocks.push(r.seconds / r.iters);
            res.iterations += r.iters;
            if (c === 0) res.rssFirstKiB = r.rssKiB;
            res.rssLastKiB = r.rssKiB;
            if (c === 0 || c === chunks / 2 - 1 || c === chunks - 1) res.rssAt.push({ step: res.iterations, kib: r.rssKiB });
          } catch (err) {
            fail(side, err);
          }
        }
      }
      result.rounds = chunks;
    }
    // Warm-up one at a time (JIT tier-up, allocator growth), then interleaved timed blocks.
    let roundSeconds = 0;
    for (const side of steps ? [] : sides) {
      const res = alive.get(side);
      if (!res) continue;
      try {
        const r = await side.child.request<RunReply>(
          { op: "run", seconds: opts.warmupSeconds, minIters: 1 },
          runTimeout(opts.warmupSeconds),
        );
        res.rssFirstKiB = r.rssKiB;
        roundSeconds += Math.max(opts.blockSeconds, r.seconds / r.iters);
      } catch (err) {
        fail(side, err);
      }
    }
    // A block is at least one iteration: when iterations are slow (a loaded machine), fewer rounds.
    if (!steps) result.rounds = Math.max(opts.minRounds, Math.min(opts.rounds, Math.floor(opts.budgetSeconds / roundSeconds)));
    if (!steps && result.rounds < opts.rounds) log(`  ${w.id}: ${result.rounds} rounds (one round takes ~${roundSeconds.toFixed(0)} s)`);
    for (let round = 0; round < (steps ? 0 : result.rounds); round++) {
      for (const side of sides) {
        const res = alive.get(side);
        if (!res) continue;
        try {
          const r = await side.child.request<RunReply>(
            { op: "run", seconds: opts.blockSeconds, minIters: 1 },
            runTimeout(opts.blockSeconds),
          );
          res.blocks.push(r.seconds / r.iters);
          res.iterations += r.iters;
          res.rssLastKiB = r.rssKiB;
        } catch (err) {
          fail(side, err);
        }
      }
    }
    for (const side of sides) {
      const res = alive.get(side);
      if (!res) continue;
      try {
        const r = await side.child.request<{ maxRssKiB: number }>({ op: "finish" }, 60_000);
        res.maxRssKiB = r.maxRssKiB;
        res.medianSeconds = median(res.blocks);
        if (side.backend === "torch") result.torch = res;
        else result.flowmatch.push(res);
      } catch (err) {
        fail(side, err);
      }
    }
  } finally {
    for (const side of sides) side.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  if (torch.torch && !result.torch) result.torchNote = "reference failed (see errors)";
  for (const fm of result.flowmatch) result.ratios[fm.backend] = result.torch ? fm.medianSeconds / result.torch.medianSeconds : null;
  return result;
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: os.availableParallelism(),
    memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

function table(results: WorkloadResult[], torchVersion: string | null): string {
  const lines = [
    `| workload | flowmatch (backend, threads) | PyTorch${torchVersion ? ` ${torchVersion}` : ""} | ratio (time, flowmatch / PyTorch) | peak RSS flowmatch / PyTorch | flowmatch RSS change over the timed blocks (long runs: RSS at start, middle, end) |`,
    "|---|---|---|---|---|---|",
  ];
  const mib = (kib: number) => `${Math.round(kib / 1024)} MiB`;
  const growth = (s: SideResult) =>
    s.rssAt.length
      ? `${s.rssAt.map((a) => `${mib(a.kib)} at step ${a.step}`).join(", ")}`
      : `${s.rssLastKiB >= s.rssFirstKiB ? "+" : ""}${((s.rssLastKiB - s.rssFirstKiB) / 1024).toFixed(1)} MiB over ${s.iterations} it`;
  for (const r of results) {
    const ref = r.torch
      ? formatTime(r, r.torch.medianSeconds)
      : r.torchNote?.startsWith("reference failed")
        ? "reference failed"
        : "reference not available";
    if (r.flowmatch.length === 0) lines.push(`| ${r.title} | failed: ${r.errors.join("; ")} | ${ref} | | | |`);
    for (const fm of r.flowmatch) {
      const ratio = r.ratios[fm.backend];
      const ratioText = ratio === null || ratio === undefined ? "reference not available" : `${ratio.toFixed(2)}`;
      const rss = `${mib(fm.maxRssKiB)} / ${r.torch ? mib(r.torch.maxRssKiB) : "-"}`;
      const torchRss = r.torch?.rssAt.length ? `; PyTorch ${growth(r.torch)}` : "";
      lines.push(
        `| ${r.title} | ${formatTime(r, fm.medianSeconds)} (${fm.backend}, ${fm.threads}) | ${ref} | ${ratioText} | ${rss} | ${growth(fm)}${torchRss} |`,
      );
    }
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(2);
  }
  const workloads = selectWorkloads(opts.only);
  const startedAt = new Date();
  const loadStart = loadAvg();
  const torch = probeTorch(opts.python);
  const machine = machineInfo();
  const log = (s: string) => console.error(s);
  const threadsLine =
    `threads: flowmatch ${opts.threads} (jax-js pool; onnxruntime: intra-op threads for the MLPs, one data-parallel batch shard per thread for the UNets); PyTorch ${opts.torchThreads} (torch.set_num_threads)` +
    (opts.threads === opts.torchThreads ? "" : " -- not the same threads, so the ratio is not like for like");
  console.log(
    `flowmatch bench ${startedAt.toISOString()}${opts.quick ? " (quick)" : ""}: ${opts.rounds} interleaved rounds (fewer, at least ${opts.minRounds}, when slow) of ~${opts.blockSeconds} s blocks per side, median per iteration`,
  );
  console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}; node ${process.version}`);
  console.log(
    torch.torch
      ? `reference: PyTorch ${torch.torch} (python ${torch.python}, numpy ${torch.numpy}) replicas of the same models and weights`
      : `reference not available: ${opts.python}: ${torch.error}`,
  );
  console.log(threadsLine);
  console.log(`load average (1/5/15 min) at start: ${loadStart}`);
  const busy = Number(loadStart.split(" ")[0]) >= machine.cores;
  if (busy)
    console.log(
      `note: the machine is busy (load ${loadStart.split(" ")[0]} on ${machine.cores} cores): times are slow and noisy; the interleaved ratio less so, but use more rounds before trusting it`,
    );
  let busyLoop: ChildProcessWithoutNullStreams | null = null;
  if (opts.busyLoop) {
    const pin = spawnSync("taskset", ["--version"]).status === 0;
    const loop = [process.execPath, "-e", "for (;;) {}"];
    busyLoop = pin ? spawn("taskset", ["-c", "0", ...loop]) : spawn(loop[0], loop.slice(1));
    const loopProc = busyLoop;
    process.on("exit", () => loopProc.kill("SIGKILL"));
    console.log(
      `competing load: one busy-loop process (pid ${busyLoop.pid}${pin ? ", pinned to core 0" : ""}) runs for the whole benchmark`,
    );
  }
  const results: WorkloadResult[] = [];
  for (const w of workloads) {
    log(`running ${w.id} ...`);
    const r = await runWorkload(w, opts, torch, log);
    results.push(r);
    for (const fm of r.flowmatch) {
      const ratio = r.ratios[fm.backend];
      log(
        `  ${w.id} [${fm.backend}]: ${formatTime(r, fm.medianSeconds)}; PyTorch ${r.torch ? formatTime(r, r.torch.medianSeconds) : "n/a"}; ratio ${ratio == null ? "reference not available" : ratio.toFixed(2)}`,
      );
    }
  }
  busyLoop?.kill("SIGKILL");
  const loadEnd = loadAvg();
  console.log(`load average (1/5/15 min) at end: ${loadEnd}`);
  console.log("");
  console.log(table(results, torch.torch));
  console.log("");
  console.log("ratio = flowmatch time / PyTorch time per iteration, both measured in this run (> 1: flowmatch slower).");
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    mode: {
      quick: opts.quick,
      rounds: opts.rounds,
      minRounds: opts.minRounds,
      budgetSeconds: opts.budgetSeconds,
      blockSeconds: opts.blockSeconds,
      warmupSeconds: opts.warmupSeconds,
    },
    machine,
    load: { start: loadStart, end: loadEnd },
    node: process.version,
    torch: torch.torch
      ? { version: torch.torch, python: torch.python, numpy: torch.numpy ?? null }
      : { version: null, note: `reference not available: ${torch.error}` },
    threads: { flowmatch: opts.threads, torch: opts.torchThreads },
    busyLoop: opts.busyLoop,
    results,
  };
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const out = join(opts.outDir, `bench-${stamp}.json`);
  await writeFileAtomic(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`results: ${out}`);
  if (results.some((r) => r.errors.length > 0)) process.exitCode = 1;
}

await main();
