// Minibatch optimal-transport coupling (Tong et al. 2023, Pooladian et al. 2023): within each batch,
// re-pair noise and data by the assignment that minimises total squared distance. Straighter
// conditional paths make the marginal field straighter, so few-step sampling improves.
import { munkres } from "munkres";
import { UserError } from "./errors.js";

/**
 * How a batch pairs noise rows with data rows (`--coupling`): independently, by exact minibatch OT
 * (otCouple), or by entropic OT (sinkhornCouple).
 */
export type CouplingName = "independent" | "ot" | "sinkhorn";
/** Every CouplingName, in the order help and error messages list them. */
export const COUPLINGS: readonly CouplingName[] = ["independent", "ot", "sinkhorn"];

/** A coupling name from user input; a UserError lists the couplings for an unknown one. */
export function parseCoupling(name: string): CouplingName {
  if ((COUPLINGS as readonly string[]).includes(name)) return name as CouplingName;
  throw new UserError(`unknown coupling "${name}"; choose one of: ${COUPLINGS.join(", ")}`);
}

/**
 * Exact minimum-cost assignment between the rows of x0 and x1 (n rows of `dim` values each) under
 * squared Euclidean cost. Returns perm with x0[i] paired to x1[perm[i]].
 */
export function otAssignment(x0: Float32Array, x1: Float32Array, dim: number): Int32Array {
  const n = x0.length / dim;
  if (x1.length !== x0.length) throw new Error(`OT coupling needs equal batches, got ${n} and ${x1.length / dim} rows`);
  const cost: Float64Array[] = [];
  for (let i = 0; i < n; i++) {
    const row = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let d = 0;
      for (let k = 0; k < dim; k++) {
        const diff = x0[i * dim + k] - x1[j * dim + k];
        d += diff * diff;
      }
      row[j] = d;
    }
    cost.push(row);
  }
  const perm = new Int32Array(n);
  for (const [i, j] of munkres(cost)) perm[i] = j;
  return perm;
}

/** Reorder x1 so that row i is the OT partner of x0's row i (labels, if any, follow their images). */
export function otCouple(x0: Float32Array, x1: Float32Array, dim: number, labels?: Int32Array): { x1: Float32Array; labels?: Int32Array } {
  const perm = otAssignment(x0, x1, dim);
  const out = new Float32Array(x1.length);
  for (let i = 0; i < perm.length; i++) out.set(x1.subarray(perm[i] * dim, (perm[i] + 1) * dim), i * dim);
  if (!labels) return { x1: out };
  const outLabels = new Int32Array(labels.length);
  for (let i = 0; i < perm.length; i++) outLabels[i] = labels[perm[i]];
  return { x1: out, labels: outLabels };
}

/**
 * OT pairing within each class, for conditional models: the noise rows are split into groups as
 * large as each class's share of the batch (noise rows are i.i.d., so any split is fair) and each
 * group is matched to its class's data by exact OT. Returns x0 reordered so row i is the partner of
 * data row i (x1 and labels keep their order). Pairing across classes would hand each class the
 * noise nearest its data, so x0 given a label would no longer be N(0, I) and sampling a class from
 * fresh noise would start off the training distribution.
 */
export function otCoupleByClass(x0: Float32Array, x1: Float32Array, dim: number, labels: Int32Array): { x0: Float32Array } {
  const n = labels.length;
  if (x0.length !== n * dim || x1.length !== n * dim)
    throw new Error(`class-aware OT needs ${n} rows of ${dim} in x0 and x1, got ${x0.length / dim} and ${x1.length / dim}`);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const rows = byClass.get(labels[i]) ?? [];
    rows.push(i);
    byClass.set(labels[i], rows);
  }
  const out = new Float32Array(x0.length);
  let next = 0;
  for (const rows of byClass.values()) {
    const noise = new Float32Array(rows.length * dim);
    const data = new Float32Array(rows.length * dim);
    rows.forEach((r, k) => {
      noise.set(x0.subarray((next + k) * dim, (next + k + 1) * dim), k * dim);
      data.set(x1.subarray(r * dim, (r + 1) * dim), k * dim);
    });
    // perm pairs noise row k with data row perm[k].
    const perm = otAssignment(noise, data, dim);
    for (let k = 0; k < rows.length; k++) out.set(noise.subarray(k * dim, (k + 1) * dim), rows[perm[k]] * dim);
    next += rows.length;
  }
  return { x0: out };
}
