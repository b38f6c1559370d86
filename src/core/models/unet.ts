// Class- and time-conditional UNet velocity field for images, NHWC throughout.
//
// Layout (L = channels.length levels, L-1 downsamples, N = resBlocks, default 1):
//   emb = dense(silu(dense(sinus(1000 t)))) + classTable[y]        (label numClasses = null class)
//   h = stem(x)                                  3x3 conv inChannels -> c0
//   down.i  (i < L-1): N res blocks (first c_{i-1} -> c_i) -> skip_i, then stride-2 3x3 conv
//   mid: N res blocks (first c_{L-2} -> c_{L-1}) at the coarsest resolution
//   up.i    (i = L-2..0): nearest 2x + 3x3 conv c_{i+1} -> c_i, concat skip_i (2 c_i), N res blocks -> c_i
//   out: GroupNorm, SiLU, 3x3 conv c0 -> inChannels (zero-initialised, so training starts at v = 0)
// Res block: GN, SiLU, conv, + dense(silu(emb)), GN, SiLU, conv, + (1x1 conv) shortcut.
// At the resolutions listed in `attention`, every res block is followed by self-attention
// (layers.ts selfAttention: GN, multi-head softmax(QK^T/sqrt(d))V, output projection, residual).
// Block j of a stage is named `res` (j = 0) or `res${j}`, its attention `attn` or `attn${j}`, so a
// config without the new fields (one block, no attention) has exactly the parameters it always had.
// Conv weights are stored as im2col matrices [k*k*Cin, Cout] in (ky, kx, cin) order.
// The interface is NHWC; inside, activations are [H, B, W, C] (faster convs on Wasm, see layers.ts),
// or [B, C, H, W] with the engine's conv primitive when the step runs on onnxruntime.
import { np, type Array } from "../../engine/index.js";
import { UserError } from "../errors.js";
import type { Rng } from "../rng.js";
import type { HostParams, Params } from "../optim.js";
import { configReader, invalidFields, paramCountOf, type ModelFamily, type VelocityModel } from "./family.js";
// memory.ts imports this module too; the family only holds references to its functions, so either may load first.
import { unetForwardBytes, unetTrainBytes } from "../memory.js";
import {
  conv2d,
  dense,
  embeddingLookup,
  groupNorm,
  heNormal,
  selfAttention,
  silu,
  timeEmbedding,
  upsample2x,
  type ImageLayout,
} from "./layers.js";

/**
 * Shape of the class-conditional image UNet: channel widths per resolution, time embedding, GroupNorm
 * groups, and the images' classes, channels and size.
 */
export interface UnetConfig {
  /** Channel width per resolution level, e.g. [32, 64, 64]; length - 1 downsamples. */
  channels: number[];
  /** Number of real classes; label `numClasses` is the null (unconditional) class. */
  numClasses: number;
  /** Size of the sinusoidal time features and of the shared time+class embedding. */
  timeEmbDim: number;
  /** GroupNorm groups; must divide every channel count (including skip concatenations). */
  groups: number;
  inChannels: number;
  height: number;
  width: number;
  /** Residual blocks per resolution level (default 1; absent in older checkpoints). */
  resBlocks?: number;
  /** Feature-map heights in pixels (e.g. [16] for 32x32 images) whose res blocks are followed by self-attention; default none. */
  attention?: number[];
  /** Attention heads (default 1); must divide the channel width at every attention level. */
  attentionHeads?: number;
}

/** resBlocks, attention and attentionHeads with their defaults filled in (configs may omit them). */
export function unetOptions(cfg: UnetConfig): { resBlocks: number; attention: number[]; attentionHeads: number } {
  return { resBlocks: cfg.resBlocks ?? 1, attention: cfg.attention ?? [], attentionHeads: cfg.attentionHeads ?? 1 };
}

/** The architecture train-image builds unless told otherwise (the data gives classes, channels and size). */
export const DEFAULT_UNET: Omit<UnetConfig, "numClasses" | "inChannels" | "height" | "width"> = {
  channels: [16, 32, 32],
  timeEmbDim: 64,
  groups: 8,
};

