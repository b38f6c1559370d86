/**
 * `flowmatch/onnx`: export trained velocity networks to ONNX (opset 17) and run an exported model on
 * onnxruntime-node. Separate from the main entry so that `import "flowmatch"` does not load
 * onnxruntime's native binding.
 * @packageDocumentation
 */
// TODO(lead): re-point at the split ONNX modules (graph building / export / runtime) after the merge.
export { exportMlpOnnx, exportUnetOnnx, createOnnxField, type OnnxField, type OnnxFieldOptions } from "./io/onnx.js";
