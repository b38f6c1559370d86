// Preloaded into every test process (package.json: --import ./test/helpers/threads.ts), before any
// test file imports the engine. `npm test` runs two test files at a time on a 2-core machine, so each
// process computes on one thread: jax-js's worker pool and onnxruntime's intra-op threads would
// otherwise oversubscribe the cores and spin against each other (the same suite took twice the wall
// time and 2.3x the CPU time). CLI processes the tests start inherit it. A value already set (e.g.
// FLOWMATCH_THREADS=2 npm test) is kept; test/unit/engine/engine.test.ts sets its own per child.
process.env.FLOWMATCH_THREADS ??= "1";
process.env.FLOWMATCH_ORT_THREADS ??= "1";
