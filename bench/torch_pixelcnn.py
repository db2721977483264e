#!/usr/bin/env python
"""PyTorch twins of scratchgen's PixelCNN and Gated PixelCNN (issue #7), for same-budget quality
comparisons and step-time benchmarks (bench/step_time.py, bench/cli_epoch.py).

Same architecture, parameter names (state_dict keys), float32, loss and optimizer as
scratchgen.models.pixelcnn.PixelCNN and scratchgen.models.gated_pixelcnn.GatedPixelCNN, so a
scratchgen state_dict loads straight into the torch model (`from_scratchgen`):

    TorchPixelCNN(1, 64, 7, out_channels=64)   7x7 mask-'A' conv -> 7 residual blocks (1x1 2h->h,
                                               3x3 mask-'B', 1x1 h->2h) -> ReLU 1x1 ReLU 1x1 -> logits
    TorchGatedPixelCNN(32, 8, out_channels=64) vertical/horizontal stacks, padding-made causal convs,
                                               shift_down/shift_right, tanh*sigmoid gates
    nll(x) = BCE-with-logits summed over the 784 pixels, one value per image; Adam(lr 1e-3)

A masked convolution is F.conv2d(x, weight * mask, bias, padding=k//2), with the mask that
scratchgen's MaskedConv2d uses (scratchgen.kernels.masked_conv.pixelcnn_mask when it exists,
else `causal_mask` below; `from_scratchgen` also copies a mask buffer when the scratchgen
layer saves one, and refuses a mask that differs from ours).

Equivalence check (same weights, real binarized MNIST batches: logits, per-image NLL, loss,
every parameter's gradient, and the parameters after a few Adam steps, relative L2 differences):

    SCRATCHGEN_DATA=/work/shared/data python bench/torch_pixelcnn.py check
    python bench/torch_pixelcnn.py check --model gated --steps 3 --batch-size 16 --double

Training run, step for step the protocol of the since-removed examples/pixelcnn_mnist.py that measured
the pixelcnn_small and gated_pixelcnn_small recipes; `scratchgen train pixelcnn` / `gated_pixelcnn`
(scratchgen/specs/pixelcnn.py) now train the same models, validating once per epoch. The twin keeps
that protocol: same flags, same batch order, same initial weights (scratchgen's model built with the
same seed and loaded), the whole validation split every --eval-every images, early stopping, --hours
budget, test NLL of the best-validation model; metrics.jsonl, results.json, curve.png, samples.png:

    python bench/torch_pixelcnn.py train --model pixelcnn --hours 2 --threads 1 --out runs/torch_pixelcnn_2h
    python bench/torch_pixelcnn.py train --model gated --epochs 1 --limit-train 256 --limit-eval 128 \\
        --channels 16 --blocks 2 --samples 4 --out /tmp/tpc          # smoke test

torch is a bench-only dependency; scratchgen itself never imports it.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

ADAM = dict(lr=1e-3)


# -- masks ------------------------------------------------------------------------------------------
def causal_mask(c_out, c_in, kh, kw, mask_type="B", data_channels=1):
    """The PixelCNN mask (van den Oord et al. 2016, Figure 2) of a (c_out, c_in, kh, kw) kernel.

    Every tap above the centre row, and left of the centre in the centre row, is visible. At the
    centre tap the channels are split into `data_channels` contiguous groups (R, G, B): output
    group g sees input group g' when g' < g (mask 'A') or g' <= g (mask 'B'). With one data
    channel: 'A' hides the centre, 'B' shows it. Taps right of / below the centre are hidden."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    mask = np.zeros((c_out, c_in, kh, kw), np.float32)
    ci, cj = kh // 2, kw // 2
    mask[:, :, :ci, :] = 1
    mask[:, :, ci, :cj] = 1
    g_out = np.arange(c_out) * data_channels // c_out   # contiguous groups
    g_in = np.arange(c_in) * data_channels // c_in
    centre = (g_in[None, :] < g_out[:, None]) if mask_type == "A" else (g_in[None, :] <= g_out[:, None])
    mask[:, :, ci, cj] = centre
    return mask


