// The 2-D view: the dataset preview (or the points drawn by hand), the latest flow snapshot from the
// worker animated over time, the time slider, and drawing custom data with the mouse.
import { Rng } from "../core/rng.js";
import { sampleToy, toyBounds, type ToyDatasetName } from "../data/toy2d.js";
import { FlowView } from "./draw.js";
import { state, ui } from "./pageState.js";
import { CUSTOM_BOUNDS, type Bounds, type FlowSnapshot, type PlaygroundDataset } from "./protocol.js";

const PREVIEW_POINTS = 2000;
const MAX_CUSTOM_POINTS = 5000;
const FRAME_MS = 90;
/** Pause on the samples before the animation starts over. */
const HOLD_LAST_MS = 1400;

export class FlowPanel {
  private readonly view = new FlowView(ui.flowCanvas);
  private bounds: Bounds = toyBounds("checkerboard");
  private dataPreview: Float32Array | null = null;
  private customPoints: number[] = [];
  private snapshot: FlowSnapshot | null = null;
  private frame = 0;
  private playing = true;
  private frameShownAt = 0;
  /** Set when a checkpoint's 2-D model is shown instead of the dataset picked in the controls. */
  private checkpointDataset: string | null = null;
  private drawing = false;
  private readonly sprayRng = new Rng(99);

  /** `onClear`: the drawn points were cleared (the model trained on them no longer applies). */
  constructor(onClear: () => void) {
    ui.play.addEventListener("click", () => this.setPlaying(!this.playing));
    ui.time.addEventListener("input", () => {
      this.setPlaying(false);
      this.frame = Number(ui.time.value);
      this.redraw();
    });
    // Drawing your own data: press and drag to spray points around the pointer.
    ui.flowCanvas.addEventListener("pointerdown", (event) => {
      if (!this.drawingData()) return;
      this.drawing = true;
      ui.flowCanvas.setPointerCapture(event.pointerId);
      this.sprayAt(event);
    });
    ui.flowCanvas.addEventListener("pointermove", (event) => {
      if (this.drawing) this.sprayAt(event);
    });
    ui.flowCanvas.addEventListener("pointerup", () => (this.drawing = false));
    ui.flowCanvas.addEventListener("pointercancel", () => (this.drawing = false));
    ui.clearPoints.addEventListener("click", () => {
      this.customPoints = [];
      ui.customCount.textContent = "0 points";
      onClear();
    });
  }

  selectedDataset(): PlaygroundDataset {
    return ui.dataset.value as PlaygroundDataset;
  }

  /** The points drawn by hand, [n, 2] flattened. */
  custom(): Float32Array {
    return Float32Array.from(this.customPoints);
  }

  get showingCheckpoint(): boolean {
    return this.checkpointDataset !== null;
  }

  /** Show a loaded checkpoint's model: its dataset as the reference, no picture until its snapshot. */
  showCheckpoint(dataset: string): void {
    this.checkpointDataset = dataset;
    this.snapshot = null;
    this.refreshData();
  }

  /** Back to the model picked in the controls, with no picture yet. */
  clear(): void {
    this.checkpointDataset = null;
    this.snapshot = null;
    ui.drawTools.hidden = this.selectedDataset() !== "custom";
    ui.flowCanvas.classList.toggle("drawing", this.selectedDataset() === "custom");
    this.refreshData();
  }

  refreshData(): void {
    const name = this.checkpointDataset ?? this.selectedDataset();
    if (name === "custom") {
      this.bounds = CUSTOM_BOUNDS;
      this.dataPreview = null;
    } else {
      try {
        this.bounds = toyBounds(name as ToyDatasetName);
        this.dataPreview = sampleToy(name as ToyDatasetName, PREVIEW_POINTS, new Rng(7));
      } catch {
        // A checkpoint trained on drawn points: no reference data to show.
        this.dataPreview = null;
      }
    }
  }

  showSnapshot(snap: FlowSnapshot): void {
    const wasLast = this.snapshot !== null && this.frame === this.snapshot.frames.length - 1;
    this.snapshot = snap;
    state.snapshots++;
    state.lastSnapshot = { step: snap.step, label: snap.label, ms: snap.ms, particles: snap.frames[0].length / 2 };
    ui.time.max = String(snap.frames.length - 1);
    this.frame = wasLast ? snap.frames.length - 1 : Math.min(this.frame, snap.frames.length - 1);
    ui.flowLabel.textContent = `step ${snap.step} · ${snap.label}`;
    this.redraw();
  }

  get hasSnapshot(): boolean {
    return this.snapshot !== null;
  }

  /** Stop the animation and show frame i (-1 = the last, the samples). */
  showFrame(i: number): void {
    this.setPlaying(false);
    const last = this.snapshot ? this.snapshot.frames.length - 1 : 0;
    this.frame = i < 0 ? last : Math.min(i, last);
    this.redraw();
  }

  redraw(): void {
    const custom = this.drawingData() ? this.custom() : null;
    this.view.draw({
      bounds: this.snapshot?.bounds ?? this.bounds,
      data: this.dataPreview,
      custom,
      snapshot: this.snapshot,
      frame: this.frame,
      hint: this.hint(),
    });
    const t = this.snapshot ? (this.snapshot.times[Math.min(this.frame, this.snapshot.times.length - 1)] ?? 0) : 0;
    ui.timeLabel.textContent = `t = ${t.toFixed(2)}`;
    ui.time.value = String(this.frame);
  }

  /** Runs the time animation, one frame per FRAME_MS, holding on the samples. */
  animate(): void {
    const tick = (now: number) => {
      const snap = this.snapshot;
      if (this.playing && snap && snap.frames.length > 1) {
        const last = snap.frames.length - 1;
        const wait = this.frame === last ? HOLD_LAST_MS : FRAME_MS;
        if (now - this.frameShownAt >= wait) {
          this.frame = this.frame === last ? 0 : this.frame + 1;
          this.frameShownAt = now;
          this.redraw();
        }
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  private drawingData(): boolean {
    return this.selectedDataset() === "custom" && this.checkpointDataset === null;
  }

  private hint(): string | null {
    if (this.snapshot) return null;
    if (this.drawingData()) {
      return this.customPoints.length === 0 ? "Click and drag to draw your data" : "Press Train to learn a flow to your points";
    }
    return state.ready ? "Press Train to learn a flow from noise to this data" : "Starting the engine…";
  }

  private setPlaying(on: boolean): void {
    this.playing = on;
    ui.play.textContent = on ? "❚❚" : "▶";
  }

  private sprayAt(event: PointerEvent): void {
    const at = this.view.dataAt(event);
    if (!at || this.customPoints.length / 2 >= MAX_CUSTOM_POINTS) return;
    for (let k = 0; k < 3; k++) this.customPoints.push(at[0] + 0.08 * this.sprayRng.normal(), at[1] + 0.08 * this.sprayRng.normal());
    ui.customCount.textContent = `${this.customPoints.length / 2} points`;
    this.redraw();
  }
}
