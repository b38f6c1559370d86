/**
 * flowmatch's public library surface (`import ... from "flowmatch"`): the engine entry points, the
 * flow-matching core (paths, time samplers, couplings, models, training, solvers, likelihoods,
 * metrics), the toy datasets, checkpoint/safetensors files and trained models (loadModel). Everything here runs in Node;
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
 *
 * @example
 * A model the CLI trained (`flowmatch train2d --dataset moons --out run`):
 * ```js
 * import { initEngine, loadModel, modelField, odeint, Rng } from "flowmatch";
 * await initEngine();
 * const m = await loadModel("run", { kind: "2d" });
 * const shape = m.family.sampleShape(m.model);
 * const f = modelField(m.family.model(m.model), m.ema, { sampleShape: shape });
 * const { x } = await odeint(f.field, new Rng(0).normals(1000 * shape[0]), { solver: "rk4", nfe: 40 });
 * ```
 * @packageDocumentation
 */
// image:PATH.png datasets read their file through this reader (Node only, like this entry point).
import "./data/pictureFiles.js";
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
// Couplings: how noise and data rows are paired in a batch (exact OT, per class, entropic OT).
export { otCouple, otAssignment, otCoupleByClass, parseCoupling, COUPLINGS, type CouplingName } from "./core/coupling.js";
export { sinkhornCouple, sinkhornPlan, squaredDistances, type SinkhornOptions } from "./core/sinkhorn.js";
// Schrodinger-bridge CFM: Brownian-bridge paths between the paired rows.
export { bridgePath, bridgeBatch, checkBridgeSigma } from "./core/bridges.js";
// Models: the 2-D MLP and the image UNet, with their parameters on the host.
export { DEFAULT_ADAM, type AdamConfig, type HostParams, type HostArray, type Params } from "./core/optim.js";
export { DEFAULT_MLP, initMlp, mlpModel, mlpParamShapes, type MlpConfig, type MlpLayout } from "./core/models/mlp.js";
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
export type { VelocityModel, ModelFamily, ModelRuntime, MemoryEstimate, ShapeFlags } from "./core/models/family.js";
export { modelFamily, modelKinds, registerModelFamily } from "./core/models/registry.js";
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
  stepsForNfe,
  timeGrid,
  TIME_GRIDS,
  parseTimeGrid,
  type TimeGridName,
  type SolverName,
  type VelocityField,
  type OdeOptions,
  type OdeResult,
} from "./core/solvers.js";
// Likelihoods (continuous change of variables, exact or Hutchinson divergence).
export {
  logLikelihood,
  logLikelihoodWith,
  sampleWithLogDensity,
  sampleWithLogDensityWith,
  modelDivergenceField,
  gaussianLogDensity,
  bitsPerDim,
  type LogLikelihoodOptions,
  type ModelLogLikelihoodOptions,
  type LogLikelihoodResult,
  type SampleWithLogDensityResult,
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
export {
  TOY_DATASETS,
  PICTURE_DATASET_FORMS,
  sampleToy,
  toyBounds,
  toyDensity,
  parseToyDataset,
  type ToyDatasetName,
  type PictureDatasetName,
} from "./data/toy2d.js";
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
export type { ExpectKind } from "./io/checkpointFormat.js";
export { writeFileAtomic } from "./io/atomic.js";
// Trained models: a checkpoint read once and checked through its model family (Node, like the files above).
export {
  loadModel,
  weightsOf,
  type LoadModelOptions,
  type LoadedModel,
  type Loaded2d,
  type LoadedImage,
  type KnownModel,
} from "./pipelines/model.js";
export type { Toy2dCheckpointConfig, Toy2dTrainConfig } from "./pipelines/toy2d.js";
export type { ImageCheckpointConfig, ImageTrainConfig, ImageCoupling } from "./pipelines/images.js";