/**
 * The options of `cfg` that differ from their defaults, for a checkpoint config: a run with the
 * defaults records none of them, so its config reads exactly like an older one.
 */
export function recordedUnetOptions(cfg: UnetConfig): Pick<UnetConfig, "resBlocks" | "attention" | "attentionHeads"> {
  const { resBlocks, attention, attentionHeads } = unetOptions(cfg);
  return {
    ...(resBlocks !== 1 ? { resBlocks } : {}),
    ...(attention.length > 0 ? { attention: attention.slice() } : {}),
    ...(attention.length > 0 && attentionHeads !== 1 ? { attentionHeads } : {}),
  };
}

/** Throws UserError when the config cannot build a network. */
export function checkUnetConfig(cfg: UnetConfig): void {
  const { channels, groups } = cfg;
  if (channels.length < 2) throw new UserError(`UNet needs at least 2 channel levels, got [${channels}]; pass e.g. --channels 32,64,64`);
  for (const c of channels) {
    if (!Number.isInteger(c) || c < 1 || c % groups !== 0) {
      throw new UserError(
        `UNet channel width ${c} is not a positive multiple of groups=${groups}; pick widths divisible by the group count`,
      );
    }
  }
  const div = 2 ** (channels.length - 1);
  if (cfg.height % div !== 0 || cfg.width % div !== 0) {
    throw new UserError(
      `image size ${cfg.height}x${cfg.width} must be divisible by ${div} for ${channels.length} UNet levels; use fewer --channels levels or resize the images`,
    );
  }
  if (cfg.timeEmbDim < 2 || cfg.timeEmbDim % 2 !== 0) throw new UserError(`timeEmbDim must be an even number >= 2, got ${cfg.timeEmbDim}`);
  const { resBlocks, attention, attentionHeads } = unetOptions(cfg);
  if (!Number.isInteger(resBlocks) || resBlocks < 1) throw new UserError(`--res-blocks must be a positive integer, got ${resBlocks}`);
  if (!Number.isInteger(attentionHeads) || attentionHeads < 1)
    throw new UserError(`--attention-heads must be a positive integer, got ${attentionHeads}`);
  const sizes = channels.map((_, level) => cfg.height / 2 ** level);
  for (const r of attention) {
    const level = sizes.indexOf(r);
    if (level < 0)
      throw new UserError(`--attention ${r}: no UNet level is ${r} pixels high (the levels are ${sizes.join(", ")}); pick from those`);
    if (channels[level] % attentionHeads !== 0)
      throw new UserError(
        `--attention-heads ${attentionHeads} does not divide the ${channels[level]} channels at resolution ${r}; pick a divisor`,
      );
  }
}

interface ResBlockSpec {
  prefix: string;
  /** Resolution level (0 = full size). */
  level: number;
  cin: number;
  cout: number;
  /** Prefix of the self-attention after this block, or null. */
  attn: string | null;
}

/** One stage's res blocks (first cin -> cout, the rest cout -> cout), each followed by attention at attention resolutions. */
function stage(cfg: UnetConfig, base: string, level: number, cin: number, cout: number): ResBlockSpec[] {
  const { resBlocks, attention } = unetOptions(cfg);
  const attend = attention.includes(cfg.height / 2 ** level);
  return Array.from({ length: resBlocks }, (_, j) => ({
    prefix: `${base}.res${j === 0 ? "" : j}`,
    level,
    cin: j === 0 ? cin : cout,
    cout,
    attn: attend ? `${base}.attn${j === 0 ? "" : j}` : null,
  }));
}