def scratchgen_mask(c_out, c_in, kh, kw, mask_type="B", data_channels=1):
    """scratchgen's own mask (scratchgen.kernels.masked_conv.pixelcnn_mask) when that module
    exists (square kernels only), else None."""
    if kh != kw:
        return None
    try:
        from scratchgen.kernels.masked_conv import pixelcnn_mask as sg_mask
    except ImportError:
        return None
    return np.asarray(sg_mask(c_out, c_in, kh, mask_type, data_channels), dtype=np.float32)


def pixelcnn_mask(c_out, c_in, kh, kw, mask_type="B", data_channels=1):
    m = scratchgen_mask(c_out, c_in, kh, kw, mask_type, data_channels)
    return causal_mask(c_out, c_in, kh, kw, mask_type, data_channels) if m is None else m


# -- PixelCNN ---------------------------------------------------------------------------------------
class MaskedConv2d(tnn.Conv2d):
    """'same'-padded conv2d with weight * mask; the mask is a non-persistent buffer (see from_scratchgen)."""

    def __init__(self, c_in, c_out, k, mask_type="B", data_channels=1):
        super().__init__(c_in, c_out, k, padding=k // 2)
        self.mask_type, self.data_channels = mask_type, data_channels
        self.register_buffer("mask", torch.from_numpy(pixelcnn_mask(c_out, c_in, k, k, mask_type, data_channels)),
                             persistent=False)

    def forward(self, x):
        return TF.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def masked_1x1(c_in, c_out, data_channels):
    return MaskedConv2d(c_in, c_out, 1, "B", data_channels)


class ResidualBlock(tnn.Module):
    def __init__(self, channels, kernel_size=3, data_channels=1):
        super().__init__()
        h = channels // 2
        self.reduce = masked_1x1(channels, h, data_channels)
        self.conv = MaskedConv2d(h, h, kernel_size, "B", data_channels)
        self.expand = masked_1x1(h, channels, data_channels)

    def forward(self, x):
        y = self.reduce(torch.relu(x))
        y = self.conv(torch.relu(y))
        return x + self.expand(torch.relu(y))


def _images(x, c):
    """(N, C*H*W) or (N, C, H, W) array or tensor -> float32 (N, C, H, W) torch tensor."""
    x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, np.float32))
    if x.ndim == 2:
        side = math.isqrt(x.shape[1] // c)
        x = x.reshape(x.shape[0], c, side, side)
    return x


def _nll(logits, x):
    return TF.binary_cross_entropy_with_logits(logits, x, reduction="none").reshape(x.shape[0], -1).sum(1)


class TorchPixelCNN(tnn.Module):
    def __init__(self, data_channels=1, channels=64, blocks=7, first_kernel=7, kernel_size=3, out_channels=64):
        super().__init__()
        self.data_channels = data_channels
        self.first = MaskedConv2d(data_channels, channels, first_kernel, "A", data_channels)
        self.blocks = tnn.Sequential(*[ResidualBlock(channels, kernel_size, data_channels) for _ in range(blocks)])
        self.hidden = masked_1x1(channels, out_channels, data_channels)
        self.logits = masked_1x1(out_channels, data_channels, data_channels)

    def forward(self, x):
        x = self.blocks(self.first(x))
        return self.logits(torch.relu(self.hidden(torch.relu(x))))

    def nll(self, x):
        x = _images(x, self.data_channels)
        return _nll(self(x), x)


# -- Gated PixelCNN ---------------------------------------------------------------------------------
def shift_down(x):
    return TF.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def shift_right(x):
    return TF.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def gate(a):
    p = a.shape[1] // 2
    return torch.tanh(a[:, :p]) * torch.sigmoid(a[:, p:])


class VerticalConv(tnn.Conv2d):
    """(k//2 + 1) x k kernel over the current row and the k//2 rows above (padding above only)."""

    def __init__(self, c_in, c_out, k):
        super().__init__(c_in, c_out, (k // 2 + 1, k))
        self.k = k

    def forward(self, x):
        r = self.k // 2
        return TF.conv2d(TF.pad(x, (r, r, r, 0)), self.weight, self.bias)


class HorizontalConv(tnn.Conv2d):
    """1 x (k//2 + 1) kernel over the current column and the k//2 columns to its left."""

    def __init__(self, c_in, c_out, k):
        super().__init__(c_in, c_out, (1, k // 2 + 1))
        self.k = k

    def forward(self, x):
        return TF.conv2d(TF.pad(x, (self.k // 2, 0, 0, 0)), self.weight, self.bias)


class GatedLayer(tnn.Module):
    def __init__(self, c_in, p, k, first=False, num_classes=0):
        super().__init__()
        self.first = first
        self.vertical = VerticalConv(c_in, 2 * p, k)
        self.horizontal = HorizontalConv(c_in, 2 * p, k)
        self.v_to_h = tnn.Conv2d(2 * p, 2 * p, 1)
        self.h_out = tnn.Conv2d(p, p, 1)
        if num_classes:
            self.v_embed = tnn.Parameter(torch.zeros(num_classes, 2 * p))
            self.h_embed = tnn.Parameter(torch.zeros(num_classes, 2 * p))
        self.num_classes = num_classes

    def forward(self, v, h, y=None):
        v_pre = self.vertical(v)
        h_conv = self.horizontal(h)
        if self.first:
            h_conv = shift_right(h_conv)
        h_pre = h_conv + self.v_to_h(shift_down(v_pre))
        if self.num_classes:
            v_pre = v_pre + (y @ self.v_embed).reshape(y.shape[0], -1, 1, 1)
            h_pre = h_pre + (y @ self.h_embed).reshape(y.shape[0], -1, 1, 1)
        h_new = self.h_out(gate(h_pre))
        return gate(v_pre), (h_new if self.first else h + h_new)


class TorchGatedPixelCNN(tnn.Module):
    data_channels = 1

    def __init__(self, channels=32, layers=8, kernel_size=3, first_kernel=7, out_channels=64, num_classes=0):
        super().__init__()
        self.num_classes = num_classes
        self.layers = tnn.ModuleList(
            [GatedLayer(1, channels, first_kernel, first=True, num_classes=num_classes)]
            + [GatedLayer(channels, channels, kernel_size, num_classes=num_classes) for _ in range(layers - 1)])
        self.hidden = tnn.Conv2d(channels, out_channels, 1)
        self.logits = tnn.Conv2d(out_channels, 1, 1)

    def forward(self, x, y=None):
        cond = None
        if self.num_classes:
            y = torch.as_tensor(np.asarray(y), dtype=torch.long)
            cond = TF.one_hot(y, self.num_classes).to(x.dtype)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return self.logits(torch.relu(self.hidden(torch.relu(h))))

    def nll(self, x, y=None):
        x = _images(x, 1)
        return _nll(self(x, y), x)


@torch.no_grad()
def autoregressive_sample(model, n, shape=(1, 28, 28), seed=None):
    """As scratchgen.models.pixelcnn.autoregressive_sample: the same NumPy generator and draws, so
    the same model weights give (up to float rounding near p = u) the same samples."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    x = torch.zeros((n, c, h, w))
    for i in range(h):
        for j in range(w):
            for k in range(c):
                logits = model(x)[:, k, i, j].numpy()
                p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
                x[:, k, i, j] = torch.from_numpy((rng.random(n) < p).astype(np.float32))
    return x


# -- scratchgen <-> torch ---------------------------------------------------------------------------
def build_scratchgen(model, channels, blocks, out_channels=64):
    """The scratchgen model `scratchgen train pixelcnn` / `gated_pixelcnn` builds (`model`: 'pixelcnn' or
    'gated'; `blocks` is the gated model's `layers`)."""
    if model == "pixelcnn":
        from scratchgen.models.pixelcnn import PixelCNN
        return PixelCNN(1, channels=channels, blocks=blocks, out_channels=out_channels)
    from scratchgen.models.gated_pixelcnn import GatedPixelCNN
    return GatedPixelCNN(channels=channels, layers=blocks, out_channels=out_channels)


def build_torch(model, channels, blocks, out_channels=64):
    if model == "pixelcnn":
        return TorchPixelCNN(1, channels=channels, blocks=blocks, out_channels=out_channels)
    return TorchGatedPixelCNN(channels=channels, layers=blocks, out_channels=out_channels)


def from_scratchgen(torch_model, sg_model):
    """Copy every parameter (and buffer) of a scratchgen model into its torch twin (same keys).
    A scratchgen mask (a saved buffer `<layer>.mask`, or a `mask` attribute of the layer) must equal
    the torch layer's mask; it is copied in, and a different one raises."""
    sd = {k: np.asarray(v, dtype=np.float32) for k, v in sg_model.state_dict().items()}
    own = torch_model.state_dict()
    masks = {k: v for k, v in sd.items() if k not in own and k.endswith("mask")}
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own) - set(masks))
    if missing or extra:
        raise KeyError(f"state_dict keys differ: missing in scratchgen {missing}, not in torch {extra}")
    for k in own:
        if tuple(sd[k].shape) != tuple(own[k].shape):
            raise ValueError(f"{k}: scratchgen shape {sd[k].shape} vs torch {tuple(own[k].shape)}")
    torch_model.load_state_dict({k: torch.from_numpy(sd[k].copy()) for k in own}, strict=True)
    # masks: saved buffers, or attributes of the scratchgen layers
    sg_modules = dict(sg_model.named_modules()) if hasattr(sg_model, "named_modules") else {}
    for name, m in torch_model.named_modules():
        if not isinstance(m, MaskedConv2d):
            continue
        theirs = masks.get(f"{name}.mask")
        if theirs is None and name in sg_modules:
            attr = getattr(sg_modules[name], "mask", None)
            if attr is not None:
                theirs = np.asarray(attr.numpy() if hasattr(attr, "numpy") else attr, np.float32)
        if theirs is None:
            continue
        theirs = np.broadcast_to(theirs, m.mask.shape)
        if not np.array_equal(theirs, m.mask.numpy()):
            raise ValueError(f"{name}: scratchgen's mask differs from the torch twin's "
                             f"({int((theirs != m.mask.numpy()).sum())} of {theirs.size} entries)")
        m.mask.copy_(torch.from_numpy(np.array(theirs, dtype=np.float32)))
    return torch_model


def pair(model, channels, blocks, out_channels=64, seed=0):
    """(scratchgen model built after seed_everything(seed), torch twin with the same weights)."""
    from scratchgen.train import seed_everything
    seed_everything(seed)
    sgm = build_scratchgen(model, channels, blocks, out_channels)
    return sgm, from_scratchgen(build_torch(model, channels, blocks, out_channels), sgm)


def rel_diff(a, b):
    """||a - b|| / ||b|| in float64."""
    a, b = (np.asarray(v.detach().numpy() if isinstance(v, torch.Tensor) else
                       (v.numpy() if hasattr(v, "numpy") else v), np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# -- equivalence check ------------------------------------------------------------------------------
def check_equivalence(model, batches, channels, blocks, out_channels=64, seed=0, double=False, log=print):
    """Same weights, same batches: per step, relative differences of the logits, the per-image NLL,
    the loss, every parameter's gradient (worst one reported), and the parameters after Adam."""
    import scratchgen as sg
    sgm, tm = pair(model, channels, blocks, out_channels, seed)
    if double:
        sgm.double()
        tm.double()
    dt = np.float64 if double else np.float32
    sg_opt, t_opt = sg.optim.Adam(sgm.parameters(), **ADAM), torch.optim.Adam(tm.parameters(), **ADAM)
    t_params = dict(tm.named_parameters())
    rows = []
    for step, xb in enumerate(batches):
        xb = xb.astype(dt)
        sg_opt.zero_grad()
        x_sg = sg.tensor(xb)
        logits_sg = sgm(x_sg)
        nll_sg = sg.losses.binary_cross_entropy_with_logits(logits_sg, x_sg, reduction="none") \
            .reshape(len(xb), -1).sum(axis=1)
        loss_sg = nll_sg.mean()
        loss_sg.backward()
        t_opt.zero_grad()
        x_t = torch.from_numpy(xb)
        logits_t = tm(x_t)
        nll_t = _nll(logits_t, x_t)
        loss_t = nll_t.mean()
        loss_t.backward()
        # the model's own nll() gives the same numbers as the spelled-out loss above
        with sg.no_grad():
            nll_api = rel_diff(sgm.nll(xb).numpy(), nll_sg.detach().numpy())
        grad = {n: rel_diff(p.grad.numpy(), t_params[n].grad) for n, p in sgm.named_parameters()}
        ref = {}
        if not double:   # float64 reference from the same weights: how far is each float32 gradient from exact?
            t64 = from_scratchgen(build_torch(model, channels, blocks, out_channels), sgm).double()
            t64.zero_grad()
            t64.nll(torch.from_numpy(xb.astype(np.float64))).mean().backward()
            ref = {n: p.grad for n, p in t64.named_parameters()}
            err_sg = {n: rel_diff(p.grad.numpy(), ref[n]) for n, p in sgm.named_parameters()}
            err_t = {n: rel_diff(t_params[n].grad, ref[n]) for n in ref}
        sg_opt.step()
        t_opt.step()
        param = {n: rel_diff(p.detach().numpy(), t_params[n]) for n, p in sgm.named_parameters()}
        worst = max(grad, key=grad.get)
        row = {"step": step + 1, "loss_sg": float(loss_sg.item()), "loss_torch": float(loss_t.item()),
               "loss_rel": abs(float(loss_sg.item()) - float(loss_t.item())) / abs(float(loss_t.item())),
               "logits_rel": rel_diff(logits_sg.detach().numpy(), logits_t),
               "nll_rel": rel_diff(nll_sg.detach().numpy(), nll_t), "nll_api_rel": nll_api,
               "grad_rel_max": grad[worst], "grad_rel_max_param": worst,
               "grad_rel_median": float(np.median(list(grad.values()))),
               "param_rel_max": max(param.values())}
        if ref:
            row.update({"grad_err64_sg_max": max(err_sg.values()), "grad_err64_torch_max": max(err_t.values()),
                        "grad_err64_sg_median": float(np.median(list(err_sg.values()))),
                        "grad_err64_torch_median": float(np.median(list(err_t.values())))})
        rows.append(row)
        if log:
            log(f"{model} step {row['step']}: loss scratchgen {row['loss_sg']:.5f} torch {row['loss_torch']:.5f} "
                f"(rel {row['loss_rel']:.1e}); logits rel {row['logits_rel']:.1e}; per-image nll rel "
                f"{row['nll_rel']:.1e}; grads rel max {row['grad_rel_max']:.1e} ({worst}), median "
                f"{row['grad_rel_median']:.1e}; params after Adam rel max {row['param_rel_max']:.1e}")
            if ref:
                log(f"    vs float64 torch from the same weights: grad error max/median scratchgen "
                    f"{row['grad_err64_sg_max']:.1e}/{row['grad_err64_sg_median']:.1e}, torch "
                    f"{row['grad_err64_torch_max']:.1e}/{row['grad_err64_torch_median']:.1e}")
    return rows


def check_main(args):
    from scratchgen.data import load_binarized_mnist
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    x = load_binarized_mnist("train")
    batches = [x[rng.choice(len(x), args.batch_size, replace=False)].reshape(-1, 1, 28, 28)
               for _ in range(args.steps)]
    models = ["pixelcnn", "gated"] if args.model == "both" else [args.model]
    out = {}
    for m in models:
        channels = args.channels or (64 if m == "pixelcnn" else 32)
        blocks = args.blocks or (7 if m == "pixelcnn" else 8)
        print(f"{m}: channels {channels}, blocks {blocks}, out_channels {args.out_channels}, batch {args.batch_size}, "
              f"{'float64' if args.double else 'float32'}", flush=True)
        out[m] = check_equivalence(m, batches, channels, blocks, args.out_channels, args.seed, args.double)
    keys = ("loss_rel", "logits_rel", "nll_rel", "nll_api_rel", "grad_rel_max", "param_rel_max",
            "grad_err64_sg_max", "grad_err64_torch_max")
    worst = {m: {k: max(r[k] for r in rows) for k in keys if k in rows[0]} for m, rows in out.items()}
    print("worst over steps:", json.dumps(worst))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": out, "worst": worst}, f, indent=1)
    # logits/loss/NLL at the first step are the pure forward comparison; gradients up to tol
    ok = all(w["loss_rel"] < args.tol and w["logits_rel"] < args.tol and w["nll_rel"] < args.tol
             and w["grad_rel_max"] < args.tol for w in worst.values())
    print("EQUIVALENT" if ok else f"MISMATCH (tolerance {args.tol})")
    return 0 if ok else 1


# -- training (the protocol of the since-removed examples/pixelcnn_mnist.py) --------------------------
def images(split, limit=None):
    from scratchgen.data import load_binarized_mnist
    x = load_binarized_mnist(split)
    return x[:limit].reshape(-1, 1, 28, 28)


@torch.no_grad()
def mean_nll(model, x, batch=500):
    model.eval()
    total = sum(float(model.nll(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))).sum())
                for i in range(0, len(x), batch))
    model.train()
    return total / len(x)


def batches(x, batch_size, seed, epoch):
    """One shuffled epoch, as scratchgen.data.DataLoader(shuffle=True, seed=seed) draws it."""
    n = len(x)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for b in range(-(-n // batch_size)):
        yield np.array(x[order[b * batch_size:min((b + 1) * batch_size, n)]])


def train(args, log=print):
    from scratchgen import plots
    from scratchgen.train import append_jsonl
    if args.threads:
        torch.set_num_threads(args.threads)
    args.channels = args.channels or (64 if args.model == "pixelcnn" else 32)
    args.blocks = args.blocks or (7 if args.model == "pixelcnn" else 8)
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(args.seed)
    train_x = images("train", args.limit_train)
    valid_x, test_x = images("valid", args.limit_eval), images("test", args.limit_eval)
    if args.torch_init:
        model = build_torch(args.model, args.channels, args.blocks, args.out_channels)
    else:  # scratchgen's initial weights: its model built after seed_everything(seed), as the reference runs did
        model = pair(args.model, args.channels, args.blocks, args.out_channels, args.seed)[1]
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    log(model, f"\n{sum(q.numel() for q in model.parameters()):,} parameters; torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads")
    eval_every = args.eval_every or len(train_x)
    path = os.path.join(args.out, "metrics.jsonl")
    if os.path.exists(path):
        os.remove(path)

    best, best_state, bad, seen, since, running = math.inf, None, 0, 0, 0, []

    def evaluate():
        nonlocal best, best_state, bad, running
        valid = mean_nll(model, valid_x)
        record = {"epoch": round(seen / len(train_x), 3), "images": seen, "train_nll": float(np.mean(running)),
                  "valid_nll": valid, "time_s": round(time.perf_counter() - t0, 1)}
        running = []
        append_jsonl(path, record)
        log(" ".join(f"{k} {v}" for k, v in record.items()))
        if valid < best:
            best, best_state, bad = valid, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1

    t0 = time.perf_counter()
    done = False
    for epoch in range(1, args.epochs + 1):
        for xb in batches(train_x, args.batch_size, args.seed, epoch - 1):
            opt.zero_grad()
            loss = model.nll(torch.from_numpy(xb)).mean()
            loss.backward()
            opt.step()
            running.append(float(loss.item()))
            seen, since = seen + len(xb), since + len(xb)
            if since < eval_every:
                continue
            since = 0
            evaluate()
            if bad >= args.patience or (args.hours and time.perf_counter() - t0 > 3600 * args.hours):
                done = True
                break
        if done:
            break
    if since and not done:  # the images after the last evaluation count too
        evaluate()
    seconds = time.perf_counter() - t0

    if best_state is not None:
        model.load_state_dict(best_state)
    results = {"framework": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "init": "torch" if args.torch_init else "scratchgen", "seed": args.seed,
               "model": args.model, "channels": args.channels, "blocks": args.blocks,
               "parameters": int(sum(q.numel() for q in model.parameters())),
               "epochs": round(seen / len(train_x), 3), "train_seconds": round(seconds, 1),
               "best_valid_nll": best, "test_nll": mean_nll(model, test_x), "test_images": len(test_x)}
    log(json.dumps(results))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if os.path.exists(path):
        plots.curves(path, os.path.join(args.out, "curve.png"), keys=["train_nll", "valid_nll"], x="images",
                     title=f"torch {args.model}: NLL (nats) vs training images")
    if args.samples:
        x = autoregressive_sample(model.eval(), args.samples, seed=args.seed).numpy()
        plots.image_grid(x.reshape(-1, 28, 28), os.path.join(args.out, "samples.png"),
                         nrow=int(math.ceil(math.sqrt(args.samples))))
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="scratchgen vs torch logits, losses, gradients from identical weights")
    c.add_argument("--model", choices=["pixelcnn", "gated", "both"], default="both")
    c.add_argument("--channels", type=int, default=None, help="default: 64 (pixelcnn) / 32 (gated)")
    c.add_argument("--blocks", type=int, default=None, help="default: 7 (pixelcnn) / 8 (gated)")
    c.add_argument("--out-channels", type=int, default=64)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--steps", type=int, default=3, help="Adam steps (one real MNIST batch each)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--double", action="store_true", help="both models in float64 (differences -> ~1e-13)")
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--json", default=None, help="write the per-step numbers here")

    t = sub.add_parser("train", help="train the torch twin with the protocol of the runs behind the pixelcnn recipes")
    t.add_argument("--model", choices=["pixelcnn", "gated"], default="pixelcnn")
    t.add_argument("--channels", type=int, default=None, help="2h for PixelCNN (64), p for gated (32)")
    t.add_argument("--blocks", type=int, default=None, help="residual blocks (7) or gated layers (8)")
    t.add_argument("--out-channels", type=int, default=64)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--hours", type=float, default=None, help="stop at the first evaluation after this budget")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--eval-every", type=int, default=None, help="training images between evaluations")
    t.add_argument("--patience", type=int, default=10, help="evaluations without a better valid NLL")
    t.add_argument("--limit-train", type=int, default=None)
    t.add_argument("--limit-eval", type=int, default=None)
    t.add_argument("--samples", type=int, default=16)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    t.add_argument("--torch-init", action="store_true", help="torch's own init instead of scratchgen's weights")
    t.add_argument("--out", default="runs/torch_pixelcnn")
    args = p.parse_args(argv)
    if args.cmd == "check":
        return check_main(args)
    train(args, log=lambda *a: print(*a, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
