// What the playground page knows (window.__flowmatch.state), its elements, and the status line,
// error banner and loss plot every part of the page updates. No drawing of flows or images here.
import { drawLoss } from "./draw.js";

/** What the page knows, exposed as window.__flowmatch for tests and curious people. */
export interface PlaygroundState {
  ready: boolean;
  device: string;
  /** The WebGPU adapter the engine runs on (null on Wasm). */
  adapter: string | null;
  /** Why the engine left WebGPU for Wasm, if it did. */
  engineFallback: string | null;
  threads: number;
  crossOriginIsolated: boolean;
  status: "starting" | "idle" | "training" | "done" | "loading" | "generating" | "error";
  step: number;
  totalSteps: number;
  losses: number[];
  stepsPerSecond: number;
  snapshots: number;
  lastSnapshot: { step: number; label: string; ms: number; particles: number } | null;
  error: { title: string; message: string } | null;
  checkpoint: { kind: "2d" | "image"; summary: string } | null;
  images: { step: number; totalSteps: number; done: boolean; seconds: number; nfe: number };
}

export interface PlaygroundHook {
  state: PlaygroundState;
  /** Stop the time animation and show frame i (-1 = last, the samples). */
  showFrame(i: number): void;
}

declare global {
  interface Window {
    __flowmatch: PlaygroundHook;
  }
}

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`playground page is missing #${id}`);
  return found as T;
}

export const state: PlaygroundState = {
  ready: false,
  device: "",
  adapter: null,
  engineFallback: null,
  threads: 0,
  crossOriginIsolated: false,
  status: "starting",
  step: 0,
  totalSteps: 0,
  losses: [],
  stepsPerSecond: 0,
  snapshots: 0,
  lastSnapshot: null,
  error: null,
  checkpoint: null,
  images: { step: 0, totalSteps: 0, done: false, seconds: 0, nfe: 0 },
};

export const ui = {
  app: el<HTMLElement>("app"),
  badge: el<HTMLElement>("engine-badge"),
  error: el<HTMLElement>("error"),
  errorTitle: el<HTMLElement>("error-title"),
  errorMessage: el<HTMLElement>("error-message"),
  errorClose: el<HTMLButtonElement>("error-close"),
  dataset: el<HTMLSelectElement>("dataset"),
  drawTools: el<HTMLElement>("draw-tools"),
  customCount: el<HTMLElement>("custom-count"),
  clearPoints: el<HTMLButtonElement>("clear-points"),
  path: el<HTMLSelectElement>("path"),
  steps: el<HTMLInputElement>("steps"),
  batchSize: el<HTMLInputElement>("batch-size"),
  hidden: el<HTMLSelectElement>("hidden"),
  depth: el<HTMLSelectElement>("depth"),
  lr: el<HTMLSelectElement>("lr"),
  train: el<HTMLButtonElement>("train"),
  reset: el<HTMLButtonElement>("reset"),
  solver: el<HTMLSelectElement>("solver"),
  nfe: el<HTMLInputElement>("nfe"),
  dropzone: el<HTMLElement>("dropzone"),
  ckptInput: el<HTMLInputElement>("ckpt-input"),
  ckptStatus: el<HTMLElement>("ckpt-status"),
  back2d: el<HTMLButtonElement>("back-2d"),
  flowCanvas: el<HTMLCanvasElement>("flow-canvas"),
  flowLabel: el<HTMLElement>("flow-label"),
  play: el<HTMLButtonElement>("play"),
  time: el<HTMLInputElement>("time"),
  timeLabel: el<HTMLElement>("time-label"),
  lossCanvas: el<HTMLCanvasElement>("loss-canvas"),
  statStep: el<HTMLElement>("stat-step"),
  statLoss: el<HTMLElement>("stat-loss"),
  statSpeed: el<HTMLElement>("stat-speed"),
  statStatus: el<HTMLElement>("stat-status"),
  imageClass: el<HTMLSelectElement>("image-class"),
  guidance: el<HTMLInputElement>("guidance"),
  guidanceValue: el<HTMLElement>("guidance-value"),
  imageCount: el<HTMLInputElement>("image-count"),
  generate: el<HTMLButtonElement>("generate"),
  imageCanvas: el<HTMLCanvasElement>("image-canvas"),
  imageLabel: el<HTMLElement>("image-label"),
};

/** A number input's value rounded to an integer, or `fallback` when it is not a number. */
export function readInt(input: HTMLInputElement | HTMLSelectElement, fallback: number): number {
  const v = Number(input.value);
  return Number.isFinite(v) ? Math.round(v) : fallback;
}

export function refreshStats(): void {
  ui.statStep.textContent = state.totalSteps > 0 ? `${state.step} / ${state.totalSteps}` : String(state.step);
  const recent = state.losses.slice(-50);
  ui.statLoss.textContent = recent.length ? (recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(3) : "–";
  ui.statSpeed.textContent = state.stepsPerSecond > 0 ? `${state.stepsPerSecond.toFixed(1)} steps/s` : "–";
  ui.statStatus.textContent = state.status;
}

let lossDrawPending = false;
export function redrawLoss(): void {
  // Progress can arrive faster than the screen refreshes; draw at most once per frame.
  if (lossDrawPending) return;
  lossDrawPending = true;
  requestAnimationFrame(() => {
    lossDrawPending = false;
    drawLoss(ui.lossCanvas, state.losses, state.checkpoint ? "this checkpoint has no loss log" : undefined);
  });
}

/** Forget the loss log and step count (a new model, or a checkpoint's log replaces them). */
export function resetProgress(losses: number[] = []): void {
  state.losses = losses;
  state.step = losses.length;
  state.totalSteps = 0;
  state.stepsPerSecond = 0;
}

export function setStatus(status: PlaygroundState["status"]): void {
  state.status = status;
  const training = status === "training";
  ui.train.textContent = training ? "Stop" : "Train";
  ui.train.classList.toggle("stop", training);
  ui.train.disabled = !state.ready;
  ui.generate.textContent = status === "generating" ? "Stop" : "Generate";
  refreshStats();
}

export function showError(title: string, message: string): void {
  state.error = { title, message };
  ui.errorTitle.textContent = title;
  ui.errorMessage.textContent = message;
  ui.error.hidden = false;
}

export function clearError(): void {
  state.error = null;
  ui.error.hidden = true;
}

/** Show the 2-D view (flow, training controls) or the image view (a loaded image checkpoint). */
export function enterMode(mode: "2d" | "image"): void {
  ui.app.classList.toggle("mode-2d", mode === "2d");
  ui.app.classList.toggle("mode-image", mode === "image");
}
