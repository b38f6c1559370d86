#!/usr/bin/env python3
"""PyTorch replicas of flowmatch's own models and training step: the reference side of `npm run bench`.

The replicas are pytorch/model.py (the modules `flowmatch export --format pytorch` ships), which mirror
src/core/models/mlp.ts and unet.ts layer for layer in PyTorch's NCHW layout; their state_dict keys equal
flowmatch's parameter names, so flowmatch weights (safetensors, written by bench/run.ts or the parity
test) load one-to-one after a layout change (model.load_flowmatch_params).

The training step is what a PyTorch user would write for flowmatch's recipe (src/core/train.ts,
optim.ts): straight path x_t = t x1 + (1 - t) x0, target x1 - x0, mean squared error, global-norm
clipping to 1, torch.optim.Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), EMA with warm-up
min(decay, (1 + k) / (10 + k)). (torch.optim.Adam adds eps to sqrt(v_hat), flowmatch to sqrt(v)
with the bias correction folded into the step size: Kingma & Ba's efficient form; same work.)

Modes:
  info          one JSON line: python, torch and numpy versions (or why torch is unusable)
  check FILE    compare a replica with flowmatch outputs stored in FILE (see checkFile below)
  serve         JSON-lines protocol on stdin/stdout, driven by bench/run.ts (see serve below)
"""
import json
import math
import os
import resource
import sys
import time

PROTOCOL_PREFIX = "@@bench "


def info():
    out = {"python": sys.version.split()[0]}
    try:
        import numpy
        import torch

        out.update(torch=torch.__version__, numpy=numpy.__version__)
    except Exception as e:  # torch missing or broken: the bench prints "reference not available"
        out.update(torch=None, error=f"{type(e).__name__}: {e}")
    print(json.dumps(out), flush=True)


# Everything below needs torch; imported lazily so `info` can report its absence.
def _torch():
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    return np, torch, nn, F