/** The residual blocks per stage in execution order (shared by shapes, apply and memory estimates). */
export function unetBlocks(cfg: UnetConfig): { down: ResBlockSpec[][]; mid: ResBlockSpec[]; up: ResBlockSpec[][] } {
  const ch = cfg.channels;
  const L = ch.length;
  const down: ResBlockSpec[][] = [];
  for (let i = 0; i < L - 1; i++) down.push(stage(cfg, `down.${i}`, i, i === 0 ? ch[0] : ch[i - 1], ch[i]));
  const mid = stage(cfg, "mid", L - 1, ch[L - 2], ch[L - 1]);
  const up: ResBlockSpec[][] = [];
  for (let i = L - 2; i >= 0; i--) up.push(stage(cfg, `up.${i}`, i, 2 * ch[i], ch[i]));
  return { down, mid, up };
}

/** Every parameter's name and shape for `cfg` (checks the config first): what initUnetParams fills and checkpoints hold. */
export function unetParamShapes(cfg: UnetConfig): Record<string, number[]> {
  checkUnetConfig(cfg);
  const E = cfg.timeEmbDim;
  const ch = cfg.channels;
  const s: Record<string, number[]> = {};
  const conv = (name: string, cin: number, cout: number, k = 3) => {
    s[`${name}.weight`] = [k * k * cin, cout];
    s[`${name}.bias`] = [cout];
  };
  const norm = (name: string, c: number) => {
    s[`${name}.weight`] = [c];
    s[`${name}.bias`] = [c];
  };
  s["time.0.weight"] = [E, E];
  s["time.0.bias"] = [E];
  s["time.1.weight"] = [E, E];
  s["time.1.bias"] = [E];
  s["class.weight"] = [cfg.numClasses + 1, E];
  conv("stem", cfg.inChannels, ch[0]);
  const dense = (name: string, cin: number, cout: number) => {
    s[`${name}.weight`] = [cin, cout];
    s[`${name}.bias`] = [cout];
  };
  const res = (blocks: ResBlockSpec[]) => {
    for (const { prefix, cin, cout, attn } of blocks) {
      norm(`${prefix}.norm1`, cin);
      conv(`${prefix}.conv1`, cin, cout);
      dense(`${prefix}.emb`, E, cout);
      norm(`${prefix}.norm2`, cout);
      conv(`${prefix}.conv2`, cout, cout);
      if (cin !== cout) conv(`${prefix}.skip`, cin, cout, 1);
      if (attn !== null) {
        norm(`${attn}.norm`, cout);
        dense(`${attn}.qkv`, cout, 3 * cout);
        dense(`${attn}.proj`, cout, cout);
      }
    }
  };
  const { down, mid, up } = unetBlocks(cfg);
  down.forEach((blocks, i) => {
    res(blocks);
    conv(`down.${i}.downsample`, ch[i], ch[i]);
  });
  res(mid);
  for (const blocks of up) {
    const i = blocks[0].level;
    conv(`up.${i}.upsample`, ch[i + 1], ch[i]);
    res(blocks);
  }
  norm("out.norm", ch[0]);
  conv("out.conv", ch[0], cfg.inChannels);
  return s;
}

/** Number of trainable weights of the UNet `cfg` builds. */
export function unetParamCount(cfg: UnetConfig): number {
  return paramCountOf(unetParamShapes(cfg));
}

/**
 * Host initialisation from the seeded Rng (identical weights on every device): He-normal conv and
 * dense weights, zero biases, unit norms, N(0, 1) class table, and zeros for the last conv, for
 * each block's second conv and each attention's output projection (so every residual block and
 * every attention starts as the identity).
 */
export function initUnet(cfg: UnetConfig, rng: Rng): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(unetParamShapes(cfg))) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name === "class.weight") out[name] = rng.normals(n);
    else if (/norm\d?\.weight$/.test(name)) out[name] = new Float32Array(n).fill(1);
    else if (name.endsWith(".bias") || name === "out.conv.weight" || name.endsWith(".conv2.weight") || name.endsWith(".proj.weight"))
      out[name] = new Float32Array(n);
    else out[name] = heNormal(rng, n, shape[0]);
  }
  return out;
}

