// Ctrl-C during training: the first press asks the loop to checkpoint and stop, a second quits now.
export interface StopRequest {
  requested(): boolean;
  dispose(): void;
}

export function stopOnSigint(): StopRequest {
  let requested = false;
  const onSigint = () => {
    if (requested) process.exit(130);
    requested = true;
    process.stderr.write("\ninterrupted: saving a checkpoint (press Ctrl-C again to quit now)\n");
  };
  process.on("SIGINT", onSigint);
  return { requested: () => requested, dispose: () => process.off("SIGINT", onSigint) };
}
