#!/usr/bin/env python3
"""Continue a flowmatch training run in PyTorch, on one process or many (torchrun, DistributedDataParallel).

    torchrun --nproc_per_node 2 train.py --steps 40000 --out run-torch            # CPU: gloo
    torchrun --nproc_per_node 8 train.py --steps 40000 --out run-torch            # GPUs: nccl, one per process
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_endpoint HOST:29500 train.py ...  # several machines
    python3 train.py --steps 40000 --out run-torch                                 # one process, no torchrun

(torch < 2.0 on Python 3.11, e.g. Debian's python3-torch 1.13, cannot parse torchrun's default
--redirects/--tee "0": add `--redirects 1 --tee 1` after `torchrun`.)

It trains exactly what flowmatch trains (src/core/train.ts, optim.ts, schedulers.ts, timeSamplers.ts):
x_t = alpha_t x1 + sigma_t x0 on the run's path, target alpha'_t x1 + sigma'_t x0 (x1 - x0 on the
straight path), mean squared error over the global batch, gradients clipped to global norm 1, flowmatch's
Adam (m, v and the step count carried over from the export; step size lr sqrt(1 - b2^k) / (1 - b1^k), eps
added to sqrt(v)), EMA with warm-up min(decay, (1 + k) / (10 + k)), and a step whose loss or gradient norm
is not finite is skipped (nothing changes) and counted; --coupling ot pairs noise and data by exact
minibatch OT (within each label for image runs), and --horizontal-flip images are mirrored with
probability 1/2 after the pairing. --batch-size is the global batch, split evenly
over the processes; batches are drawn from data.safetensors (or --data) with a seed per step and process.

Checkpoints go to --out as a package of the same form (config.json, weights.safetensors, model.py,
train.py), written by rank 0 atomically; `flowmatch import --from pytorch OUT --out DIR` brings them
back, and `train.py --out OUT --resume` continues them. An --out that holds a checkpoint is refused
without --resume (continue it) or --force (replace it). Ctrl-C (or SIGTERM) finishes the step under
way, saves and exits 130; --resume continues from there.
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402  (model.py beside this file)

CHECKPOINT_FILES = ("config.json", "weights.safetensors")


def fail(message):
    """One line naming the problem and the fix; exit 1 (every rank checks the same thing)."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description="continue a flowmatch run in PyTorch (see the docstring)")
    p.add_argument("--steps", type=int, required=True, help="train until this many steps in total (like flowmatch's --steps)")
    p.add_argument("--out", required=True, help="folder for checkpoints (a package like this one)")
    p.add_argument("--from", dest="source", default=HERE, help="package to continue (default: this folder)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--force", action="store_true", help="replace a checkpoint in --out")
    p.add_argument("--batch-size", type=int, help="global batch size (default: the run's)")
    p.add_argument("--lr", type=float, help="Adam learning rate, the peak of the run's schedule (default: the run's)")
    p.add_argument("--data", help="safetensors with x [N, ...] (PyTorch layout) and, for images, y [N] labels (default: the package's)")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    a = p.parse_args()
    if a.resume and a.force:
        fail("pass --resume to continue the checkpoint in --out or --force to replace it, not both")
    for flag, v in (("--steps", a.steps), ("--checkpoint-every", a.checkpoint_every), ("--log-every", a.log_every), ("--batch-size", 1 if a.batch_size is None else a.batch_size)):
        if v < 1:
            fail(f"{flag} must be a positive integer, got {v}")
    if a.lr is not None and not a.lr > 0:
        fail(f"--lr must be positive, got {a.lr}")
    return a


# --- flowmatch's path and time samplers (src/core/schedulers.ts, timeSamplers.ts), per sample in float64 ---


