import { test } from "node:test";
import assert from "node:assert/strict";
import { UserError } from "../../../src/core/errors.js";
import {
  Raster,
  autoBounds,
  encodeGif,
  encodePng,
  formatNumber,
  hexColor,
  imageGrid,
  imageGridCell,
  labelled,
  linePlot,
  movingAverage,
  niceTicks,
  scatterPanelRect,
  scatterPlot,
  sideBySide,
  textWidth,
  vectorFieldFrame,
  vectorFieldGrid,
  type RGBA,
} from "../../../src/viz/index.js";
import { decodePng, decodePngGray } from "../../../src/data/png.js";

// ---- a tiny GIF reader (block walker + LZW decoder) so the tests check what a viewer would show ----

interface GifFrame {
  delayCs: number;
  width: number;
  height: number;
  indices: Uint8Array;
  palette: number[][];
}

function readGif(buf: Uint8Array): { header: string; width: number; height: number; loop: number | null; frames: GifFrame[] } {
  const header = String.fromCharCode(...buf.subarray(0, 6));
  const u16 = (o: number) => buf[o] | (buf[o + 1] << 8);
  const width = u16(6),
    height = u16(8);
  const readTable = (o: number, flags: number) => {
    const n = 1 << ((flags & 7) + 1);
    const table: number[][] = [];
    for (let i = 0; i < n; i++) table.push([buf[o + 3 * i], buf[o + 3 * i + 1], buf[o + 3 * i + 2]]);
    return { table, size: 3 * n };
  };
  let pos = 13;
  let globalTable: number[][] = [];
  if (buf[10] & 0x80) {
    const t = readTable(pos, buf[10]);
    globalTable = t.table;
    pos += t.size;
  }
  const subBlocks = (): Uint8Array => {
    const parts: number[] = [];
    while (buf[pos] !== 0) {
      const len = buf[pos++];
      for (let i = 0; i < len; i++) parts.push(buf[pos++]);
    }
    pos++;
    return Uint8Array.from(parts);
  };
  let loop: number | null = null;
  let delayCs = 0;
  const frames: GifFrame[] = [];
  for (;;) {
    const block = buf[pos++];
    if (block === 0x3b) break;
    if (block === 0x21) {
      const label = buf[pos++];
      const data = subBlocks();
      if (label === 0xf9) delayCs = data[1] | (data[2] << 8);
      // Application extension: "NETSCAPE2.0" then the sub-block [1, loopLo, loopHi].
      if (label === 0xff && String.fromCharCode(...data.subarray(0, 11)) === "NETSCAPE2.0") loop = data[12] | (data[13] << 8);
      continue;
    }
    assert.equal(block, 0x2c, `unexpected GIF block 0x${block.toString(16)} at ${pos - 1}`);
    const fw = u16(pos + 4),
      fh = u16(pos + 6),
      flags = buf[pos + 8];
    pos += 9;
    let palette = globalTable;
    if (flags & 0x80) {
      const t = readTable(pos, flags);
      palette = t.table;
      pos += t.size;
    }
    const minCode = buf[pos++];
    frames.push({ delayCs, width: fw, height: fh, indices: lzwDecode(subBlocks(), minCode, fw * fh), palette });
  }
  return { header, width, height, loop, frames };
}

function lzwDecode(data: Uint8Array, minCode: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  const clear = 1 << minCode,
    end = clear + 1;
  let dict: number[][] = [];
  let size = minCode + 1;
  const reset = () => {
    dict = [];
    for (let i = 0; i < clear; i++) dict.push([i]);
    dict.push([], []);
    size = minCode + 1;
  };
  reset();
  let bitPos = 0,
    n = 0;
  let prev: number[] | null = null;
  while (bitPos + size <= data.length * 8) {
    let code = 0;
    for (let b = 0; b < size; b++, bitPos++) code |= ((data[bitPos >> 3] >> (bitPos & 7)) & 1) << b;
    if (code === clear) {
      reset();
      prev = null;
      continue;
    }
    if (code === end) break;
    let entry: number[];
    if (code < dict.length) entry = dict[code];
    else if (prev) entry = [...prev, prev[0]];
    else throw new Error("bad LZW stream");
    for (const v of entry) if (n < count) out[n++] = v;
    if (prev) dict.push([...prev, entry[0]]);
    prev = entry;
    if (dict.length === 1 << size && size < 12) size++;
  }
  assert.equal(n, count, "LZW stream decoded to the wrong pixel count");
  return out;
}

