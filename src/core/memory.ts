// Engine memory estimates. The Wasm heap is capped at 4 GiB (memory32) and an allocation beyond it
// fails deep inside a step with a stack trace, after minutes of work. jax-js keeps every buffer of a
// jitted step alive until the step ends and its allocator never shrinks, so a step needs far more
// than its tensors' sizes suggest. The factors below are measured (peak RSS of single steps on
// jax-js 0.1.25, Node 20; see each function) and rounded down, so the estimates err low: a setup they
// refuse cannot fit, and a borderline one they pass is caught as a last resort by the CLI.
import { UserError } from "./errors.js";
import type { ModelFamily } from "./models/family.js";
import { mlpLayerSizes, mlpParamCount, type MlpConfig } from "./models/mlp.js";
import { unetBlocks, unetOptions, unetParamCount, type UnetConfig } from "./models/unet.js";

/** The engine's Wasm heap limit (memory32). */
export const ENGINE_MEMORY_LIMIT = 4 * 1024 ** 3;
const F32 = 4;

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 4) return `${(bytes / 1024 ** 4).toFixed(1)} TiB`;
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  return `${Math.ceil(bytes / 1024 ** 2)} MiB`;
}

/**
 * One training step. Measured: about 19 floats per parameter (weights, gradient, Adam m and v, EMA
 * and the update's temporaries; hidden 3072 and 4096 at batch 8) and about 12 floats per unit of
 * layer width per sample (hidden 64 at batch 131072 and 262144). Counted as 16 and 10.
 */
export function mlpTrainBytes(cfg: MlpConfig, batch: number): number {
  const widths = mlpLayerSizes(cfg).reduce((a, b) => a + b, 0);
  return F32 * (16 * mlpParamCount(cfg) + 10 * batch * widths);
}

/**
 * A forward pass over n points at once (how the solvers call the field). Measured: 2 floats per unit
 * of layer width per sample (hidden 256, n = 500000); counted as 1.8.
 */
export function mlpForwardBytes(cfg: MlpConfig, n: number): number {
  const widths = mlpLayerSizes(cfg).reduce((a, b) => a + b, 0);
  return F32 * (mlpParamCount(cfg) + 1.8 * n * widths);
}

/**
 * Per-sample activation floats of one UNet forward pass: each 3x3 conv's row buffer (3 Cin) and
 * output, plus the GroupNorm and SiLU before it; each self-attention's norm, q/k/v, output and
 * projection (6 C per pixel) and its score, exponential and softmax matrices (3 heads N^2, N pixels).
 */
function unetActivationsPerSample(cfg: UnetConfig): number {
  const ch = cfg.channels;
  const px = (level: number) => (cfg.height / 2 ** level) * (cfg.width / 2 ** level);
  const heads = unetOptions(cfg).attentionHeads;
  let total = 0;
  const conv = (level: number, cin: number, cout: number) => {
    total += px(level) * (3 * cin + cout + 2 * cin);
  };
  conv(0, cfg.inChannels, ch[0]);
  const { down, mid, up } = unetBlocks(cfg);
  const res = (blocks: { level: number; cin: number; cout: number; attn: string | null }[]) => {
    for (const b of blocks) {
      conv(b.level, b.cin, b.cout);
      conv(b.level, b.cout, b.cout);
      if (b.attn !== null) total += px(b.level) * 6 * b.cout + 3 * heads * px(b.level) ** 2;
    }
  };
  down.forEach((blocks, i) => {
    res(blocks);
    conv(i, ch[i], ch[i]);
  });
  res(mid);
  for (const blocks of up) {
    const i = blocks[0].level;
    conv(i, ch[i + 1], ch[i]);
    res(blocks);
  }
  conv(0, ch[0], cfg.inChannels);
  return total;
}

/**
 * One training step. Measured: about 13 times the activation count per sample (channels 32,64,64 and
 * 16,32,32 on 28x28, 32,64,64 on 64x64); counted as 12.
 */
export function unetTrainBytes(cfg: UnetConfig, batch: number): number {
  return F32 * (16 * unetParamCount(cfg) + 12 * batch * unetActivationsPerSample(cfg));
}

/**
 * A forward pass over n images at once. Measured: about 1.4 times the activation count per sample
 * (channels 32,64,64 on 28x28, n = 160); counted as 1.3.
 */
export function unetForwardBytes(cfg: UnetConfig, n: number): number {
  return F32 * (unetParamCount(cfg) + 1.3 * n * unetActivationsPerSample(cfg));
}

/**
 * Refuses a forward pass over `n` samples at once through a model of `family` when it cannot fit in
 * the engine heap (families without memory estimates pass).
 */
export function assertForwardFits<C>(family: ModelFamily<C>, cfg: C, n: number, what: string, fix: string): void {
  const bytes = family.memory?.forwardBytes(cfg, n);
  if (bytes !== undefined) assertEngineFits(bytes, what, fix);
}

/** Throws a UserError naming the estimate, the limit and the fix when `bytes` exceed the engine heap. */
export function assertEngineFits(bytes: number, what: string, fix: string): void {
  if (bytes > ENGINE_MEMORY_LIMIT) {
    throw new UserError(
      `${what} needs about ${formatBytes(bytes)} of engine memory, ` +
        `more than the engine's ${formatBytes(ENGINE_MEMORY_LIMIT)} limit (WebAssembly memory32); ${fix}`,
    );
  }
}
