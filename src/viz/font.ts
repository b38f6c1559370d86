// A 5x7 bitmap font (digits, upper and lower case, common punctuation) so pictures can carry
// titles and numbers like "step 1200 loss 0.93" without a font dependency.
// Each glyph is 7 rows of 5 bits (MSB = leftmost column), written as 14 hex digits.

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;

/** Width in pixels of str drawn at the given scale (1 px gap between glyphs, none after the last). */
export function textWidth(str: string, scale = 1): number {
  const n = [...str].length;
  return n === 0 ? 0 : (n * (GLYPH_WIDTH + 1) - 1) * Math.max(1, Math.round(scale));
}

const FONT_HEX: Record<string, string> = {
  " ": "00000000000000",
  "0": "0e11131519110e",
  "1": "040c040404040e",
  "2": "0e11010204081f",
  "3": "1f02040201110e",
  "4": "02060a121f0202",
  "5": "1f101e0101110e",
  "6": "0608101e11110e",
  "7": "1f010204080808",
  "8": "0e11110e11110e",
  "9": "0e11110f01020c",
  A: "0e1111111f1111",
  B: "1e11111e11111e",
  C: "0e11101010110e",
  D: "1c12111111121c",
  E: "1f10101e10101f",
  F: "1f10101e101010",
  G: "0e11101711110f",
  H: "1111111f111111",
  I: "0e04040404040e",
  J: "0702020202120c",
  K: "11121418141211",
  L: "1010101010101f",
  M: "111b1515111111",
  N: "11111915131111",
  O: "0e11111111110e",
  P: "1e11111e101010",
  Q: "0e11111115120d",
  R: "1e11111e141211",
  S: "0f10100e01011e",
  T: "1f040404040404",
  U: "1111111111110e",
  V: "11111111110a04",
  W: "1111111515150a",
  X: "11110a040a1111",
  Y: "1111110a040404",
  Z: "1f01020408101f",
  a: "00000e010f110f",
  b: "1010161911111e",
  c: "00000e1010110e",
  d: "01010d1311110f",
  e: "00000e111f100e",
  f: "0609081c080808",
  g: "0f1111110f010e",
  h: "10101619111111",
  i: "04000c0404040e",
  j: "0200060202120c",
  k: "10101214181412",
  l: "0c04040404040e",
  m: "00001a15151111",
  n: "00001619111111",
  o: "00000e1111110e",
  p: "1e1111111e1010",
  q: "0f1111110f0101",
  r: "00001619101010",
  s: "00000e100e011e",
  t: "08081c08080906",
  u: "0000111111130d",
  v: "00001111110a04",
  w: "0000111115150a",
  x: "0000110a040a11",
  y: "111111130d010e",
  z: "00001f0204081f",
  ".": "00000000000c0c",
  ",": "000000000c0408",
  ":": "000c0c000c0c00",
  ";": "000c0c000c0408",
  "=": "00001f001f0000",
  "-": "0000001f000000",
  "+": "0004041f040400",
  "(": "02040808080402",
  ")": "08040202020408",
  "[": "0e08080808080e",
  "]": "0e02020202020e",
  "/": "00010204081000",
  "%": "18190204081303",
  _: "0000000000001f",
  "!": "04040404040004",
  "?": "0e110102040004",
  "*": "0004150e150400",
  "<": "02040810080402",
  ">": "08040201020408",
  "'": "0c040800000000",
  "|": "04040404040404",
  "#": "0a0a1f0a1f0a0a",
  "^": "040a1100000000",
  "~": "00000d16000000",
  "\u00d7": "0000110a040a11", // multiplication sign, e.g. "28×28"
};

const FONT = new Map<string, number[]>();
for (const [ch, hex] of Object.entries(FONT_HEX)) {
  const rows: number[] = [];
  for (let r = 0; r < GLYPH_HEIGHT; r++) rows.push(parseInt(hex.slice(2 * r, 2 * r + 2), 16));
  FONT.set(ch, rows);
}
const FALLBACK = FONT.get("?") as number[];
// These lowercase letters hang two rows below the baseline (their rows above are drawn from row 2).
const DESCENDERS = new Set(["g", "p", "q", "y"]);

/** Rows to shift ch down by: 2 for descenders, so text can reach 9 px tall at scale 1. */
export function glyphDrop(ch: string): number {
  return DESCENDERS.has(ch) ? 2 : 0;
}

/** The 7 row bitmasks of ch; lowercase falls back to uppercase, anything else unknown to "?". */
export function glyphRows(ch: string): readonly number[] {
  return FONT.get(ch) ?? FONT.get(ch.toUpperCase()) ?? FALLBACK;
}
