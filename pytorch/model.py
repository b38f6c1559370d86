#!/usr/bin/env python3
"""flowmatch's velocity networks in PyTorch: the one home of flowmatch's PyTorch model code.

`flowmatch export --format pytorch` copies this file into the package it writes (beside train.py,
config.json and weights.safetensors); the benchmark's reference (bench/torch_reference.py) imports it.
The modules mirror src/core/models/mlp.ts and unet.ts layer for layer, in PyTorch's usual NCHW
layout, and their state_dict keys equal flowmatch's parameter names. Only the tensor layouts differ:
flowmatch stores dense weights [in, out] and conv weights as im2col matrices [k*k*Cin, Cout] in
(ky, kx, cin) order; PyTorch uses Linear [out, in] and Conv2d [Cout, Cin, k, k]. A package's
weights.safetensors is in PyTorch's layout (flowmatch converts on export and import:
src/io/pytorch/layout.ts); `load_flowmatch_params` converts flowmatch's own layout (the bench).

Usage from a package folder:
    from model import load_package
    model = load_package(".", weights="ema")      # nn.Module, eval mode
    v = model(x, t, y)                              # x [B, dim] or [B, C, H, W]; t [B] in [0, 1]

Command line:
    python3 model.py to-safetensors IN.pt OUT.safetensors   write a torch.save'd state dict as safetensors
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TIME_EMBED_SCALE = 1000.0  # src/core/models/mlp.ts: t in [0, 1] is scaled before the sinusoidal features
PACKAGE_FORMAT = "flowmatch-pytorch"
PACKAGE_VERSION = 1


def frequencies(dim):
    # Same float64 -> float32 rounding as sinusoidalFrequencies() in layers.ts.
    half = dim // 2
    return torch.tensor([math.exp(-math.log(10000) * k / half) for k in range(half)], dtype=torch.float32)


def sinusoidal(t, freqs):
    args = (t * TIME_EMBED_SCALE).reshape(-1, 1) * freqs.reshape(1, -1)
    return torch.cat([torch.sin(args), torch.cos(args)], 1)


class Mlp(nn.Module):
    """concat([x, sin(x B), cos(x B), sinusoidal(1000 t)]) (no Fourier features when fourierFeatures = 0;
    raw t when timeEmbDim = 0) -> Linear/SiLU stack, last layer linear. B = fourier.weight (2*pi is in B)."""

    def __init__(self, dim, hidden, depth, timeEmbDim, fourierFeatures=0):
        super().__init__()
        self.timeEmbDim = timeEmbDim
        if fourierFeatures > 0:
            self.fourier = nn.Linear(dim, fourierFeatures, bias=False)
        sizes = [dim + 2 * fourierFeatures + (timeEmbDim if timeEmbDim > 0 else 1)] + [hidden] * depth + [dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        if timeEmbDim > 0:
            self.register_buffer("freqs", frequencies(timeEmbDim), persistent=False)

    def forward(self, x, t, y=None):
        tf = sinusoidal(t, self.freqs) if self.timeEmbDim > 0 else t.reshape(-1, 1)
        if hasattr(self, "fourier"):
            proj = self.fourier(x)
            h = torch.cat([x, torch.sin(proj), torch.cos(proj), tf], 1)
        else:
            h = torch.cat([x, tf], 1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i + 1 < len(self.layers):
                h = F.silu(h)
        return h


class ResBlock(nn.Module):
    """GN, SiLU, conv, + Linear(silu(emb)), GN, SiLU, conv, + (1x1 conv) shortcut."""

    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb_act):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb_act)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class Attention(nn.Module):
    """x + proj(MHA(qkv(GN(x)))) over the pixels (src/core/models/layers.ts selfAttention): qkv's
    output columns are q | k | v, head h takes columns h*d .. (h+1)*d - 1 of each (d = C / heads)."""

    def __init__(self, c, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        b, c, h, w = x.shape
        d = c // self.heads
        tokens = self.norm(x).reshape(b, c, h * w).transpose(1, 2)  # [B, N, C]
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.heads, d).permute(2, 0, 3, 1, 4)  # each [B, heads, N, d]
        a = torch.softmax((q / math.sqrt(d)) @ k.transpose(-1, -2), dim=-1) @ v
        out = self.proj(a.transpose(1, 2).reshape(b, h * w, c))
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Stage(nn.Module):
    """A level's res blocks (res, res1, ...; the first cin -> cout), each followed by attention (attn, attn1, ...) when `attend`."""

    def __init__(self, cin, cout, emb, groups, blocks, attend, heads):
        super().__init__()
        self.names = []
        for j in range(blocks):
            suffix = "" if j == 0 else str(j)
            self.add_module("res" + suffix, ResBlock(cin if j == 0 else cout, cout, emb, groups))
            if attend:
                self.add_module("attn" + suffix, Attention(cout, heads, groups))
            self.names.append(suffix)

    def blocks(self, h, emb_act):
        for suffix in self.names:
            h = getattr(self, "res" + suffix)(h, emb_act)
            if hasattr(self, "attn" + suffix):
                h = getattr(self, "attn" + suffix)(h)
        return h