const near = (a: RGBA, b: RGBA, tol: number) => [0, 1, 2].every((c) => Math.abs(a[c] - b[c]) <= tol);
const isWhite = (p: RGBA) => p[0] === 255 && p[1] === 255 && p[2] === 255;

// ---- PNG ----

test("PNG round trip preserves every RGBA byte", () => {
  const r = new Raster(37, 23);
  let s = 7;
  for (let i = 0; i < r.data.length; i++) r.data[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  const back = decodePng(encodePng(r));
  assert.equal(back.width, 37);
  assert.equal(back.height, 23);
  assert.deepEqual(Array.from(back.data), Array.from(r.data));
  assert.deepEqual(Array.from(decodePng(r.toPng()).data), Array.from(r.data));
});

test("decodePngGray gives luminance in [0,1] and composites transparency over the background", () => {
  const r = new Raster(4, 1, [0, 0, 0, 255]);
  r.data.set([255, 255, 255, 255], 4);
  r.data.set([255, 0, 0, 255], 8);
  r.data.set([255, 255, 255, 0], 12);
  const g = decodePngGray(r.toPng());
  assert.equal(g.width, 4);
  assert.ok(Math.abs(g.pixels[0]) < 1e-6);
  assert.ok(Math.abs(g.pixels[1] - 1) < 1e-6);
  assert.ok(Math.abs(g.pixels[2] - 0.299) < 1e-6);
  assert.ok(Math.abs(g.pixels[3]) < 1e-6);
  assert.ok(Math.abs(decodePngGray(r.toPng(), { background: 1 }).pixels[3] - 1) < 1e-6);
});

test("decodePng of a non-PNG is a UserError naming the fix", () => {
  assert.throws(
    () => decodePng(Buffer.from("not a png at all"), "digit.jpg"),
    (e: unknown) => e instanceof UserError && /digit\.jpg.*\.png/.test(e.message),
  );
});

// ---- GIF ----

test("GIF: header, frame count, delay, loop flag and decoded pixels", () => {
  const red = hexColor("#d1495b"),
    blue = hexColor("#1f3b73");
  const frames = [0, 1, 2].map((i) => new Raster(20, 10).fillRect(i * 5, 2, 4, 4, i === 1 ? blue : red));
  const gif = encodeGif(frames, { delayMs: 80, loop: true });
  const parsed = readGif(gif);
  assert.equal(parsed.header, "GIF89a");
  assert.equal(parsed.width, 20);
  assert.equal(parsed.frames.length, 3);
  assert.equal(parsed.loop, 0, "loop forever");
  for (const f of parsed.frames) assert.equal(f.delayCs, 8);
  // Frame 1: blue square at x 5..8, white elsewhere (rgb565 quantisation: within 8 per channel).
  const f1 = parsed.frames[1];
  const color = (x: number, y: number): RGBA => {
    const c = f1.palette[f1.indices[y * 20 + x]];
    return [c[0], c[1], c[2], 255];
  };
  assert.ok(near(color(6, 3), blue, 8), `got ${color(6, 3)}`);
  assert.ok(near(color(1, 3), [255, 255, 255, 255], 8));
  assert.ok(near(color(12, 3), [255, 255, 255, 255], 8));

  const once = readGif(encodeGif(frames, { delayMs: 50, loop: false, palette: "perFrame" }));
  assert.equal(once.loop, null, "no NETSCAPE loop block when loop=false");
  assert.equal(once.frames.length, 3);
  assert.equal(once.frames[2].delayCs, 5);
  assert.throws(() => encodeGif([new Raster(2, 2), new Raster(3, 2)], { delayMs: 10 }), /same|share one size/);
});

// ---- scatter ----

test("scatterPlot draws each panel's points in its colour and leaves the rest white", () => {
  const size = 100;
  const bounds: [number, number, number, number] = [0, 10, 0, 10];
  const red: RGBA = [200, 30, 40, 255];
  const img = scatterPlot(
    [
      { title: "data", points: Float32Array.from([2.5, 7.5]) },
      { title: "generated", points: Float32Array.from([7.5, 2.5]), color: red },
    ],
    { size, bounds, pointAlpha: 255 },
  );
  const p0 = scatterPanelRect(0, size),
    p1 = scatterPanelRect(1, size);
  // (2.5, 7.5) sits a quarter in from the left and a quarter down from the top.
  const a = img.getPixel(p0.x0 + 25, p0.y0 + 25);
  assert.ok(a[2] > a[0] + 40, `panel 0 default colour is blue-ish, got ${a}`);
  assert.ok(near(img.getPixel(p1.x0 + 75, p1.y0 + 75), red, 2));
  // Opposite corners of each panel hold no point (and no grid line at 3 px off a tick).
  assert.ok(isWhite(img.getPixel(p0.x0 + 73, p0.y0 + 73)));
  assert.ok(isWhite(img.getPixel(p1.x0 + 23, p1.y0 + 23)));
  // Points outside the bounds are clipped, not smeared over the axes.
  const clipped = scatterPlot([{ title: "x", points: Float32Array.from([50, 50]) }], { size, bounds });
  assert.ok(isWhite(clipped.getPixel(p0.x0 + 98, p0.y0 + 1)));
});

test("scatterPlot auto bounds are square and keep every point of a small set on the canvas", () => {
  const pts = Float32Array.from([-3, -1, 5, 2, 0, 0]);
  const b = autoBounds([pts]);
  assert.ok(Math.abs(b[1] - b[0] - (b[3] - b[2])) < 1e-9, "equal x and y ranges");
  assert.ok(b[0] < -3 && b[1] > 5 && b[2] < -1 && b[3] > 2);
  const size = 80;
  const img = scatterPlot([{ title: "auto", points: pts, color: [0, 0, 0, 255] }], { size, pointAlpha: 255 });
  const { x0, y0 } = scatterPanelRect(0, size);
  for (let i = 0; i < pts.length; i += 2) {
    const px = Math.floor(x0 + ((pts[i] - b[0]) / (b[1] - b[0])) * size);
    const py = Math.floor(y0 + (1 - (pts[i + 1] - b[2]) / (b[3] - b[2])) * size);
    const p = img.getPixel(px, py);
    assert.ok(p[0] < 60 && p[1] < 60 && p[2] < 60, `point ${i / 2} drawn at (${px}, ${py}): ${p}`);
  }
});

// ---- vector field ----

test("vectorFieldGrid is row-major from the top-left at cell centres", () => {
  const g = vectorFieldGrid([0, 4, 0, 2], 2);
  assert.deepEqual(Array.from(g), [1, 1.5, 3, 1.5, 1, 0.5, 3, 0.5]);
});

test("vectorFieldFrame draws the arrow along the velocity (y up) and checks the field size", () => {
  const bounds: [number, number, number, number] = [0, 1, 0, 1];
  const ink = (r: Raster, x: number, y: number) => {
    const p = r.getPixel(x, y);
    return p[0] + p[1] + p[2] < 3 * 200;
  };
  const size = 200,
    x0 = 36,
    y0 = 30; // plot-area origin (LEFT, TITLE_BAND)
  const right = vectorFieldFrame({ bounds, gridN: 1, field: Float32Array.from([1, 0]), particles: new Float32Array(0), t: 0.5, size });
  assert.ok(ink(right, x0 + 150, y0 + 100), "shaft right of centre");
  assert.ok(!ink(right, x0 + 100, y0 + 30), "nothing above centre");
  const up = vectorFieldFrame({ bounds, gridN: 1, field: Float32Array.from([0, 2]), particles: new Float32Array(0), t: 0.5, size });
  assert.ok(ink(up, x0 + 100, y0 + 30), "positive vy points up the picture");
  assert.ok(!ink(up, x0 + 150, y0 + 100));
  const withDot = vectorFieldFrame({
    bounds,
    gridN: 1,
    field: Float32Array.from([0, 0]),
    particles: Float32Array.from([0.25, 0.25]),
    t: 1,
    size,
  });
  const dot = withDot.getPixel(x0 + 50, y0 + 150);
  assert.ok(dot[0] > dot[2] + 40, `particle is drawn in red, got ${dot}`);
  assert.throws(
    () => vectorFieldFrame({ bounds, gridN: 3, field: new Float32Array(4), particles: new Float32Array(0), t: 0 }),
    /gridN\*gridN\*2 = 18/,
  );
});

// ---- line plot ----

test("linePlot draws a decreasing curve high on the left and low on the right", () => {
  const values = Array.from({ length: 500 }, (_, i) => 3 * Math.exp(-i / 100) + 0.5);
  const blue: RGBA = [20, 40, 200, 255];
  const img = linePlot([{ name: "loss", values, color: blue }], { width: 400, height: 300, smooth: 1 });
  const curveRow = (x: number) => {
    for (let y = 0; y < img.height; y++) if (near(img.getPixel(x, y), blue, 30)) return y;
    return -1;
  };
  const leftY = curveRow(70),
    rightY = curveRow(370);
  assert.ok(leftY > 0 && rightY > 0, `curve found at both ends (${leftY}, ${rightY})`);
  assert.ok(leftY < rightY - 100, `left end is higher: ${leftY} vs ${rightY}`);
  const logImg = linePlot([{ name: "loss", values }], { logY: true, title: "log" });
  let nonWhite = 0;
  for (let i = 0; i < logImg.data.length; i += 4) if (logImg.data[i] !== 255 || logImg.data[i + 1] !== 255) nonWhite++;
  assert.ok(nonWhite > 2000, `log plot is not blank (${nonWhite} inked pixels)`);
});

test("movingAverage, niceTicks and formatNumber", () => {
  assert.deepEqual(movingAverage([1, 2, 3, 4, 5], 3), [1.5, 2, 3, 4, 4.5]);
  assert.deepEqual(movingAverage([1, NaN, 3], 3), [1, 2, 3]);
  assert.deepEqual(niceTicks(-4.5, 4.5), [-4, -2, 0, 2, 4]);
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(formatNumber(0.93), "0.93");
  assert.equal(formatNumber(1200), "1200");
  assert.equal(formatNumber(0.0001), "1e-4");
});

// ---- image grid ----

test("imageGrid places image k at its cell with the right grey level", () => {
  const n = 5,
    h = 3,
    w = 4;
  const images = new Float32Array(n * h * w);
  for (let k = 0; k < n; k++) images.fill(k / 4, k * h * w, (k + 1) * h * w);
  images[2 * h * w + 1 * w + 3] = 1; // image 2, row 1, col 3 is white
  const opts = { n, height: h, width: w, channels: 1 as const, cols: 2, scale: 3, pad: 1, range: "zero1" as const };
  const img = imageGrid(images, opts);
  assert.equal(img.width, 1 + 2 * (w * 3 + 1));
  assert.equal(img.height, 1 + 3 * (h * 3 + 1));
  for (let k = 0; k < n; k++) {
    const { x, y } = imageGridCell(k, opts);
    assert.deepEqual({ x, y }, { x: 1 + (k % 2) * 13, y: 1 + Math.floor(k / 2) * 10 });
    const p = img.getPixel(x, y);
    assert.ok(Math.abs(p[0] - (255 * k) / 4) <= 1 && p[0] === p[1] && p[1] === p[2], `image ${k}: ${p}`);
  }
  const { x, y } = imageGridCell(2, opts);
  assert.deepEqual(img.getPixel(x + 3 * 3 + 2, y + 1 * 3 + 1), [255, 255, 255, 255]);
  assert.equal(img.getPixel(x + 3 * 3 + 2, y)[0], 128);

  const rgb = imageGrid(Float32Array.from([-1, 0, 1]), {
    n: 1,
    height: 1,
    width: 1,
    channels: 3,
    cols: 1,
    scale: 1,
    pad: 0,
    range: "minus1to1",
  });
  const px = rgb.getPixel(0, 0);
  assert.equal(px[0], 0);
  assert.ok(Math.abs(px[1] - 127.5) <= 0.5);
  assert.equal(px[2], 255);
  assert.throws(() => imageGrid(new Float32Array(5), opts), /expected n\*height\*width\*channels/);
});

// ---- composition and text ----

test("sideBySide and labelled place rasters where expected; text inks pixels", () => {
  const a = new Raster(10, 6, [255, 0, 0, 255]);
  const b = new Raster(7, 9, [0, 0, 255, 255]);
  const both = sideBySide([a, b], 3);
  assert.equal(both.width, 20);
  assert.equal(both.height, 9);
  assert.deepEqual(both.getPixel(9, 0), [255, 0, 0, 255]);
  assert.deepEqual(both.getPixel(11, 0), [255, 255, 255, 255]);
  assert.deepEqual(both.getPixel(13, 8), [0, 0, 255, 255]);
  const cap = labelled(both, "CFM vs Reflow");
  assert.equal(cap.width, 20);
  assert.deepEqual(cap.getPixel(13, cap.height - 1), [0, 0, 255, 255]);

  const t = new Raster(40, 10);
  const w = t.text("NFE 4", 1, 1, [0, 0, 0, 255]);
  assert.equal(w, textWidth("NFE 4"));
  assert.equal(w, 29);
  let inked = 0;
  for (let i = 0; i < t.data.length; i += 4) if (t.data[i] === 0) inked++;
  assert.ok(inked > 30 && inked < 5 * 35, `inked ${inked}`);
});
