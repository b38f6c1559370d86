// `--device wasm|webgpu`: where jax-js runs the tensors of a command (training, sampling,
// likelihoods); it implies jax-js over onnxruntime for commands that default to onnxruntime.
// WebGPU on Node comes from the `webgpu` package (Dawn); the choice is made once, before the
// command runs, and the library's own initEngine() calls keep it.
import { Option, type Command } from "commander";
import { UserError } from "../core/errors.js";
import { describeAdapter, initEngine, webgpuAdapterInfo } from "../engine/index.js";

export const DEVICES = ["wasm", "webgpu"] as const;
type DeviceName = (typeof DEVICES)[number];

/** Flags whose default runs onnxruntime instead of jax-js: [flag, onnxruntime value, jax-js value, what it runs]. */
const ONNX_CHOICES = [
  ["backend", "ort", "jax", "trains"],
  ["runtime", "onnx", "engine", "samples"],
] as const;

/** Commands that compute nothing with the engine, so a device would be a silent no-op. */
const NO_ENGINE = new Set(["serve", "export"]);

export function registerDeviceOption(program: Command): void {
  program.addOption(
    new Option(
      "--device <name>",
      "where jax-js runs tensors: wasm (CPU) or webgpu (a GPU through WebGPU; on Node needs the npm package `webgpu`)",
    ).choices(DEVICES),
  );
  program.hook("preAction", async (root, action) => {
    const device = root.opts().device as DeviceName | undefined;
    if (device === undefined) return;
    if (NO_ENGINE.has(action.name())) {
      throw new UserError(
        action.name() === "serve"
          ? "--device does not apply to serve: the playground picks its device in the browser (open it with ?device=webgpu or ?device=wasm)"
          : `--device does not apply to ${action.name()}, which runs no tensor computations: drop --device`,
      );
    }
    // Training and image sampling default to onnxruntime (CPU), where a jax-js device would be
    // ignored: asking for a device means running them on jax-js.
    for (const [flag, ortValue, engineValue, what] of ONNX_CHOICES) {
      if (action.getOptionValue(flag) !== ortValue) continue;
      if (action.getOptionValueSource(flag) === "cli") {
        throw new UserError(
          `--device ${device} runs jax-js, but --${flag} ${ortValue} ${what} on onnxruntime's CPU: ` +
            `use --${flag} ${engineValue}, or drop --device`,
        );
      }
      action.setOptionValueWithSource(flag, engineValue, "implied");
    }
    await startDevice(device);
  });
}

async function startDevice(device: DeviceName): Promise<void> {
  try {
    if (device === "webgpu") {
      // Loaded only for this flag: it pulls in a native addon the other commands never need.
      const { provideNodeWebgpu } = await import("../engine/webgpuNode.js");
      await provideNodeWebgpu();
      const adapter = await webgpuAdapterInfo();
      if (adapter)
        process.stderr.write(
          `device: webgpu on ${describeAdapter(adapter)}` +
            `${adapter.isFallbackAdapter ? "; a CPU emulation: check results, not speed" : ""}\n`,
        );
    }
    await initEngine(device);
  } catch (err) {
    throw new UserError(err instanceof Error ? err.message : String(err));
  }
}
