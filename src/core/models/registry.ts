// Every model family by checkpoint kind. A new network (an RGB UNet, a transformer) is one
// ModelFamily registered here; checkpoint loading, training runs and the CLI find it by kind.
import { UserError } from "../errors.js";
import type { ModelFamily } from "./family.js";
import { mlpFamily } from "./mlp.js";
import { unetFamily } from "./unet.js";
import { classifierFamily } from "./classifier.js";

const families = new Map<string, ModelFamily>();

/** Adds a family; refuses a second family for a kind already taken. */
export function registerModelFamily<C>(family: ModelFamily<C>): void {
  if (families.has(family.kind)) throw new Error(`a model family for kind '${family.kind}' is registered already`);
  families.set(family.kind, family as unknown as ModelFamily);
}

registerModelFamily(mlpFamily);
registerModelFamily(unetFamily);
registerModelFamily(classifierFamily);

/** The kinds with a registered family ("2d", "image", ...). */
export function modelKinds(): string[] {
  return [...families.keys()];
}

/** The family of checkpoint kind `kind`; UserError naming the known kinds otherwise. */
export function modelFamily(kind: string): ModelFamily {
  const f = families.get(kind);
  if (!f)
    throw new UserError(
      `no model family for checkpoint kind '${kind}'; this flowmatch knows ${modelKinds()
        .map((k) => `'${k}'`)
        .join(", ")}`,
    );
  return f;
}