def path_coefficients(name, t):
    """(alpha, sigma, dAlpha, dSigma) per sample, each [n]."""
    if name == "straight":
        return t, 1 - t, np.ones_like(t), -np.ones_like(t)
    if name == "cosine":
        h = (math.pi / 2) * t
        return np.sin(h), np.cos(h), (math.pi / 2) * np.cos(h), -(math.pi / 2) * np.sin(h)
    if name == "vp":
        beta_min, beta_max = 0.1, 20.0
        s = 1 - np.minimum(t, 1 - 1e-5)
        T = s * beta_min + 0.5 * s * s * (beta_max - beta_min)
        dT = -(beta_min + s * (beta_max - beta_min))
        alpha = np.exp(-0.5 * T)
        d_alpha = -0.5 * dT * alpha
        sigma = np.sqrt(np.maximum(1 - alpha * alpha, 1e-12))
        return alpha, sigma, d_alpha, -alpha * d_alpha / sigma
    fail(f"unknown probability path {name!r} in config.json; expected straight, vp or cosine")


def sample_times(name, n, rng):
    if name == "uniform":
        return rng.random(n)
    if name == "logit-normal":
        return 1 / (1 + np.exp(-rng.standard_normal(n)))
    if name == "u-shaped":
        return rng.beta(0.5, 0.5, n)
    if name == "late":
        return np.sqrt(rng.random(n))
    fail(f"unknown time sampler {name!r} in config.json; expected uniform, logit-normal, u-shaped or late")


def ot_couple(x0, x1):
    """Minibatch optimal transport (src/core/coupling.ts): re-pair rows by the min squared-distance assignment."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        fail("this run uses --coupling ot, which needs scipy here (apt install python3-scipy or pip install scipy)")
    a, b = x0.reshape(len(x0), -1), x1.reshape(len(x1), -1)
    cost = ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return perm


def ot_couple_by_class(x0, x1, y):
    """Class-aware minibatch OT (src/core/coupling.ts otCoupleByClass), for image runs: within each label
    (dropped-out rows share the null label), in order of first appearance, the next rows of noise are
    matched to that label's images by exact OT. Returns x0 reordered so row i is image i's partner.
    Pairing across labels would hand each class the noise nearest its images, so the noise given a
    label would no longer be N(0, I)."""
    out = np.empty_like(x0)
    start = 0
    for c in dict.fromkeys(y.tolist()):
        rows = np.nonzero(y == c)[0]
        noise = x0[start:start + len(rows)]
        perm = ot_couple(noise, x1[rows])  # noise row k pairs with image rows[perm[k]]
        out[rows[perm]] = noise
        start += len(rows)
    return out


def coefficient_tensors(path, t, ndim, device="cpu"):
    """alpha, sigma, dAlpha, dSigma as float32 tensors broadcasting over samples of `ndim` - 1 dimensions."""
    shape = (-1,) + (1,) * (ndim - 1)
    return tuple(torch.from_numpy(np.asarray(c, dtype=np.float64).astype(np.float32).reshape(shape)).to(device) for c in path_coefficients(path, t))


# --- the step (src/core/train.ts trainStepFn, optim.ts adamUpdate / emaUpdate) ---


def cfm_loss(net, x0, x1, t, y, coef):
    """Mean squared error between v(x_t, t, y) and the path's conditional velocity."""
    a, s, da, ds = coef
    return torch.mean((net(a * x1 + s * x0, t, y) - (da * x1 + ds * x0)) ** 2)


def grad_norm(params):
    """Global L2 norm of the gradients, before clipping."""
    return torch.sqrt(sum(torch.sum(p.grad * p.grad) for p in params))


def lr_at(tr, lr, steps, done):
    """The rate of the step taken after `done` steps, as src/core/lrSchedule.ts lrAt: linear warm-up,
    then constant or cosine decay towards zero at `steps` (this segment's target, as a flowmatch resume)."""
    warmup = int(tr.get("warmup", 0))
    if done < warmup:
        return lr * (done + 1) / warmup
    if tr.get("lrSchedule", "constant") == "constant":
        return lr
    p = min(1.0, (done - warmup) / max(1, steps - warmup))
    return lr * (1 + math.cos(math.pi * p)) / 2


