// serve: build the browser playground (src/web) into static files and serve them with node:http.
// The COOP/COEP headers make the page cross-origin isolated, which gives it SharedArrayBuffer and
// so lets jax-js run its Wasm kernels on several threads.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readFile, realpath, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import { Command } from "commander";
import { UserError } from "../../core/errors.js";
import { clearStopRequest, whenStopRequested } from "../../core/interrupt.js";
import { buildWeb, type WebBuildResult } from "../../web/build.js";
import { port } from "../options.js";

export const MIME_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".gif": "image/gif",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".safetensors": "application/octet-stream",
};

/** Headers on every response: cross-origin isolation (SharedArrayBuffer) and no stale bundles. */
const COMMON_HEADERS: Readonly<Record<string, string>> = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-cache",
};

export interface StaticServer {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string | Buffer, type: string, head: boolean): void {
  res.writeHead(status, { ...COMMON_HEADERS, "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}

async function handle(root: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const head = req.method === "HEAD";
  if (req.method !== "GET" && !head) {
    res.setHeader("Allow", "GET, HEAD");
    send(res, 405, "method not allowed\n", MIME_TYPES[".txt"], false);
    return;
  }
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
  } catch {
    send(res, 400, "bad request\n", MIME_TYPES[".txt"], head);
    return;
  }
  if (pathname.endsWith("/")) pathname += "index.html";
  const file = resolve(join(root, pathname));
  const inside = (path: string, dir: string) => path === dir || path.startsWith(dir + sep);
  // Never serve anything outside the build folder (e.g. /../../etc/passwd).
  if (!inside(file, root)) {
    send(res, 403, "forbidden\n", MIME_TYPES[".txt"], head);
    return;
  }
  let real: string;
  try {
    real = await realpath(file);
  } catch {
    send(res, 404, `not found: ${pathname}\n`, MIME_TYPES[".txt"], head);
    return;
  }
  // Nor anything a symlink in it leads to outside it (the folder itself may be reached by a link).
  if (!inside(real, await realpath(root))) {
    send(res, 403, "forbidden\n", MIME_TYPES[".txt"], head);
    return;
  }
  try {
    if (!(await stat(real)).isFile()) throw new Error("not a file");
    const body = await readFile(real);
    send(res, 200, body, MIME_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream", head);
  } catch {
    send(res, 404, `not found: ${pathname}\n`, MIME_TYPES[".txt"], head);
  }
}

/** Serve the files under `root`; port 0 picks a free port. */
export function startStaticServer(opts: { root: string; host: string; port: number }): Promise<StaticServer> {
  const root = resolve(opts.root);
  const server = createServer((req, res) => {
    handle(root, req, res).catch(() => {
      if (!res.headersSent) send(res, 500, "internal error\n", MIME_TYPES[".txt"], false);
      else res.destroy();
    });
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRINUSE")
        reject(
          new UserError(`port ${opts.port} on ${opts.host} is already in use; pass another with --port (e.g. --port ${opts.port + 1})`),
        );
      else if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND")
        reject(new UserError(`cannot listen on --host ${opts.host}: no such address on this machine; try --host 127.0.0.1`));
      else if (err.code === "EACCES")
        reject(new UserError(`not allowed to listen on port ${opts.port}; pick a port above 1023 with --port`));
      else reject(err);
    });
    server.listen(opts.port, opts.host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : opts.port;
      const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
      resolvePromise({
        url: `http://${host}:${port}/`,
        port,
        server,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

interface ServeFlags {
  port: number;
  host: string;
  out: string;
  buildOnly: boolean;
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("build the browser playground (train and sample 2-D flows, view checkpoints) and serve it")
    .option("--port <n>", "port to listen on (0 picks a free one)", port, 8080)
    .option("--host <address>", "address to listen on (0.0.0.0 for every interface)", "127.0.0.1")
    .option(
      "--out <dir>",
      "where the static files are built: a new or empty folder, or an earlier build (only its files are replaced)",
      "outputs/playground",
    )
    .option("--build-only", "build the static files and exit (serve them with any server that sends COOP/COEP headers)", false)
    .action(async (flags: ServeFlags) => {
      // Take the port first: a busy port is refused before anything is written.
      const server = flags.buildOnly ? undefined : await startStaticServer({ root: flags.out, host: flags.host, port: flags.port });
      let built: WebBuildResult;
      try {
        built = await buildWeb({ outDir: flags.out });
      } catch (err) {
        await server?.close();
        throw err;
      }
      process.stdout.write(`built the playground into ${built.outDir} (${built.files.length} files, ${Math.round(built.ms)} ms)\n`);
      if (!server) return;
      process.stdout.write(`playground at ${server.url} (Ctrl-C to stop)\n`);
      // Ctrl-C arrives through the CLI's one handler (src/cli/interrupt.ts); it is how serve ends, so exit 0.
      let onTerm = () => {};
      const terminated = new Promise<void>((done) => {
        onTerm = done;
        process.once("SIGTERM", onTerm);
      });
      await Promise.race([whenStopRequested(), terminated]);
      process.off("SIGTERM", onTerm);
      await server.close();
      clearStopRequest();
    });
}
