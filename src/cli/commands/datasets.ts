// datasets: list the 2-D datasets and, with --preview DIR, write a scatter PNG of each (like
// keishihara/flow-matching's dataset previews). Picture sets are previewed when named.
import { join } from "node:path";
import { Command } from "commander";
import { Rng } from "../../core/rng.js";
import { PICTURE_DATASET_FORMS, TOY_DATASETS, sampleToy, toyBounds, type ToyDatasetName } from "../../data/toy2d.js";
import { writeFileAtomic } from "../../io/atomic.js";
import "../../data/pictureFiles.js";
import { scatterPlot } from "../../viz/index.js";
import { outDir, sampleCount, seed, toyDataset } from "../options.js";

/** A file name for a dataset: picture specs lose their path separators and odd characters. */
function previewName(name: string): string {
  return `${name.replace(/[^A-Za-z0-9._-]+/g, "_")}.png`;
}

export function registerDatasetsCommand(program: Command): void {
  program
    .command("datasets")
    .description(`list the 2-D datasets (${PICTURE_DATASET_FORMS.join(", ")} take a picture or a word); --preview DIR writes a PNG of each`)
    .argument("[specs...]", "picture datasets to preview as well, e.g. text:FLOW image:logo.png")
    .option("--preview <dir>", "write <dataset>.png scatter previews into this folder", outDir)
    .option("--n <n>", "points per preview (at least 2)", sampleCount, 5000)
    .option("--seed <n>", "random seed (0 to 2^32-1)", seed, 0)
    .action(async (specs: string[], flags: { preview?: string; n: number; seed: number }) => {
      const extra = specs.map((s) => toyDataset(s));
      const names: ToyDatasetName[] = [...TOY_DATASETS, ...extra];
      for (const name of TOY_DATASETS) process.stdout.write(`${name}\n`);
      for (const form of PICTURE_DATASET_FORMS) process.stdout.write(`${form}\n`);
      if (!flags.preview) return;
      // Every set is drawn before any file is written, so a bad picture leaves the folder as it was.
      const drawn = names.map((name) => ({ name, points: sampleToy(name, flags.n, new Rng(flags.seed)) }));
      for (const { name, points } of drawn) {
        const file = join(flags.preview, previewName(name));
        await writeFileAtomic(file, scatterPlot([{ title: name, points }], { bounds: toyBounds(name) }).toPng());
        process.stdout.write(`wrote ${file}\n`);
      }
    });
}
