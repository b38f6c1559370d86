// flowmatch's public library surface: the core (engine-backed models and training, host-side
// paths, solvers and metrics) and the toy datasets. Node-only layers (checkpoints on disk, ONNX,
// CLI) are imported from their own modules.
export { initEngine, toHost, fromHost } from "./engine/index.js";
export { Rng } from "./core/rng.js";
export { UserError } from "./core/errors.js";
export { getScheduler, straightScheduler, cosineScheduler, vpScheduler, pathCoefficients, samplePath, PATHS, type PathName, type Scheduler } from "./core/paths.js";
export { getTimeSampler, TIME_SAMPLERS, type TimeSamplerName } from "./core/timeSamplers.js";
export { DEFAULT_ADAM, type AdamConfig, type HostParams, type HostArray, type Params } from "./core/optim.js";
export { FlowTrainer, cfmLoss, type FlowBatch } from "./core/train.js";
export type { VelocityModel, ModelFamily } from "./core/models/family.js";
export { modelFamily, registerModelFamily } from "./core/models/registry.js";
export { modelField } from "./core/field.js";
export { odeint, SOLVERS, parseSolver, type SolverName, type VelocityField, type OdeOptions, type OdeResult } from "./core/solvers.js";
export { DEFAULT_MLP, initMlp, mlpModel, mlpParamShapes, type MlpConfig } from "./core/models/mlp.js";
export { otCouple, otAssignment, COUPLINGS, type CouplingName } from "./core/coupling.js";
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
export { TOY_DATASETS, sampleToy, toyBounds, toyDensity, parseToyDataset, type ToyDatasetName } from "./data/toy2d.js";
