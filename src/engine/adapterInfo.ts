// Which WebGPU adapter the platform offers, for the logs and the page's engine badge: on a software
// GPU (SwiftShader, lavapipe) results are correctness runs only, never speed figures.

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
}

/** Describe the adapter navigator.gpu offers for the engine's request (null when there is none). */
export async function webgpuAdapterInfo(): Promise<AdapterInfo | null> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const i = adapter.info;
  return {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    isFallbackAdapter: i.isFallbackAdapter === true,
  };
}

/** One line for people: "google swiftshader (software fallback adapter)". */
export function describeAdapter(a: AdapterInfo): string {
  const name = [a.vendor, a.architecture, a.device, a.description].filter((s) => s !== "").join(" ") || "unnamed adapter";
  return a.isFallbackAdapter ? `${name} (software fallback adapter)` : name;
}