def _model():
    """pytorch/model.py: the one home of flowmatch's PyTorch models (also shipped by `flowmatch export --format pytorch`)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pytorch"))
    import model

    return model


def make_model(kind, cfg):
    return _model().make_model(kind, cfg)


def read_safetensors(path):
    return _model().read_safetensors(path)


def load_flowmatch_params(model, tensors, prefix=""):
    """Copy flowmatch parameters (its own layouts) into the replica; the key sets must be equal."""
    _model().load_flowmatch_params(model, tensors, prefix)


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def check_file(path):
    """FILE holds flowmatch's params ("param.<name>"), inputs x (NHWC for images), t, y (images),
    x0/x1 for the loss, flowmatch's velocity v and loss; metadata kind + config.
    Prints JSON: replica parameter count, max |v_replica - v_flowmatch|, max |v|, both losses."""
    np, torch, nn, F = _torch()
    tensors, meta = read_safetensors(path)
    kind, cfg = meta["kind"], json.loads(meta["config"])
    model = make_model(kind, cfg)
    load_flowmatch_params(model, tensors, "param.")
    x, t, v_ours = (torch.from_numpy(tensors[k]) for k in ("x", "t", "v"))
    x0, x1 = torch.from_numpy(tensors["x0"]), torch.from_numpy(tensors["x1"])
    y = torch.from_numpy(tensors["y"].astype(np.int64)) if "y" in tensors else None
    image = kind == "unet"
    nchw = (lambda a: a.permute(0, 3, 1, 2)) if image else (lambda a: a)
    with torch.no_grad():
        v = model(nchw(x), t, y)
        if image:
            v = v.permute(0, 2, 3, 1)
        loss = cfm_loss(model, nchw(x0), nchw(x1), t, y).item()
    print(json.dumps({
        "paramCount": param_count(model),
        "maxAbsDiff": float((v - v_ours).abs().max()),
        "maxAbs": float(v_ours.abs().max()),
        "loss": loss,
        "lossFlowmatch": float(tensors["loss"].reshape(-1)[0]),
    }), flush=True)


def cfm_loss(model, x0, x1, t, y):
    """Straight path: x_t = t x1 + (1 - t) x0, velocity target x1 - x0, mean squared error."""
    _, torch, _, F = _torch()
    tb = t.reshape(-1, *([1] * (x0.dim() - 1)))
    xt = tb * x1 + (1 - tb) * x0
    return F.mse_loss(model(xt, t, y), x1 - x0)


class Trainer:
    def __init__(self, model, lr=1e-3, clip=1.0, ema_decay=0.999):
        _, torch, _, _ = _torch()
        self.model, self.clip, self.decay, self.k = model, clip, ema_decay, 0
        self.params = list(model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.ema = [p.detach().clone() for p in self.params]

    def step(self, x0, x1, t, y):
        _, torch, _, _ = _torch()
        self.k += 1
        loss = cfm_loss(self.model, x0, x1, t, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        d = min(self.decay, (1 + self.k) / (10 + self.k))
        with torch.no_grad():
            for e, p in zip(self.ema, self.params):
                e.mul_(d).add_(p, alpha=1 - d)
        return loss.item()  # flowmatch reads its loss back every step too


def rk4(model, x, nfe):
    """Fixed-step RK4 from t = 0 to 1 with floor(nfe / 4) steps (src/core/solvers.ts). Returns (x, evaluations)."""
    _, torch, _, _ = _torch()
    steps = max(1, nfe // 4)
    h = 1.0 / steps
    n = x.shape[0]
    evals = 0

    def f(x, t):
        nonlocal evals
        evals += 1
        return model(x, torch.full((n,), t))

    for i in range(steps):
        t = i * h
        k1 = f(x, t)
        k2 = f(x + (h / 2) * k1, t + h / 2)
        k3 = f(x + (h / 2) * k2, t + h / 2)
        k4 = f(x + h * k3, t + h)
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x, evals


def make_workload(spec):
    """An iteration function for one workload (see bench/workloads.ts for the kinds)."""
    np, torch, nn, F = _torch()
    kind = spec["kind"]
    model_kind = "mlp" if kind.endswith("mlp") else "unet"
    cfg = spec["model"]
    model = make_model(model_kind, cfg)
    tensors, _ = read_safetensors(spec["weights"])
    load_flowmatch_params(model, tensors)
    n = spec["batch"]
    shape = [n, cfg["dim"]] if model_kind == "mlp" else [n, cfg["inChannels"], cfg["height"], cfg["width"]]
    g = torch.Generator().manual_seed(0)
    labels = lambda: torch.randint(0, cfg["numClasses"] + 1, (n,), generator=g) if model_kind == "unet" else None
    if kind.startswith("train"):
        trainer = Trainer(model)
        # A few batches drawn up front, cycled (flowmatch's side does the same): data prep is not timed.
        pool = [(torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.rand(n, generator=g), labels()) for _ in range(4)]
        state = {"i": 0}

        def iterate():
            b = pool[state["i"] % len(pool)]
            state["i"] += 1
            loss = trainer.step(*b)
            if not math.isfinite(loss):
                raise RuntimeError(f"loss became {loss}")

        return iterate, param_count(model)
    model.eval()
    x = torch.randn(shape, generator=g)
    if kind == "sample-mlp":
        nfe = spec["nfe"]

        def iterate():
            with torch.inference_mode():
                _, evals = rk4(model, x, nfe)
            if evals != nfe:
                raise RuntimeError(f"RK4 made {evals} evaluations, expected {nfe}")

        return iterate, param_count(model)
    if kind == "forward-unet":
        y = labels()
        t = torch.rand(n, generator=g)

        def iterate():
            with torch.inference_mode():
                model(x, t, y)

        return iterate, param_count(model)
    raise ValueError(f"unknown workload kind {kind!r}")


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def serve():
    """Requests, one JSON object per stdin line; replies are stdout lines starting with PROTOCOL_PREFIX.
      {"op": "setup", "workload": spec, "threads": n} -> {"ok", "params", "threads", "torch"}
      {"op": "run", "seconds": s, "minIters": m}     -> {"iters", "seconds"}: iterate until both reached
      {"op": "finish"}                               -> {"maxRssKiB", "rssKiB"}; then exit
    Errors reply {"error": message}."""
    workload = None

    def reply(obj):
        sys.stdout.write(PROTOCOL_PREFIX + json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "setup":
                _, torch, _, _ = _torch()
                torch.set_num_threads(req["threads"])
                workload, params = make_workload(req["workload"])
                reply({"ok": True, "params": params, "threads": torch.get_num_threads(), "torch": torch.__version__})
            elif op == "run":
                iters, start = 0, time.perf_counter()
                while True:
                    workload()
                    iters += 1
                    elapsed = time.perf_counter() - start
                    if iters >= req.get("minIters", 1) and elapsed >= req["seconds"]:
                        break
                reply({"iters": iters, "seconds": elapsed, "rssKiB": rss_kib()})
            elif op == "finish":
                reply({"maxRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rssKiB": rss_kib()})
                return
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as e:
            reply({"error": f"{type(e).__name__}: {e}"})
            return


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "info":
        info()
    elif mode == "check" and len(sys.argv) == 3:
        check_file(sys.argv[2])
    elif mode == "serve":
        serve()
    else:
        sys.exit("usage: torch_reference.py info | check FILE | serve")
