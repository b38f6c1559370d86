// Progress for long work: a live bar on a terminal, periodic plain lines in logs and CI.
import cliProgress from "cli-progress";

export interface Progress {
  update(value: number, fields: Record<string, string>): void;
  stop(): void;
}

/**
 * Rate since the first update: a resumed run's first update is its resume step, not 0, so counting
 * from 0 would credit this process with steps an earlier one made.
 */
function rateMeter(): (value: number) => number | null {
  let first: { value: number; time: number } | null = null;
  return (value) => {
    const now = Date.now();
    if (first === null) first = { value, time: now };
    const secs = (now - first.time) / 1000;
    return value > first.value && secs > 0 ? (value - first.value) / secs : null;
  };
}

export function createProgress(label: string, total: number, startAt = 0): Progress {
  const rateOf = rateMeter();
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} {bar} {value}/{total} | {fields} | {rate}/s | ETA {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 200,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, startAt, { fields: "", rate: "-" });
    let restarted = false;
    return {
      update(value, fields) {
        const rate = rateOf(value);
        // Restart at the first update so the ETA counts from where this process began (a resume).
        if (!restarted) {
          restarted = true;
          bar.start(total, value, { fields: "", rate: "-" });
        }
        bar.update(value, { fields: formatFields(fields), rate: rate === null ? "-" : rate.toFixed(1) });
      },
      stop: () => bar.stop(),
    };
  }
  // Not a terminal: one line every 10% or 15 seconds, with rate and time left.
  let lastLine = 0;
  let lastPct = -1;
  return {
    update(value, fields) {
      const rate = rateOf(value);
      const now = Date.now();
      const pct = Math.floor((value / total) * 10);
      if (value !== total && pct === lastPct && now - lastLine < 15000) return;
      lastPct = pct;
      lastLine = now;
      const left = rate === null ? "?" : formatSeconds((total - value) / rate);
      process.stderr.write(
        `${label} ${value}/${total} | ${formatFields(fields)} | ${rate === null ? "-" : rate.toFixed(1)}/s | ${left} left\n`,
      );
    },
    stop() {},
  };
}

function formatFields(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k} ${v}`)
    .join(" | ");
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** "skipped N" for the progress line once a training step was skipped (non-finite loss or gradient). */
export function skippedField(p: { skipped: number }): Record<string, string> {
  return p.skipped > 0 ? { skipped: String(p.skipped) } : {};
}
