// Browser globals that @jax-js/jax touches at import/init time, defined only where missing
// (feature-detected, never assigned over: Node 21+ has a real `navigator` with getter-only
// properties, Node 24 a real Float16Array). threads.ts sets the pool size.
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
