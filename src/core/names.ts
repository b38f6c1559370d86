// Closest-name suggestions for mistyped choices ("did you mean ..."), shared by every parser of names.

/** Levenshtein distance (insertions, deletions, substitutions), two rows at a time. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

/** ` (did you mean "x"?)` for the choice within `maxDistance` edits of `wanted`, else "". */
export function didYouMean(wanted: string, choices: readonly string[], maxDistance = 2): string {
  let closest = "";
  let closestDistance = Infinity;
  for (const c of choices) {
    const distance = editDistance(wanted.trim().toLowerCase(), c);
    if (distance < closestDistance) {
      closest = c;
      closestDistance = distance;
    }
  }
  return closestDistance <= maxDistance ? ` (did you mean "${closest}"?)` : "";
}
