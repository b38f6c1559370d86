// The flowmatch command. bin/flowmatch.js runs the compiled copy (dist/cli/bin.js); in a checkout,
// `node --import tsx src/cli/bin.ts` runs the sources directly (npm start, npm run dev, the tests).
import { main } from "./main.js";

process.exitCode = await main(process.argv);
