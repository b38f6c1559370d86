// Pictures: a small RGBA raster, PNG/GIF codecs and the plots flowmatch draws, one module per plot
// kind; scale.ts holds the tick/bounds/grid helpers the browser playground shares. No engine imports.
export {
  Raster,
  PALETTE,
  WHITE,
  BLACK,
  TRANSPARENT,
  INK,
  hexColor,
  mixColor,
  withAlpha,
  textWidth,
  type RGBA,
  type TextOptions,
  type ArrowOptions,
} from "./raster.js";
export { encodePng, type RgbaImage } from "./png.js";
export { encodeGif, type GifOptions } from "./gif.js";
export { niceTicks, formatNumber, autoBounds, vectorFieldGrid, movingAverage, type Bounds } from "./scale.js";
export { scatterPlot, scatterPanelRect, type ScatterPanel, type ScatterOptions } from "./scatter.js";
export { vectorFieldFrame, type VectorFieldOptions } from "./vectorField.js";
export { linePlot, type LineSeries, type LinePlotOptions } from "./linePlot.js";
export { imageGrid, imageGridCell, type ImageGridOptions } from "./imageGrid.js";
export { heatmap, valueRange, viridis } from "./heatmap.js";
export { histogram2d, densityPlot, type Histogram2dOptions } from "./histogram2d.js";
export { sideBySide, stacked, labelled } from "./compose.js";
