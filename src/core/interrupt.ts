// Cooperative stopping. Training steps and ODE solves await only promises that settle as
// microtasks, so without help the event loop never runs and a Ctrl-C handler never fires. Long
// loops call `pausePoint()` (or `throwIfStopped()`) between units of work: it gives the event loop
// a turn at most every YIELD_EVERY_MS and reports whether a stop was requested. The CLI's one
// SIGINT handler (src/cli/interrupt.ts) calls `requestStop()`. One flag per process (or worker).

/** Thrown by work that has nothing to save when a stop was requested (sampling, teacher pairs). */
export class Interrupted extends Error {
  constructor() {
    super("interrupted");
    this.name = "Interrupted";
  }
}

// A turn costs ~10-30 us with setImmediate; every 25 ms keeps it far below 0.1% of any loop while
// Ctrl-C still lands within one unit of work (one training step or one network evaluation).
const YIELD_EVERY_MS = 25;

let controller = new AbortController();
let lastTurn = 0;

/** A macrotask: setImmediate on Node; a MessageChannel round trip elsewhere (no 4 ms timer clamp). */
const nextTurn: () => Promise<void> =
  typeof setImmediate === "function"
    ? () => new Promise((resolve) => setImmediate(resolve))
    : () =>
        new Promise((resolve) => {
          const channel = new MessageChannel();
          channel.port1.onmessage = () => {
            channel.port1.close();
            resolve();
          };
          channel.port2.postMessage(null);
        });

export function requestStop(): void {
  controller.abort();
}

/** Forget an earlier request (a new command starts). */
export function clearStopRequest(): void {
  if (controller.signal.aborted) controller = new AbortController();
}

export function stopRequested(): boolean {
  return controller.signal.aborted;
}

/** Settles when a stop is requested (e.g. a server that runs until Ctrl-C). */
export function whenStopRequested(): Promise<void> {
  const signal = controller.signal;
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** Lets the event loop run if it has not for a while; resolves to whether a stop was requested. */
export async function pausePoint(): Promise<boolean> {
  const now = performance.now();
  if (now - lastTurn >= YIELD_EVERY_MS) {
    await nextTurn();
    lastTurn = performance.now();
  }
  return stopRequested();
}

/** pausePoint(), then throw Interrupted if a stop was requested. */
export async function throwIfStopped(): Promise<void> {
  if (await pausePoint()) throw new Interrupted();
}