@torch.no_grad()
def apply_update(params, m, v, ema, k, lr, tr, norm):
    """flowmatch's Adam step number k (1-based; the bias correction folded into the step size, eps added to
    sqrt(v)) on gradients clipped to global norm clipNorm, then the EMA with warm-up."""
    adam = tr["adam"]
    b1, b2, eps, wd, clip = adam["beta1"], adam["beta2"], adam["eps"], adam["weightDecay"], adam["clipNorm"]
    step_size = lr * math.sqrt(1 - b2**k) / (1 - b1**k)
    decay = min(tr["emaDecay"], (1 + k) / (10 + k))
    scale = min(clip / (norm + 1e-6), 1.0) if clip > 0 else 1.0
    for p, mi, vi, e in zip(params, m, v, ema):
        g = p.grad * scale
        mi.mul_(b1).add_(g, alpha=1 - b1)
        vi.mul_(b2).addcmul_(g, g, value=1 - b2)
        upd = mi / (vi.sqrt() + eps) * step_size
        if wd > 0:
            upd = upd + p * (wd * lr)
        p.sub_(upd)
        e.add_((p - e) * (1 - decay))


# --- checkpoints ---


def to_np(t):
    return t.detach().cpu().contiguous().numpy()


def save(out, cfg, names, params, ema, m, v, losses, skipped):
    os.makedirs(out, exist_ok=True)
    tensors = {}
    for prefix, group in (("", params), ("ema.", ema), ("opt.m.", m), ("opt.v.", v)):
        for name, t in zip(names, group):
            tensors[prefix + name] = to_np(t)
    if losses:
        tensors["log.loss"] = np.asarray(losses, dtype=np.float32)
    if skipped:
        tensors["log.skipped"] = np.asarray(skipped, dtype=np.int32)
    for k, a in tensors.items():
        if a.dtype == np.float32 and k != "log.loss" and not np.isfinite(a).all():
            raise RuntimeError(f"not writing the step-{cfg['step']} checkpoint: tensor {k} is not finite; the checkpoint already in {out} is kept")
    M.write_atomic(os.path.join(out, "weights.safetensors"), M.encode_safetensors(tensors, {"format": M.PACKAGE_FORMAT, "step": cfg["step"]}))
    for f in ("model.py", "train.py"):
        if os.path.realpath(os.path.join(out, f)) != os.path.realpath(os.path.join(HERE, f)):
            M.write_atomic(os.path.join(out, f), open(os.path.join(HERE, f), "rb").read())
    M.write_atomic(os.path.join(out, "config.json"), json.dumps(cfg, indent=2) + "\n")


def load_run(source, device="cpu"):
    """A package's config, network (raw weights), parameter names and tensors, EMA, Adam moments and logs."""
    try:
        cfg = M.read_config(source)
        tensors, _ = M.read_safetensors(os.path.join(source, "weights.safetensors"))
    except (OSError, ValueError) as e:
        fail(f"cannot read the package in {source}: {e}; export it again with flowmatch export --format pytorch")
    net = M.make_model(cfg["kind"], cfg["model"])
    try:
        net.load_state_dict(M.state_of(tensors, "params"), strict=True)
    except RuntimeError as e:
        fail(f"{source}/weights.safetensors does not fit the model in config.json: {str(e).splitlines()[0]}; export the run again")
    net.to(device)
    names = [n for n, _ in net.named_parameters()]
    params = [p for _, p in net.named_parameters()]
    get = lambda prefix, fallback: [torch.from_numpy(tensors[prefix + n]).to(device) if prefix + n in tensors else fallback(p) for n, p in zip(names, params)]
    ema = get("ema.", lambda p: p.detach().clone())
    m = get("opt.m.", torch.zeros_like)
    v = get("opt.v.", torch.zeros_like)
    losses = [float(x) for x in tensors.get("log.loss", [])]
    skipped = [int(x) for x in tensors.get("log.skipped", [])]
    return cfg, net, names, params, ema, m, v, losses, skipped


stop_requested = False