class Unet(nn.Module):
    """src/core/models/unet.ts: stem, (res blocks, skip, stride-2 conv) per level, mid blocks,
    (nearest 2x, conv, concat skip, res blocks) per level, GN/SiLU/conv out; self-attention after
    each res block at the feature-map heights in `attention`. NCHW.
    y: [B] int64 labels, numClasses = the null (unconditional) class."""

    def __init__(self, channels, numClasses, timeEmbDim, groups, inChannels, height, width, resBlocks=1, attention=(), attentionHeads=1):
        super().__init__()
        ch, E, L = channels, timeEmbDim, len(channels)
        self.register_buffer("freqs", frequencies(E), persistent=False)
        self.time = nn.ModuleList([nn.Linear(E, E), nn.Linear(E, E)])
        self.add_module("class", nn.Embedding(numClasses + 1, E))  # flowmatch's name: class.weight
        self.stem = nn.Conv2d(inChannels, ch[0], 3, padding=1)

        def stage(level, cin, cout):
            return Stage(cin, cout, E, groups, resBlocks, height // 2**level in attention, attentionHeads)

        self.down = nn.ModuleList(stage(i, ch[0] if i == 0 else ch[i - 1], ch[i]) for i in range(L - 1))
        for i, block in enumerate(self.down):
            block.downsample = nn.Conv2d(ch[i], ch[i], 3, stride=2, padding=1)
        self.mid = stage(L - 1, ch[L - 2], ch[L - 1])
        # up[i] works at level i; they run from the coarsest level (L - 2) to 0.
        self.up = nn.ModuleList(stage(i, 2 * ch[i], ch[i]) for i in range(L - 1))
        for i, block in enumerate(self.up):
            block.upsample = nn.Conv2d(ch[i + 1], ch[i], 3, padding=1)
        self.out = nn.Module()
        self.out.norm = nn.GroupNorm(groups, ch[0], eps=1e-5)
        self.out.conv = nn.Conv2d(ch[0], inChannels, 3, padding=1)

    def forward(self, x, t, y):
        emb = self.time[1](F.silu(self.time[0](sinusoidal(t, self.freqs))))
        emb_act = F.silu(emb + getattr(self, "class")(y))
        h = self.stem(x)
        skips = []
        for block in self.down:
            h = block.blocks(h, emb_act)
            skips.append(h)
            h = block.downsample(h)
        h = self.mid.blocks(h, emb_act)
        for i in reversed(range(len(self.up))):
            h = self.up[i].upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
            h = self.up[i].blocks(torch.cat([h, skips[i]], 1), emb_act)
        return self.out.conv(F.silu(self.out.norm(h)))


UNET_KEYS = ("channels", "numClasses", "timeEmbDim", "groups", "inChannels", "height", "width")
UNET_OPTIONAL = ("resBlocks", "attention", "attentionHeads")  # absent in older checkpoints: their defaults


def make_model(kind, cfg):
    """kind "mlp" (flowmatch's '2d' checkpoints) or "unet" ('image'); cfg is the checkpoint's "model" section."""
    if kind == "mlp":
        return Mlp(**{k: cfg[k] for k in ("dim", "hidden", "depth", "timeEmbDim")}, fourierFeatures=cfg.get("fourierFeatures", 0))
    if kind == "unet":
        return Unet(**{k: cfg[k] for k in UNET_KEYS}, **{k: cfg[k] for k in UNET_OPTIONAL if k in cfg})
    raise ValueError(f"unknown model kind {kind!r}; expected 'mlp' or 'unet'")


# safetensors with numpy only (Debian's python3-torch has no safetensors package): u64 LE header
# size, JSON header (space-padded to 8 bytes), raw little-endian tensors.
_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """{name: numpy array}, metadata dict."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path} is not a safetensors file ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError(f"{path} is truncated: header of {n} bytes, file has {len(data) - 8}")
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, spec in header.items():
        if spec["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {spec['dtype']}, which this reader does not convert")
        begin, end = spec["data_offsets"]
        dt = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
        if 8 + n + end > len(data):
            raise ValueError(f"{path} is truncated: tensor {name!r} ends past the end of the file")
        arr = np.frombuffer(data, dtype=dt, count=(end - begin) // dt.itemsize, offset=8 + n + begin)
        out[name] = arr.reshape(spec["shape"]).astype(dt.newbyteorder("="), copy=True)
    return out, meta


def encode_safetensors(tensors, metadata=None):
    """Bytes of a safetensors file holding `tensors` ({name: numpy array or torch tensor}), in order."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        if a.dtype not in _NAMES:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} cannot be written")
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def write_atomic(path, data):
    """Temp file in the same folder, fsync, rename: readers see the old file or the whole new one."""
    if isinstance(data, str):
        data = data.encode()
    tmp = f"{path}.flowmatch-{os.getpid()}-{os.urandom(6).hex()}.tmp"  # the name src/io/atomic.ts cleans up
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_flowmatch_params(model, tensors, prefix=""):
    """Copy flowmatch parameters in flowmatch's own layouts (not a package's) into the module; the key sets must be equal."""
    ours = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    theirs = dict(model.named_parameters())
    if set(ours) != set(theirs):
        raise ValueError(f"parameter names differ: only flowmatch {sorted(set(ours) - set(theirs))}, only replica {sorted(set(theirs) - set(ours))}")
    with torch.no_grad():
        for name, p in theirs.items():
            w = ours[name]
            if p.dim() == 4:  # conv: [k*k*cin, cout] (ky, kx, cin) -> [cout, cin, ky, kx]
                cout, cin, k, _ = p.shape
                w = w.reshape(k, k, cin, cout).transpose(3, 2, 0, 1)
            elif p.dim() == 2 and name != "class.weight":  # dense [in, out] -> Linear [out, in]
                w = w.T
            if tuple(w.shape) != tuple(p.shape):
                raise ValueError(f"{name}: flowmatch shape {w.shape} does not fit replica shape {tuple(p.shape)}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))


def read_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("format") != PACKAGE_FORMAT:
        raise ValueError(f"{folder}/config.json is not a flowmatch PyTorch package (format {cfg.get('format')!r})")
    if cfg.get("version") != PACKAGE_VERSION:
        raise ValueError(f"{folder}/config.json is package version {cfg.get('version')!r}; this model.py reads version {PACKAGE_VERSION}")
    return cfg


def load_package(folder, weights="ema", device="cpu"):
    """The package's network with its EMA ("ema") or raw ("params") weights, in eval mode."""
    cfg = read_config(folder)
    model = make_model(cfg["kind"], cfg["model"])
    tensors, _ = read_safetensors(os.path.join(folder, "weights.safetensors"))
    model.load_state_dict(state_of(tensors, weights), strict=True)
    return model.to(device).eval()


AUX_PREFIXES = ("ema.", "opt.", "log.")


def state_of(tensors, weights="params"):
    """The state dict inside a package's weights file: raw weights, or their EMA ("ema"; the raw ones if it has none)."""
    if weights == "ema" and any(k.startswith("ema.") for k in tensors):
        return {k[4:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("ema.")}
    return {k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith(AUX_PREFIXES)}


def to_safetensors(src, dst):
    """A torch.save'd state dict (or a dict holding one under "model", "state_dict", "ema" ...) as safetensors."""
    obj = torch.load(src, map_location="cpu")
    for key in ("state_dict", "model", "model_state_dict", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{src} does not hold a state dict (a mapping of names to tensors)")
    tensors = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in obj.items()}
    write_atomic(dst, encode_safetensors(tensors))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "to-safetensors":
        try:
            to_safetensors(sys.argv[2], sys.argv[3])
        except Exception as e:  # one line for flowmatch import to show
            sys.exit(f"{type(e).__name__}: {e}")
    else:
        sys.exit("usage: model.py to-safetensors IN.pt OUT.safetensors")
