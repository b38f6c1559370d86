// Loading a checkpoint the CLI wrote (picked or dropped files go to the worker as bytes) and the
// image view of a loaded image checkpoint: class picker, guidance, and images forming step by step.
import type { SolverName } from "../core/solvers.js";
import { drawImages } from "./draw.js";
import { clearError, enterMode, readInt, redrawLoss, resetProgress, setStatus, state, ui } from "./pageState.js";
import type { FromWorker, LoadedFile, SampleSettings, ToWorker } from "./protocol.js";

type Msg<T extends FromWorker["type"]> = Extract<FromWorker, { type: T }>;

export class CheckpointViewer {
  private imageShape = { height: 28, width: 28, channels: 1 };
  private classNames: string[] = [];
  /** Caption under each image being generated. */
  private labels: string[] = [];

  constructor(
    private readonly send: (msg: ToWorker) => void,
    private readonly sampleSettings: () => SampleSettings,
  ) {
    ui.ckptInput.addEventListener("change", () => {
      const files = ui.ckptInput.files;
      if (files) void this.loadFiles(Array.from(files));
      ui.ckptInput.value = ""; // choosing the same files again should load them again
    });
    for (const target of [ui.dropzone, document.body]) {
      target.addEventListener("dragover", (event) => {
        event.preventDefault();
        ui.dropzone.classList.add("over");
      });
      target.addEventListener("dragleave", () => ui.dropzone.classList.remove("over"));
      target.addEventListener("drop", (event) => {
        event.preventDefault();
        event.stopPropagation();
        ui.dropzone.classList.remove("over");
        const files = event.dataTransfer?.files;
        if (files && files.length > 0) void this.loadFiles(files);
      });
    }
    ui.imageClass.addEventListener("change", () => (ui.imageCount.disabled = ui.imageClass.value === "all"));
    ui.guidance.addEventListener("input", () => (ui.guidanceValue.textContent = Number(ui.guidance.value).toFixed(1)));
    ui.generate.addEventListener("click", () => this.generate());
  }

  private async loadFiles(list: FileList | File[]): Promise<void> {
    const files = Array.from(list);
    if (files.length === 0) return;
    clearError();
    ui.ckptStatus.textContent = `Reading ${files.map((f) => f.name).join(" + ")}…`;
    setStatus("loading");
    const loaded: LoadedFile[] = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: await f.arrayBuffer() })));
    this.send({ type: "loadCheckpoint", files: loaded, sample: this.sampleSettings() });
  }

  /** An image checkpoint was loaded: switch to the image view. */
  showImageCheckpoint(msg: Msg<"checkpointImage">): void {
    state.checkpoint = { kind: "image", summary: msg.summary };
    this.imageShape = { height: msg.height, width: msg.width, channels: msg.channels };
    this.classNames = msg.classNames;
    ui.imageClass.replaceChildren(
      new Option("all classes (one each)", "all"),
      ...msg.classNames.map((name, i) => new Option(`${i}: ${name}`, String(i))),
    );
    ui.imageClass.value = msg.classNames.length > 0 ? "0" : "all";
    ui.ckptStatus.textContent = `Loaded: ${msg.summary}`;
    ui.imageLabel.textContent = msg.summary;
    enterMode("image");
    resetProgress(msg.losses);
    ui.imageCount.disabled = ui.imageClass.value === "all";
    redrawLoss();
    setStatus("idle");
  }

  showImageStep(msg: Msg<"imageStep">): void {
    state.images.step = msg.step;
    state.images.totalSteps = msg.totalSteps;
    ui.imageLabel.textContent = `step ${msg.step} / ${msg.totalSteps} · t = ${msg.t.toFixed(2)}`;
    drawImages(ui.imageCanvas, msg.pixels, { n: msg.n, ...this.imageShape }, this.labels);
  }

  imagesDone(msg: Msg<"imagesDone">): void {
    state.images.done = true;
    state.images.seconds = msg.seconds;
    state.images.nfe = msg.nfe;
    ui.imageLabel.textContent = `${msg.cancelled ? "stopped" : "done"} · ${msg.nfe} network evaluations in ${msg.seconds.toFixed(1)} s`;
    setStatus("idle");
  }

  private generate(): void {
    clearError();
    if (state.status === "generating") {
      this.send({ type: "stop" });
      return;
    }
    const label = ui.imageClass.value === "all" ? "all" : Number(ui.imageClass.value);
    const count = label === "all" ? this.classNames.length : Math.max(1, Math.min(32, readInt(ui.imageCount, 8)));
    this.labels = label === "all" ? this.classNames.slice() : Array<string>(count).fill(this.classNames[label] ?? String(label));
    state.images = { step: 0, totalSteps: 0, done: false, seconds: 0, nfe: 0 };
    setStatus("generating");
    this.send({
      type: "generateImages",
      label,
      count,
      guidance: Number(ui.guidance.value),
      solver: ui.solver.value as SolverName,
      nfe: readInt(ui.nfe, 40),
      seed: Math.floor(Math.random() * 1e9),
    });
  }
}
