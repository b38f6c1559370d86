// The layer rule of ARCHITECTURE.md as a check that fails: `npm run lint:layers`.
// Layers, bottom up: engine -> core -> viz | data | io -> pipelines -> cli | web.
/** @type {import('dependency-cruiser').IConfiguration} */
const ours = (layers) => `^src/(?!(${layers.join("|")})/)[^/]+/`;

module.exports = {
  forbidden: [
    {
      name: "engine-imports-nothing-of-ours",
      comment: "src/engine is the bottom layer: it may import only itself (and packages).",
      severity: "error",
      from: { path: "^src/engine/" },
      to: { path: ours(["engine"]) },
    },
    {
      name: "only-engine-imports-jax",
      comment: "Only src/engine imports @jax-js/jax; everyone else imports np, jit, ... from src/engine/index.js.",
      severity: "error",
      from: { pathNot: "^src/engine/" },
      to: { path: "(^|/)node_modules/@jax-js/jax/" },
    },
    {
      name: "core-imports-only-engine",
      severity: "error",
      from: { path: "^src/core/" },
      to: { path: ours(["core", "engine"]) },
    },
    {
      name: "viz-imports-only-core-engine",
      severity: "error",
      from: { path: "^src/viz/" },
      to: { path: ours(["viz", "core", "engine"]) },
    },
    {
      name: "data-imports-only-core-engine",
      comment: "One exception: text:WORD datasets draw points on the glyphs of viz/font.ts (a leaf module: it imports nothing).",
      severity: "error",
      from: { path: "^src/data/" },
      to: { path: ours(["data", "core", "engine"]), pathNot: "^src/viz/font\\.ts$" },
    },
    {
      name: "io-imports-only-core-engine",
      severity: "error",
      from: { path: "^src/io/" },
      to: { path: ours(["io", "core", "engine"]) },
    },
    {
      name: "pipelines-only-from-the-top",
      comment: "pipelines/ is used by cli/ and web/ only.",
      severity: "error",
      from: { path: "^src/(engine|core|viz|data|io)/" },
      to: { path: "^src/pipelines/" },
    },
    {
      name: "cli-web-on-top",
      comment: "Nothing below cli/ and web/ imports them.",
      severity: "error",
      from: { path: "^src/(engine|core|viz|data|io|pipelines)/" },
      to: { path: "^src/(cli|web)/" },
    },
    {
      name: "web-imports-no-node-builtins",
      comment: "The playground runs in the browser: src/web imports no Node built-in (build.ts is the Node-side bundler).",
      severity: "error",
      from: { path: "^src/web/", pathNot: "^src/web/build\\.ts$" },
      to: { dependencyTypes: ["core"] },
    },
    {
      name: "page-reaches-no-node-code",
      comment:
        "Nothing the page bundles (web/main.ts, web/worker.ts and what they import) reaches a Node built-in, except " +
        "those of the engine's thread adapter (src/engine/threads.ts), which the browser build swaps for " +
        "web/browserThreads.ts. The build itself (esbuild, platform browser, no stubs) fails on any other.",
      severity: "error",
      from: { path: "^src/web/(main|worker)\\.ts$" },
      to: { reachable: true, path: "^[a-z_/]+$", pathNot: "^(worker_threads|buffer|os|v8)$" },
    },
    {
      name: "page-reaches-no-onnxruntime-node",
      severity: "error",
      from: { path: "^src/web/(main|worker)\\.ts$" },
      to: { reachable: true, path: "(^|/)node_modules/onnxruntime-node/" },
    },
  ],
  options: {
    tsConfig: { fileName: "tsconfig.json" },
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