/** A stage's res blocks (and attentions) in order; consumes x and embAct. */
function resBlocks(params: Params, blocks: ResBlockSpec[], x: Array, embAct: Array, cfg: UnetConfig, layout: ImageLayout): Array {
  let h = x;
  for (const spec of blocks) {
    h = resBlock(params, spec, h, embAct.ref, cfg.groups, layout);
    if (spec.attn !== null) h = selfAttention(params, spec.attn, h, unetOptions(cfg).attentionHeads, cfg.groups, layout);
  }
  embAct.dispose();
  return h;
}

function resBlock(params: Params, spec: ResBlockSpec, x: Array, embAct: Array, groups: number, layout: ImageLayout): Array {
  const { prefix, cin, cout } = spec;
  const b = x.shape[layout === "nchw" ? 0 : 1];
  let h = conv2d(params, `${prefix}.conv1`, silu(groupNorm(params, `${prefix}.norm1`, x.ref, groups, undefined, layout)), { layout });
  h = h.add(dense(params, `${prefix}.emb`, embAct).reshape(layout === "nchw" ? [b, cout, 1, 1] : [1, b, 1, cout]));
  h = conv2d(params, `${prefix}.conv2`, silu(groupNorm(params, `${prefix}.norm2`, h, groups, undefined, layout)), { layout });
  const shortcut = cin === cout ? x : conv2d(params, `${prefix}.skip`, x, { kernel: 1, layout });
  return h.add(shortcut);
}

/**
 * Velocity v(x, t, y). x: [B, H, W, C] float32, t: [B] in [0, 1], y: [B] int32 labels (numClasses =
 * null class). Consumes x, t, y and the params record (like every VelocityModel.apply). `layout`
 * picks the internal activation layout and convolution form (see ImageLayout); the result is the same.
 */
export function unetApply(params: Params, x: Array, t: Array, y: Array, cfg: UnetConfig, layout: ImageLayout = "hbwc"): Array {
  const { down, mid, up } = unetBlocks(cfg);
  const g = cfg.groups;
  let emb = dense(params, "time.0", timeEmbedding(t, cfg.timeEmbDim));
  emb = dense(params, "time.1", silu(emb));
  emb = emb.add(embeddingLookup(params, "class", y));
  const embAct = silu(emb);

  // NHWC in and out; one transpose to the internal layout on entry, one back on exit.
  const [toInner, toNhwc] =
    layout === "nchw"
      ? [
          [0, 3, 1, 2],
          [0, 2, 3, 1],
        ]
      : [
          [1, 0, 2, 3],
          [1, 0, 2, 3],
        ];
  const channelAxis = layout === "nchw" ? 1 : 3;
  let h = conv2d(params, "stem", x.transpose(toInner), { layout });
  const skips: Array[] = [];
  down.forEach((blocks, i) => {
    h = resBlocks(params, blocks, h, embAct.ref, cfg, layout);
    skips.push(h.ref);
    h = conv2d(params, `down.${i}.downsample`, h, { stride: 2, layout });
  });
  h = resBlocks(params, mid, h, embAct.ref, cfg, layout);
  for (const blocks of up) {
    const i = blocks[0].level;
    h = conv2d(params, `up.${i}.upsample`, upsample2x(h, layout), { layout });
    h = np.concatenate([h, skips[i]], channelAxis);
    h = resBlocks(params, blocks, h, embAct.ref, cfg, layout);
  }
  embAct.dispose();
  h = conv2d(params, "out.conv", silu(groupNorm(params, "out.norm", h, g, undefined, layout)), { layout });
  for (const p of Object.values(params)) p.dispose();
  return h.transpose(toNhwc);
}

/** The UNet as a VelocityModel; layout "nchw" for steps traced to onnxruntime (native Conv), see ImageLayout. */
export function unetModel(cfg: UnetConfig, layout: ImageLayout = "hbwc"): VelocityModel {
  return { apply: (params, x, t, labels) => unetApply(params, x, t, labels as NonNullable<typeof labels>, cfg, layout) };
}

