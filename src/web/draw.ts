// Canvas pictures for the playground: the flow plot (data, velocity arrows, particles), the loss
// curve and the image grid. Pure drawing; the numbers come from the worker.
import { formatNumber, movingAverage, niceTicks, quantile, vectorFieldGrid } from "../viz/scale.js";
import { FIELD_GRID_N, type Bounds, type FlowSnapshot } from "./protocol.js";

const COLORS = {
  plotBg: "#fbfcfe",
  grid: "#edf0f4",
  axis: "#c5ccd6",
  label: "#66707c",
  ink: "#1f2933",
  data: "rgba(130, 143, 160, 0.45)",
  custom: "rgba(70, 84, 102, 0.75)",
  particle: "rgba(209, 73, 91, 0.78)",
  arrowSlow: [169, 196, 222] as const,
  arrowFast: [11, 42, 91] as const,
  loss: "rgba(47, 111, 219, 0.25)",
  lossSmooth: "#2f6fdb",
};

/** Size a canvas's backing store to its CSS box times the device pixel ratio; returns a context in CSS pixels. */
export function fitCanvas(canvas: HTMLCanvasElement, cssHeight?: number): { ctx: CanvasRenderingContext2D; w: number; h: number } {
  const dpr = Math.max(1, window.devicePixelRatio || 1);
  const w = Math.max(1, Math.round(canvas.clientWidth || 300));
  const h = Math.max(1, Math.round(cssHeight ?? (canvas.clientHeight || w)));
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new Error("this browser cannot draw on a 2-D canvas");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

const MARGIN = { left: 30, right: 8, top: 8, bottom: 22 };

/** The square data-space plot: maps data coordinates to canvas pixels. */
class Frame {
  constructor(
    readonly bounds: Bounds,
    readonly x0: number,
    readonly y0: number,
    readonly size: number,
  ) {}
  px(x: number): number {
    return this.x0 + ((x - this.bounds[0]) / (this.bounds[1] - this.bounds[0])) * this.size;
  }
  py(y: number): number {
    return this.y0 + ((this.bounds[3] - y) / (this.bounds[3] - this.bounds[2])) * this.size;
  }
  /** Canvas pixel -> data coordinates. */
  data(px: number, py: number): [number, number] {
    return [
      this.bounds[0] + ((px - this.x0) / this.size) * (this.bounds[1] - this.bounds[0]),
      this.bounds[3] - ((py - this.y0) / this.size) * (this.bounds[3] - this.bounds[2]),
    ];
  }
}

export interface FlowScene {
  bounds: Bounds;
  /** Reference points drawn in grey (the training data), [n, 2] flattened. */
  data: Float32Array | null;
  /** Points drawn by hand (custom dataset), darker than the reference data. */
  custom: Float32Array | null;
  snapshot: FlowSnapshot | null;
  frame: number;
  /** Text shown in the middle when there is nothing else to see. */
  hint: string | null;
}

export class FlowView {
  private frameGeom: Frame | null = null;
  constructor(private readonly canvas: HTMLCanvasElement) {}

  /** Data coordinates under a mouse event, or null outside the plot. */
  dataAt(event: MouseEvent): [number, number] | null {
    const g = this.frameGeom;
    if (!g) return null;
    const rect = this.canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const py = event.clientY - rect.top;
    if (px < g.x0 || px > g.x0 + g.size || py < g.y0 || py > g.y0 + g.size) return null;
    return g.data(px, py);
  }

  draw(scene: FlowScene): void {
    const { ctx, w, h } = fitCanvas(this.canvas);
    ctx.clearRect(0, 0, w, h);
    const size = Math.min(w - MARGIN.left - MARGIN.right, h - MARGIN.top - MARGIN.bottom);
    const g = new Frame(scene.bounds, MARGIN.left, MARGIN.top, size);
    this.frameGeom = g;
    this.drawAxes(ctx, g);
    ctx.save();
    ctx.beginPath();
    ctx.rect(g.x0, g.y0, g.size, g.size);
    ctx.clip();
    if (scene.data) this.drawPoints(ctx, g, scene.data, COLORS.data, 1.3);
    if (scene.custom) this.drawPoints(ctx, g, scene.custom, COLORS.custom, 1.8);
    const snap = scene.snapshot;
    if (snap) {
      const i = Math.max(0, Math.min(scene.frame, snap.frames.length - 1));
      this.drawField(ctx, g, snap, i);
      this.drawPoints(ctx, g, snap.frames[i], COLORS.particle, 2);
    }
    ctx.restore();
    if (scene.hint) {
      ctx.font = "14px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      const tw = ctx.measureText(scene.hint).width;
      ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
      ctx.fillRect(g.x0 + g.size / 2 - tw / 2 - 10, g.y0 + 16, tw + 20, 26);
      ctx.fillStyle = COLORS.ink;
      ctx.fillText(scene.hint, g.x0 + g.size / 2, g.y0 + 29);
    }
  }

  private drawAxes(ctx: CanvasRenderingContext2D, g: Frame): void {
    ctx.fillStyle = COLORS.plotBg;
    ctx.fillRect(g.x0, g.y0, g.size, g.size);
    const [xmin, xmax, ymin, ymax] = g.bounds;
    ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = COLORS.label;
    for (const x of niceTicks(xmin, xmax, 8)) {
      const px = Math.round(g.px(x)) + 0.5;
      ctx.strokeStyle = x === 0 ? COLORS.axis : COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(px, g.y0);
      ctx.lineTo(px, g.y0 + g.size);
      ctx.stroke();
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.fillText(formatNumber(x), px, g.y0 + g.size + 5);
    }
    for (const y of niceTicks(ymin, ymax, 8)) {
      const py = Math.round(g.py(y)) + 0.5;
      ctx.strokeStyle = y === 0 ? COLORS.axis : COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(g.x0, py);
      ctx.lineTo(g.x0 + g.size, py);
      ctx.stroke();
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText(formatNumber(y), g.x0 - 5, py);
    }
    ctx.strokeStyle = COLORS.axis;
    ctx.strokeRect(g.x0 + 0.5, g.y0 + 0.5, g.size - 1, g.size - 1);
  }

  private drawPoints(ctx: CanvasRenderingContext2D, g: Frame, pts: Float32Array, color: string, r: number): void {
    ctx.fillStyle = color;
    ctx.beginPath();
    for (let i = 0; i + 1 < pts.length; i += 2) {
      const x = g.px(pts[i]);
      const y = g.py(pts[i + 1]);
      ctx.moveTo(x + r, y);
      ctx.arc(x, y, r, 0, 2 * Math.PI);
    }
    ctx.fill();
  }

  private drawField(ctx: CanvasRenderingContext2D, g: Frame, snap: FlowSnapshot, i: number): void {
    const field = snap.fields[i];
    if (!field) return;
    // One speed scale for the whole trajectory, so arrow lengths compare across time.
    let maxMag = 0;
    for (const f of snap.fields) {
      for (let k = 0; k < f.length; k += 2) {
        const m = Math.hypot(f[k], f[k + 1]);
        if (Number.isFinite(m) && m > maxMag) maxMag = m;
      }
    }
    const grid = vectorFieldGrid(snap.bounds, FIELD_GRID_N);
    const cell = g.size / FIELD_GRID_N;
    ctx.lineWidth = 1.3;
    ctx.lineCap = "round";
    for (let k = 0; k < field.length; k += 2) {
      const vx = field[k];
      const vy = field[k + 1];
      const mag = Math.hypot(vx, vy);
      if (!Number.isFinite(mag)) continue;
      const rel = maxMag > 0 ? Math.min(1, mag / maxMag) : 0;
      const [r0, g0, b0] = COLORS.arrowSlow;
      const [r1, g1, b1] = COLORS.arrowFast;
      // Slightly transparent, so the particles on top stay the first thing the eye finds.
      const color =
        `rgba(${Math.round(r0 + (r1 - r0) * rel)}, ` + `${Math.round(g0 + (g1 - g0) * rel)}, ${Math.round(b0 + (b1 - b0) * rel)}, 0.8)`;
      const cx = g.px(grid[k]);
      const cy = g.py(grid[k + 1]);
      const len = 0.85 * cell * Math.sqrt(rel);
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      if (len < 2) {
        ctx.fillRect(cx - 0.75, cy - 0.75, 1.5, 1.5);
        continue;
      }
      // Pixel y points down, so the y velocity flips sign.
      const ux = vx / mag;
      const uy = -vy / mag;
      const x1 = cx - (ux * len) / 2;
      const y1 = cy - (uy * len) / 2;
      const x2 = cx + (ux * len) / 2;
      const y2 = cy + (uy * len) / 2;
      const head = Math.min(6, 0.3 * len + 1.5);
      ctx.beginPath();
      ctx.moveTo(x1, y1);
      ctx.lineTo(x2, y2);
      ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(x2, y2);
      ctx.lineTo(x2 - head * (ux - 0.5 * uy), y2 - head * (uy + 0.5 * ux));
      ctx.lineTo(x2 - head * (ux + 0.5 * uy), y2 - head * (uy - 0.5 * ux));
      ctx.closePath();
      ctx.fill();
    }
  }
}

/** Loss per step (faint) with a running mean (bold), linear axes from zero. */
export function drawLoss(canvas: HTMLCanvasElement, losses: number[], emptyText = "press Train to start"): void {
  const { ctx, w, h } = fitCanvas(canvas, 220);
  ctx.clearRect(0, 0, w, h);
  const left = 44;
  const right = 10;
  const top = 10;
  const bottom = 24;
  const pw = w - left - right;
  const ph = h - top - bottom;
  ctx.fillStyle = COLORS.plotBg;
  ctx.fillRect(left, top, pw, ph);
  ctx.font = "11px system-ui, sans-serif";
  if (losses.length === 0) {
    ctx.fillStyle = COLORS.label;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(emptyText, left + pw / 2, top + ph / 2);
    return;
  }
  const smooth = movingAverage(losses, Math.max(1, Math.round(losses.length / 40)));
  const finite = losses.filter(Number.isFinite);
  // Scale to the smoothed curve so one noisy early batch does not flatten the rest.
  const yMax =
    Math.max(1e-6, ...smooth.filter(Number.isFinite), finite.length ? quantile(Float64Array.from(finite).sort(), 0.98) : 1) * 1.05;
  const xMax = Math.max(2, losses.length);
  const px = (i: number) => left + (i / (xMax - 1)) * pw;
  const py = (v: number) => top + ph - (Math.min(v, yMax) / yMax) * ph;
  ctx.lineWidth = 1;
  for (const y of niceTicks(0, yMax, 4)) {
    const yy = Math.round(py(y)) + 0.5;
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + pw, yy);
    ctx.stroke();
    ctx.fillStyle = COLORS.label;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(formatNumber(y), left - 5, yy);
  }
  for (const x of niceTicks(1, xMax, 5)) {
    ctx.fillStyle = COLORS.label;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText(formatNumber(x), px(x - 1), top + ph + 5);
  }
  const line = (values: number[], color: string, width: number) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    values.forEach((v, i) => (i === 0 ? ctx.moveTo(px(i), py(v)) : ctx.lineTo(px(i), py(v))));
    ctx.stroke();
  };
  line(losses, COLORS.loss, 1);
  line(smooth, COLORS.lossSmooth, 2);
  ctx.strokeStyle = COLORS.axis;
  ctx.lineWidth = 1;
  ctx.strokeRect(left + 0.5, top + 0.5, pw - 1, ph - 1);
}

