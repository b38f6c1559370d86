// The CLI's one Ctrl-C handler, installed by main for every command. The first press asks the work
// to stop at its next pause point (src/core/interrupt.ts): training saves a checkpoint and returns,
// sampling throws Interrupted; main then exits 130. A second press quits at once (writes are
// atomic, so no file is left half-written).
import { clearStopRequest, requestStop, stopRequested } from "../core/interrupt.js";

/** Installs the handler; returns its removal. */
export function handleSigint(): () => void {
  clearStopRequest();
  const onSigint = () => {
    if (stopRequested()) {
      process.stderr.write("\ninterrupted again: quitting now\n");
      process.exit(130);
    }
    requestStop();
    process.stderr.write("\ninterrupted: stopping (a training run saves its checkpoint first); press Ctrl-C again to quit now\n");
  };
  process.on("SIGINT", onSigint);
  return () => {
    process.off("SIGINT", onSigint);
  };
}
