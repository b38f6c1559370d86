// File formats and persistence: atomic writes, safetensors, checkpoints (checkpointFormat.ts is the
// bytes-only part the browser uses too).
export { writeFileAtomic, writeFileAtomicSync } from "./atomic.js";
export { encodeSafetensors, decodeSafetensors, DTYPE_ITEMSIZE, type Dtype, type HostTensor, type HostTensorData } from "./safetensors.js";
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
} from "./checkpoint.js";
export {
  parseCheckpoint,
  parseCheckpointConfig,
  encodeCheckpoint,
  TENSOR_PREFIX,
  LOSS_LOG,
  SKIPPED_LOG,
  type CheckpointSource,
} from "./checkpointFormat.js";