/** Images [n, h, w, c] with values in [-1, 1] as a grid with labels under each tile. */
export function drawImages(
  canvas: HTMLCanvasElement,
  pixels: Float32Array,
  shape: { n: number; height: number; width: number; channels: number },
  labels: string[],
): void {
  const { n, height, width, channels } = shape;
  const cols = Math.min(n, n <= 10 ? 5 : 8);
  const rows = Math.ceil(n / cols);
  const gap = 10;
  const labelH = 16;
  const cssW = canvas.clientWidth || 560;
  const tile = Math.floor((cssW - gap * (cols + 1)) / cols);
  const cssH = rows * (tile + labelH + gap) + gap;
  canvas.style.height = `${cssH}px`;
  const { ctx, w, h } = fitCanvas(canvas, cssH);
  ctx.fillStyle = "#0d1117";
  ctx.fillRect(0, 0, w, h);
  const tileCanvas = document.createElement("canvas");
  tileCanvas.width = width;
  tileCanvas.height = height;
  const tctx = tileCanvas.getContext("2d");
  if (!tctx) return;
  const img = tctx.createImageData(width, height);
  const per = height * width * channels;
  ctx.imageSmoothingEnabled = false;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < height * width; p++) {
      for (let ch = 0; ch < 3; ch++) {
        const v = pixels[i * per + p * channels + (channels === 3 ? ch : 0)];
        img.data[4 * p + ch] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
      }
      img.data[4 * p + 3] = 255;
    }
    tctx.putImageData(img, 0, 0);
    const x = gap + (i % cols) * (tile + gap);
    const y = gap + Math.floor(i / cols) * (tile + labelH + gap);
    ctx.drawImage(tileCanvas, x, y, tile, tile);
    ctx.fillStyle = "#9aa5b4";
    ctx.fillText(labels[i] ?? "", x + tile / 2, y + tile + 2);
  }
}
