// Minimal types for gifenc 1.0.3 (the package ships none). Only what src/viz/gif.ts uses.
declare module "gifenc" {
  export type GifPaletteFormat = "rgb565" | "rgb444" | "rgba4444";
  /** Colours as [r, g, b] (or [r, g, b, a] for rgba4444), bytes. */
  export type GifPalette = number[][];
  export interface GifFrameOptions {
    palette?: GifPalette;
    /** Milliseconds (stored as centiseconds). */
    delay?: number;
    /** 0 = loop forever, -1 = play once, n = repeat n times; read from the first frame. */
    repeat?: number;
    transparent?: boolean;
    transparentIndex?: number;
    dispose?: number;
  }
  export interface GifStream {
    writeFrame(index: Uint8Array, width: number, height: number, opts?: GifFrameOptions): void;
    finish(): void;
    bytes(): Uint8Array;
    bytesView(): Uint8Array;
  }
  export function GIFEncoder(opts?: { auto?: boolean; initialCapacity?: number }): GifStream;
  export function quantize(rgba: Uint8Array | Uint8ClampedArray, maxColors: number, options?: { format?: GifPaletteFormat }): GifPalette;
  export function applyPalette(rgba: Uint8Array | Uint8ClampedArray, palette: GifPalette, format?: GifPaletteFormat): Uint8Array;
  const gifenc: {
    GIFEncoder: typeof GIFEncoder;
    quantize: typeof quantize;
    applyPalette: typeof applyPalette;
  };
  export default gifenc;
}
