// Class- and time-conditional UNet velocity field for images, NHWC throughout.
//
// Layout (L = channels.length levels, L-1 downsamples):
//   emb = dense(silu(dense(sinus(1000 t)))) + classTable[y]        (label numClasses = null class)
//   h = stem(x)                                  3x3 conv inChannels -> c0
//   down.i  (i < L-1): res block -> skip_i, then stride-2 3x3 conv   c_{i-1} -> c_i
//   mid: res block c_{L-2} -> c_{L-1} at the coarsest resolution
//   up.i    (i = L-2..0): nearest 2x + 3x3 conv c_{i+1} -> c_i, concat skip_i (2 c_i), res block -> c_i
//   out: GroupNorm, SiLU, 3x3 conv c0 -> inChannels (zero-initialised, so training starts at v = 0)
// Res block: GN, SiLU, conv, + dense(silu(emb)), GN, SiLU, conv, + (1x1 conv) shortcut.
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
import { conv2d, dense, embeddingLookup, groupNorm, heNormal, silu, timeEmbedding, upsample2x, type ImageLayout } from "./layers.js";

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
}

/** The architecture train-image builds unless told otherwise (the data gives classes, channels and size). */
export const DEFAULT_UNET: Omit<UnetConfig, "numClasses" | "inChannels" | "height" | "width"> = {
  channels: [32, 64, 64],
  timeEmbDim: 64,
  groups: 8,
};

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
}

interface ResBlockSpec {
  prefix: string;
  /** Resolution level (0 = full size). */
  level: number;
  cin: number;
  cout: number;
}

/** The residual blocks in execution order (shared by shapes, apply and the ONNX exporter). */
export function unetBlocks(cfg: UnetConfig): { down: ResBlockSpec[]; mid: ResBlockSpec; up: ResBlockSpec[] } {
  const ch = cfg.channels;
  const L = ch.length;
  const down: ResBlockSpec[] = [];
  for (let i = 0; i < L - 1; i++) down.push({ prefix: `down.${i}.res`, level: i, cin: i === 0 ? ch[0] : ch[i - 1], cout: ch[i] });
  const mid = { prefix: "mid.res", level: L - 1, cin: ch[L - 2], cout: ch[L - 1] };
  const up: ResBlockSpec[] = [];
  for (let i = L - 2; i >= 0; i--) up.push({ prefix: `up.${i}.res`, level: i, cin: 2 * ch[i], cout: ch[i] });
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
  const res = ({ prefix, cin, cout }: ResBlockSpec) => {
    norm(`${prefix}.norm1`, cin);
    conv(`${prefix}.conv1`, cin, cout);
    s[`${prefix}.emb.weight`] = [E, cout];
    s[`${prefix}.emb.bias`] = [cout];
    norm(`${prefix}.norm2`, cout);
    conv(`${prefix}.conv2`, cout, cout);
    if (cin !== cout) conv(`${prefix}.skip`, cin, cout, 1);
  };
  const { down, mid, up } = unetBlocks(cfg);
  down.forEach((b, i) => {
    res(b);
    conv(`down.${i}.downsample`, b.cout, b.cout);
  });
  res(mid);
  for (const b of up) {
    const i = b.level;
    conv(`up.${i}.upsample`, ch[i + 1], ch[i]);
    res(b);
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
 * dense weights, zero biases, unit norms, N(0, 1) class table, and zeros for the last conv and for
 * each block's second conv (so every residual block starts as the identity).
 */
export function initUnet(cfg: UnetConfig, rng: Rng): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(unetParamShapes(cfg))) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name === "class.weight") out[name] = rng.normals(n);
    else if (/norm\d?\.weight$/.test(name)) out[name] = new Float32Array(n).fill(1);
    else if (name.endsWith(".bias") || name === "out.conv.weight" || name.endsWith(".conv2.weight")) out[name] = new Float32Array(n);
    else out[name] = heNormal(rng, n, shape[0]);
  }
  return out;
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
  down.forEach((spec, i) => {
    h = resBlock(params, spec, h, embAct.ref, g, layout);
    skips.push(h.ref);
    h = conv2d(params, `down.${i}.downsample`, h, { stride: 2, layout });
  });
  h = resBlock(params, mid, h, embAct.ref, g, layout);
  for (const spec of up) {
    const i = spec.level;
    h = conv2d(params, `up.${i}.upsample`, upsample2x(h, layout), { layout });
    h = np.concatenate([h, skips[i]], channelAxis);
    h = resBlock(params, spec, h, embAct.ref, g, layout);
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
  model: (cfg, opts) => unetModel(cfg, opts?.layout),
  sampleShape: (cfg) => [cfg.height, cfg.width, cfg.inChannels],
  nullLabel: (cfg) => cfg.numClasses,
  describe: (cfg) => `UNet [${cfg.channels.join(", ")}] · ${cfg.numClasses} classes · ${cfg.height}×${cfg.width}`,
  memory: { trainBytes: unetTrainBytes, forwardBytes: unetForwardBytes, smaller: "--channels, or smaller images" },
  shapeFlags: {
    layers: "the number of --channels",
    sizes: "--channels, --time-emb-dim, the image's colour channels, or the number of classes",
  },
  mismatchHint: 'The checkpoint\'s UNet config (ckpt.json "model") does not match its weights; re-run training.',
};
