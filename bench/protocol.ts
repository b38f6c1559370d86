// Replies from benchmark children (bench/worker.ts, bench/torch_reference.py) are stdout lines with
// this prefix; any other output is ignored, so a stray log line cannot be mistaken for a result.
export const PROTOCOL_PREFIX = "@@bench ";