def request_stop(signum, frame):
    """Ctrl-C / SIGTERM: finish the step, save, exit 130. Repeats are ignored: a Ctrl-C in a terminal
    reaches every process directly and again as torchrun's SIGTERM, and the save must not be cut short."""
    global stop_requested
    stop_requested = True


def main():
    args = parse_args()
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: this torch sees no CUDA device; use --device cpu")
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    else:
        rank, world, local_rank = 0, 1, 0
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    out = args.out
    present = [f for f in CHECKPOINT_FILES if os.path.exists(os.path.join(out, f))]
    if present and not (args.resume or args.force):
        fail(f"{out} already holds a checkpoint ({', '.join(present)}); pass --resume to continue it or --force to replace it")
    if args.resume and not present:
        fail(f"--resume: {out} holds no checkpoint; run without --resume to start there from --from {args.source}")
    source = out if args.resume else args.source
    cfg, net, names, params, ema, m, v, losses, skipped = load_run(source, device)
    if cfg.get("notContinuable"):
        fail(f"{source}: {cfg['notContinuable']}")
    tr = cfg["training"]
    kind = cfg["kind"]
    coupling = tr.get("coupling", "independent")
    if coupling not in ("independent", "ot"):
        fail(f"{source}: this run uses --coupling {coupling}, which train.py does not implement (it does independent and ot); continue it in flowmatch")
    if tr.get("lrSchedule", "constant") not in ("constant", "cosine"):
        fail(f"{source}: this run uses --lr-schedule {tr['lrSchedule']}, which train.py does not implement (constant, cosine); continue it in flowmatch")
    batch = args.batch_size or tr["batchSize"]
    lr = args.lr if args.lr is not None else tr["lr"]
    if batch % world != 0:
        fail(f"global batch {batch} does not split over {world} processes; pass a --batch-size divisible by {world}")
    local_batch = batch // world

    step = start = int(cfg["step"])
    ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if use_cuda else None) if distributed else net

    data_file = args.data or cfg["data"]["file"]
    data_path = data_file if os.path.isabs(data_file) or args.data else os.path.join(source, data_file)
    try:
        data, _ = M.read_safetensors(data_path)
    except (OSError, ValueError) as e:
        fail(f"cannot read the training data {data_path}: {e}; pass --data FILE (safetensors with x and, for images, y)")
    X = torch.from_numpy(data["x"].astype(np.float32))
    Y = torch.from_numpy(data["y"].astype(np.int64)) if "y" in data else None
    mc = cfg["model"]
    sample_shape = [mc["inChannels"], mc["height"], mc["width"]] if kind == "unet" else [mc["dim"]]
    if list(X.shape[1:]) != sample_shape:
        fail(f"{data_path}: x is {list(X.shape)}, the model takes samples of shape {sample_shape}; pass --data with matching samples")
    if kind == "unet" and Y is None:
        fail(f"{data_path}: an image model needs labels y [N] beside x")
    n_data = X.shape[0]

    # This segment of training, recorded like a flowmatch resume (src/pipelines/run.ts).
    fm = cfg["flowmatch"]
    seg_train = {**(fm.get("train") or {}), "steps": args.steps, "batchSize": batch, "lr": lr,
                 "engine": f"pytorch {torch.__version__}", "processes": world, "device": device.type}
    earlier = list(fm.get("segments") or [])
    if rank == 0:
        print(f"continuing {kind} from step {start} ({source}) on {world} process(es), {device.type}, global batch {batch}", flush=True)

    seed = int(tr["seed"])
    smooth, t0 = (losses[-1] if losses else None), time.perf_counter()
    last_saved = start
    stopping = False
    while step < args.steps:
        step += 1
        rng = np.random.default_rng([seed, step, rank])  # distinct per step and process; reproducible on resume
        idx = rng.integers(0, n_data, local_batch)
        x1 = X[idx].numpy()
        y = Y[idx].clone() if Y is not None else None
        if y is not None and tr.get("labelDropout", 0) > 0:
            y[torch.from_numpy(rng.random(local_batch) < tr["labelDropout"])] = cfg["model"]["numClasses"]
        t = sample_times(tr["timeSampler"], local_batch, rng)
        x0 = rng.standard_normal(x1.shape).astype(np.float32)
        if coupling == "ot" and y is not None:
            x0 = ot_couple_by_class(x0, x1, y.numpy())
        elif coupling == "ot":
            x1 = x1[ot_couple(x0, x1)]
        if tr.get("horizontalFlip"):  # after the pairing, as src/pipelines/imageBatches.ts
            flip = rng.random(local_batch) < 0.5
            x1[flip] = x1[flip][..., ::-1]
        a, s, da, ds = coefficient_tensors(tr["path"], t, x1.ndim, device)
        x0, x1 = torch.from_numpy(x0).to(device), torch.from_numpy(x1).to(device)
        tt = torch.from_numpy(t.astype(np.float32)).to(device)
        yy = y.to(device) if y is not None else None
        loss = cfm_loss(ddp, x0, x1, tt, yy, (a, s, da, ds))
        for p in params:
            p.grad = None
        loss.backward()  # DDP averages the gradients: the gradient of the global batch's mean loss
        # One all-reduce carries the loss and whether any process was asked to stop (Ctrl-C, SIGTERM),
        # so every process stops after the same step.
        stats = torch.stack([loss.detach(), torch.tensor(1.0 if stop_requested else 0.0, device=device)])
        if distributed:
            dist.all_reduce(stats)
        global_loss, stopping = stats[0] / world, bool(stats[1] > 0)
        norm = grad_norm(params)
        lv, nv = float(global_loss), float(norm)
        if math.isfinite(lv) and math.isfinite(nv):
            # Applied updates so far + 1: Adam's bias correction and the EMA warm-up count these.
            apply_update(params, m, v, ema, step - len(skipped), lr_at(tr, lr, args.steps, step - 1), tr, nv)
            losses.append(lv)
            smooth = lv if smooth is None else 0.98 * smooth + 0.02 * lv
        else:
            skipped.append(step)
            if rank == 0:
                print(f"step {step}: loss {lv}, gradient norm {nv}; update skipped, weights unchanged", flush=True)
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            rate = (step - start) / (time.perf_counter() - t0)
            print(f"step {step}/{args.steps} loss {lv:.4f} (smoothed {smooth if smooth is not None else float('nan'):.4f}) {rate:.1f} steps/s", flush=True)
        if step % args.checkpoint_every == 0 or step == args.steps or stopping:
            if rank == 0:
                last = earlier[-1] if earlier else None
                seg = {"from": start, "to": step, "train": seg_train}
                # Like run.ts: one segment per run of equal settings (the target step count aside).
                same = lambda a, b: {k: x for k, x in (a or {}).items() if k != "steps"} == {k: x for k, x in b.items() if k != "steps"}
                segments = earlier[:-1] + [{**seg, "from": last["from"]}] if last and last.get("to") == start and same(last.get("train"), seg_train) else earlier + [seg]
                new_cfg = {**cfg, "step": step, "flowmatch": {**fm, "step": step, "segments": segments}}
                if not os.path.isabs(data_file) and not args.data and os.path.realpath(source) != os.path.realpath(out):
                    new_cfg["data"] = {**cfg["data"], "file": os.path.abspath(data_path)}
                elif args.data:
                    new_cfg["data"] = {"file": os.path.abspath(args.data), "n": int(n_data)}
                save(out, new_cfg, names, params, ema, m, v, losses, skipped)
                last_saved = step
            if distributed:
                dist.barrier()
        if stopping:
            break
    if rank == 0:
        print(f"trained {step - start} steps; checkpoint at step {last_saved} in {out}; bring it back with: flowmatch import --from pytorch {out} --out DIR", flush=True)
        if stopping:
            print(f"stopped early at step {step}; continue with --resume", flush=True)
    if distributed:
        dist.destroy_process_group()
    if stopping:
        sys.exit(130)


if __name__ == "__main__":
    main()
