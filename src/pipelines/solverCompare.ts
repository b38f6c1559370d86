// Few-step solvers side by side: the same noise through each model with each (solver, time grid)
// at each NFE budget, quality against fresh data per row. A solver that cannot spend a budget
// exactly (Heun at an odd NFE) gets no row there, so every NFE in the table is the count made.
import { join } from "node:path";
import { initEngine } from "../engine/index.js";
import { Rng } from "../core/rng.js";
import { UserError } from "../core/errors.js";
import { mlpModel } from "../core/models/mlp.js";
import { modelField } from "../core/field.js";
import { EVALS_PER_STEP, odeint, type SolverName, type TimeGridName } from "../core/solvers.js";
import { qualityCells, type QualityReport } from "../core/metrics.js";
import { writeFileAtomic } from "../io/atomic.js";
import { evaluateToy2d } from "./toy2dSampling.js";
import type { Loaded2d } from "./model.js";

export interface SolverRow {
  model: string;
  solver: SolverName;
  grid: TimeGridName;
  /** Evaluations the solve made (counted by odeint). */
  nfe: number;
  quality: QualityReport;
}

export interface SolverCompareOptions {
  solvers: SolverName[];
  grids: TimeGridName[];
  nfes: number[];
  n: number;
  seed: number;
  out: string;
  /** Shift of the "shifted" grid. */
  shift?: number;
  onLog?: (line: string) => void;
}

/** Which budgets each solver can spend exactly; a solver that can spend none is a UserError. */
export function checkSolverBudgets(solvers: SolverName[], nfes: number[]): void {
  for (const s of solvers) {
    if (s === "dopri5")
      throw new UserError("dopri5 chooses its own steps, so it cannot be compared at a fixed NFE; compare it alone with --solver dopri5");
    if (!nfes.some((nfe) => nfe % EVALS_PER_STEP[s] === 0)) {
      throw new UserError(
        `${s} makes ${EVALS_PER_STEP[s]} evaluations per step and can spend none of --nfe ${nfes.join(",")}; add a multiple of ${EVALS_PER_STEP[s]}`,
      );
    }
  }
}

export async function compareSolvers2d(
  models: { name: string; loaded: Loaded2d }[],
  opts: SolverCompareOptions,
): Promise<{ rows: SolverRow[]; markdown: string; files: string[] }> {
  checkSolverBudgets(opts.solvers, opts.nfes);
  await initEngine();
  const dataset = models[0].loaded.config.dataset;
  const dim = models[0].loaded.config.model.dim;
  const x0 = new Rng(opts.seed).normals(opts.n * dim);
  const fields = models.map((m) => modelField(mlpModel(m.loaded.config.model), m.loaded.ema, { sampleShape: [dim] }));
  const rows: SolverRow[] = [];
  try {
    for (const nfe of opts.nfes) {
      for (let mi = 0; mi < models.length; mi++) {
        for (const solver of opts.solvers) {
          if (nfe % EVALS_PER_STEP[solver] !== 0) continue;
          // One evaluation per step leaves only one step at NFE 1 for every grid: one row.
          const grids = nfe / EVALS_PER_STEP[solver] === 1 ? opts.grids.slice(0, 1) : opts.grids;
          for (const grid of grids) {
            const r = await odeint(fields[mi].field, x0, { solver, nfe, timeGrid: grid, shift: opts.shift });
            const quality = await evaluateToy2d(dataset, r.x);
            rows.push({ model: models[mi].name, solver, grid, nfe: r.nfe, quality });
            opts.onLog?.(
              `NFE ${r.nfe} ${models[mi].name} ${solver}/${grid}: ${qualityCells(quality)
                .map((c) => `${c.label} ${c.value}`)
                .join(", ")}`,
            );
          }
        }
      }
    }
  } finally {
    for (const f of fields) f.dispose();
  }
  const columns = qualityCells(rows[0].quality);
  // The decisive figure: histogram TV where the density is known, otherwise sliced-W2.
  const score = (q: QualityReport) => q.density?.tv ?? q.sw2;
  const scoreName = rows[0].quality.density ? "TV" : "sliced-W2";
  const best = new Map<string, SolverRow>();
  for (const r of rows) {
    const key = `${r.nfe}|${r.model}`;
    const b = best.get(key);
    if (!b || score(r.quality) < score(b.quality)) best.set(key, r);
  }
  const label = (r: SolverRow) => `${r.solver}${opts.grids.length > 1 || r.grid !== "uniform" ? ` (${r.grid})` : ""}`;
  const body = rows.map((r) => {
    const mark = best.get(`${r.nfe}|${r.model}`) === r ? "**" : "";
    return `| ${r.nfe} | ${r.model} | ${mark}${label(r)}${mark} | ${qualityCells(r.quality)
      .map((c) => c.value)
      .join(" | ")} |`;
  });
  const markdown = [
    `# Solvers at equal NFE on ${dataset}`,
    "",
    `Same ${opts.n} noise samples for every row; NFE = network evaluations made. Bold: lowest ${scoreName} at that NFE for that model.` +
      (opts.grids.includes("shifted") ? ` Shifted grid: shift ${opts.shift ?? 3}.` : ""),
    "",
    `| NFE | model | solver | ${columns.map((c) => c.label).join(" | ")} |`,
    `|---:|:---|:---|${columns.map(() => "---:|").join("")}`,
    ...body,
    `| | fresh data (floor) | | ${columns.map((c) => c.floor).join(" | ")} |`,
    "",
  ].join("\n");
  const mdPath = join(opts.out, `${dataset}_solvers.md`);
  await writeFileAtomic(mdPath, markdown);
  return { rows, markdown, files: [mdPath] };
}
