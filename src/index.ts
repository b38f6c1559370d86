/**
 * flowmatch's public library surface (`import ... from "flowmatch"`): the engine entry points, the
 * flow-matching core (paths, time samplers, couplings, models, training, solvers, likelihoods,
 * metrics), the toy datasets, and checkpoint/safetensors files. Everything here runs in Node;
 * ONNX export and onnxruntime sampling are in `flowmatch/onnx`, apart, so that importing the core
 * does not load onnxruntime's native binding.
 *
 * @example
 * ```js
 * import { initEngine, Rng, initMlp, mlpModel, FlowTrainer, DEFAULT_ADAM, sampleToy, getScheduler,
 *   getTimeSampler, pathCoefficients, modelField, odeint } from "flowmatch";
 * await initEngine();
 * const cfg = { dim: 2, hidden: 64, depth: 2, timeEmbDim: 16 };
 * const rng = new Rng(0);
 * const model = mlpModel(cfg);
 * const trainer = new FlowTrainer({ model, params: initMlp(cfg, rng), sampleShape: [2], adam: DEFAULT_ADAM, emaDecay: 0.99 });
 * const path = getScheduler("straight"), times = getTimeSampler("uniform");
 * for (let k = 0; k < 100; k++) {
 *   const t = times(256, rng);
 *   await trainer.step({ x0: rng.normals(512), x1: sampleToy("moons", 256, rng), t, coef: pathCoefficients(path, t) });
 * }
 * const f = modelField(model, await trainer.hostParams("ema"), { sampleShape: [2] });
 * const { x } = await odeint(f.field, rng.normals(2000), { solver: "rk4", nfe: 40 });
 * ```
 * @packageDocumentation
 */
// Engine: start it before anything that computes; host <-> engine copies.
export { initEngine, toHost, fromHost, type Array, type Device } from "./engine/index.js";
// Core building blocks.
export { Rng } from "./core/rng.js";
export { UserError } from "./core/errors.js";
export {
  getScheduler,
  straightScheduler,
  cosineScheduler,
  vpScheduler,
  pathCoefficients,
  samplePath,
  PATHS,
  type PathName,
  type PathCoefficients,
  type Scheduler,
} from "./core/paths.js";
export { getTimeSampler, TIME_SAMPLERS, type TimeSamplerName, type TimeSampler, type TimeSamplerOptions } from "./core/timeSamplers.js";
export { otCouple, otAssignment, COUPLINGS, type CouplingName } from "./core/coupling.js";
// Models: the 2-D MLP and the image UNet, with their parameters on the host.
export { DEFAULT_ADAM, type AdamConfig, type HostParams, type HostArray, type Params } from "./core/optim.js";
export { DEFAULT_MLP, initMlp, mlpModel, mlpParamShapes, type MlpConfig } from "./core/models/mlp.js";
export {
  DEFAULT_UNET,
  checkUnetConfig,
  initUnet,
  unetApply,
  unetParamCount,
  unetParamShapes,
  unetModel,
  initUnetParams,
  type UnetConfig,
} from "./core/models/unet.js";
export type { VelocityModel, ModelFamily } from "./core/models/family.js";
export { modelFamily, registerModelFamily } from "./core/models/registry.js";
export type { ImageLayout } from "./core/models/layers.js";
// Training and sampling.
export {
  FlowTrainer,
  cfmLoss,
  type FlowBatch,
  type Trainer,
  type TrainerOptions,
  type StepOutcome,
} from "./core/train.js";
export { modelField, type ModelFieldOptions, type DisposableField } from "./core/field.js";
export {
  odeint,
  SOLVERS,
  EVALS_PER_STEP,
  parseSolver,
  type SolverName,
  type VelocityField,
  type OdeOptions,
  type OdeResult,
} from "./core/solvers.js";
// Likelihoods (continuous change of variables, exact or Hutchinson divergence).
export {
  logLikelihood,
  logLikelihoodWith,
  modelDivergenceField,
  gaussianLogDensity,
  bitsPerDim,
  type LogLikelihoodOptions,
  type ModelLogLikelihoodOptions,
  type LogLikelihoodResult,
  type FieldWithDivergence,
  type DivergenceMode,
  type ProbeKind,
} from "./core/likelihood.js";
// Sample quality.
export {
  slicedWasserstein2,
  mmdRbf,
  precisionRecall,
  knnRadiiSquared,
  outsideFraction,
  histogramTV,
  qualityReport,
  qualityCells,
  formatQuality,
  type QualityReport,
  type KnownDensity2d,
} from "./core/metrics.js";
// Data.
export { TOY_DATASETS, sampleToy, toyBounds, toyDensity, parseToyDataset, type ToyDatasetName } from "./data/toy2d.js";
// Files: safetensors, checkpoints (a folder with ckpt.safetensors + ckpt.json), atomic writes.
export { encodeSafetensors, decodeSafetensors, type Dtype, type HostTensor, type HostTensorData } from "./io/safetensors.js";
export {
  saveCheckpoint,
  loadCheckpoint,
  checkParams,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  WEIGHTS_FILE,
  CONFIG_FILE,
  type Checkpoint,
  type CheckpointConfig,
} from "./io/checkpoint.js";
export { writeFileAtomic } from "./io/atomic.js";
