// Mapping between trainer state (weights, EMA, Adam moments) and checkpoint tensors.
// Layout in ckpt.safetensors (names in io/checkpointFormat.ts): "<name>" weights, "ema.<name>",
// "opt.m.<name>", "opt.v.<name>", and the per-step training loss as "log.loss" (kept out of the JSON
// config, which stays small), and the numbers of steps skipped for a non-finite loss or gradient as
// "log.skipped" (I32).
import type { HostTensor } from "../io/safetensors.js";
import { LOSS_LOG, SKIPPED_LOG, TENSOR_PREFIX } from "../io/checkpointFormat.js";
import type { HostParams } from "../core/optim.js";
import { UserError } from "../core/errors.js";

export interface TrainerHostState {
  params: HostParams;
  ema: HostParams;
  m?: HostParams;
  v?: HostParams;
  /** Training loss of every applied step so far. */
  losses?: number[];
  /** Steps skipped because their loss or gradient was not finite. */
  skipped?: number[];
}

export function stateToTensors(state: TrainerHostState): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  const put = (prefix: string, params: HostParams | undefined) => {
    if (!params) return;
    for (const [name, { shape, data }] of Object.entries(params)) out[prefix + name] = { dtype: "F32", shape, data };
  };
  put("", state.params);
  put(TENSOR_PREFIX.ema, state.ema);
  put(TENSOR_PREFIX.adamM, state.m);
  put(TENSOR_PREFIX.adamV, state.v);
  if (state.losses && state.losses.length > 0)
    out[LOSS_LOG] = { dtype: "F32", shape: [state.losses.length], data: Float32Array.from(state.losses) };
  if (state.skipped && state.skipped.length > 0)
    out[SKIPPED_LOG] = { dtype: "I32", shape: [state.skipped.length], data: Int32Array.from(state.skipped) };
  return out;
}

/** Split checkpoint tensors back into weights, EMA and optimizer moments (the last two optional). */
export function tensorsToState(tensors: Record<string, HostTensor>, source: string): TrainerHostState {
  const groups: Record<"params" | "ema" | "m" | "v", HostParams> = { params: {}, ema: {}, m: {}, v: {} };
  let losses: number[] | undefined;
  let skipped: number[] | undefined;
  for (const [key, t] of Object.entries(tensors)) {
    if (key === LOSS_LOG && t.data instanceof Float32Array) {
      losses = Array.from(t.data);
      continue;
    }
    if (key === SKIPPED_LOG && t.data instanceof Int32Array) {
      skipped = Array.from(t.data);
      continue;
    }
    if (!(t.data instanceof Float32Array)) throw new UserError(`${source}: tensor "${key}" is ${t.dtype}, expected F32 weights`);
    const value = { shape: t.shape, data: t.data };
    const { ema, adamM, adamV } = TENSOR_PREFIX;
    if (key.startsWith(ema)) groups.ema[key.slice(ema.length)] = value;
    else if (key.startsWith(adamM)) groups.m[key.slice(adamM.length)] = value;
    else if (key.startsWith(adamV)) groups.v[key.slice(adamV.length)] = value;
    else groups.params[key] = value;
  }
  const hasOpt = Object.keys(groups.m).length > 0;
  return {
    params: groups.params,
    ema: Object.keys(groups.ema).length > 0 ? groups.ema : groups.params,
    ...(hasOpt ? { m: groups.m, v: groups.v } : {}),
    ...(losses ? { losses } : {}),
    ...(skipped ? { skipped } : {}),
  };
}