/** Fresh UNet weights as HostParams (what FlowTrainer and checkpoints take); the values of initUnet. */
export function initUnetParams(cfg: UnetConfig, rng: Rng): HostParams {
  const shapes = unetParamShapes(cfg);
  const data = initUnet(cfg, rng);
  const out: HostParams = {};
  for (const [name, shape] of Object.entries(shapes)) out[name] = { shape, data: data[name] };
  return out;
}

function isEmptyList(raw: unknown, key: string): boolean {
  const v = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>)[key] : undefined;
  return Array.isArray(v) && v.length === 0;
}

/** Throws UserError unless `raw` is a whole, buildable UNet config. */
export function parseUnetConfig(raw: unknown, source: string): UnetConfig {
  const r = configReader(raw);
  const cfg: UnetConfig = {
    channels: r.ints("channels"),
    numClasses: r.int("numClasses", 1),
    timeEmbDim: r.int("timeEmbDim", 2),
    groups: r.int("groups", 1),
    // Written since the first release, but a hand-made or older grey config may lack it: grey.
    inChannels: r.has("inChannels") ? r.int("inChannels", 1) : 1,
    height: r.int("height", 1),
    width: r.int("width", 1),
    // Absent in older checkpoints (one block per level, no attention): kept absent, so they load as before.
    ...(r.has("resBlocks") ? { resBlocks: r.int("resBlocks", 1) } : {}),
    // An explicit [] means no attention, like an absent field (invalidFields reads [] as invalid).
    ...(r.has("attention") && !isEmptyList(raw, "attention") ? { attention: r.ints("attention") } : {}),
    ...(r.has("attentionHeads") ? { attentionHeads: r.int("attentionHeads", 1) } : {}),
  };
  const bad = invalidFields(cfg);
  if (bad.length > 0)
    throw new UserError(
      `${source}: checkpoint config has no valid UNet "model" section (${bad.join(", ")} missing or invalid); re-run training to write it again`,
    );
  try {
    checkUnetConfig(cfg);
  } catch (err) {
    throw new UserError(`${source} has an invalid UNet config: ${err instanceof Error ? err.message : String(err)}`);
  }
  return cfg;
}

/** The class-conditional image UNet, saved as checkpoint kind "image". */
export const unetFamily: ModelFamily<UnetConfig> = {
  kind: "image",
  name: "UNet",
  defaults: DEFAULT_UNET,
  parseConfig: parseUnetConfig,
  paramShapes: unetParamShapes,
  paramCount: unetParamCount,
  init: initUnetParams,
  // Native Conv/ConvTranspose on onnxruntime (NCHW), row-band convolutions on jax-js (HBWC).
  model: (cfg, opts) => unetModel(cfg, opts?.runtime === "onnxruntime" ? "nchw" : "hbwc"),
  sampleShape: (cfg) => [cfg.height, cfg.width, cfg.inChannels],
  nullLabel: (cfg) => cfg.numClasses,
  describe: (cfg) => {
    const { resBlocks, attention, attentionHeads } = unetOptions(cfg);
    const extra = [
      ...(resBlocks !== 1 ? [`${resBlocks} res blocks`] : []),
      ...(attention.length > 0 ? [`attention at ${attention.join(", ")}${attentionHeads > 1 ? ` (${attentionHeads} heads)` : ""}`] : []),
    ];
    return `UNet [${cfg.channels.join(", ")}]${extra.map((e) => ` · ${e}`).join("")} · ${cfg.numClasses} classes · ${cfg.height}×${cfg.width}`;
  },
  memory: {
    trainBytes: unetTrainBytes,
    forwardBytes: unetForwardBytes,
    smaller: "--channels, --res-blocks or --attention, or smaller images",
  },
  shapeFlags: {
    layers: "the number of --channels or --res-blocks",
    sizes: "--channels, --time-emb-dim, --attention, the image's colour channels, or the number of classes",
  },
  mismatchHint: 'The checkpoint\'s UNet config (ckpt.json "model") does not match its weights; re-run training.',
};
