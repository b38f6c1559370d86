// Node 20 lacks a few browser globals that @jax-js/jax touches at import/init time.
// This module must be imported before the engine; src/engine/index.ts does so.
const g = globalThis as Record<string, unknown>;
if (typeof g.navigator === "undefined") {
  // jax-js reads navigator.userAgent (kernel tuning) and hardwareConcurrency (thread pool size).
  g.navigator = { userAgent: "node", hardwareConcurrency: 2 };
}
if (typeof g.Float16Array === "undefined") {
  // Only referenced by instanceof checks and float16 views, which flowmatch never creates.
  g.Float16Array = class Float16ArrayUnavailable {
    constructor() {
      throw new Error("float16 arrays are not supported on this Node.js version");
    }
  };
}
export {};
