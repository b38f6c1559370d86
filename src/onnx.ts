/**
 * `flowmatch/onnx`: export trained velocity networks to ONNX (opset 18; traced from the library's own model code) and run an exported model on
 * onnxruntime-node. Separate from the main entry so that `import "flowmatch"` does not load
 * onnxruntime's native binding.
 * @packageDocumentation
 */
export { exportMlpOnnx, exportUnetOnnx, exportDivergenceOnnx, type UnetExportOptions, type DivergenceExportOptions } from "./io/onnx.js";
export {
  createOnnxField,
  onnxVelocityField,
  createOnnxDivergenceSession,
  type OnnxField,
  type OnnxFieldOptions,
  type OnnxVelocityOptions,
  type OnnxDivergenceOptions,
  type OnnxDivergenceSession,
} from "./io/onnxField.js";
