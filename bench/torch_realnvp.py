#!/usr/bin/env python
"""PyTorch twin of scratchgen's RealNVP (issue #25), for same-budget comparisons of `scratchgen
train realnvp` ("the PyTorch twin must agree within 0.03 bits/dim").

TorchRealNVP is scratchgen.models.realnvp.RealNVP layer for layer, with the same module tree, so
its state_dict keys and shapes are scratchgen's (`from_scratchgen` copies one into the other):

    logit pre-processing  y = logit(alpha + (1 - 2 alpha) x), its log-det per image (alpha 0.05)
    per scale             `couplings` checkerboard couplings (+1 on the last scale), squeeze,
                          `couplings` channel-wise couplings, factor out the first half of the channels
    coupling              affine, s = scale * tanh(raw) (scale learned per channel), t; the ResNet
                          conv3x3 -> ReLU -> `blocks` x relu(x + conv(relu(conv(x)))) -> conv3x3 (zero init)
    actnorm after each    (x + bias) * exp(log_scale), data-dependent init on the first training
                          batch (float64 mean / population std, log_scale = -log(std + 1e-6));
                          `initialized` is a saved buffer, so a copied, initialised model is not
                          initialised again
    prior                 N(0, I) on every factored-out z; log_prob(x) in nats per image on [0, 1]^D;
                          bits/dim = (-log p(x) + D log 256) / (D log 2), as scratchgen's bits_per_dim

Equivalence check: a scratchgen RealNVP with random weights (couplings not the identity, actnorm
initialised on a batch by both models), copied into the twin; log_prob of the same dequantized
MNIST batch, the gradient of the mean NLL w.r.t. every parameter, the actnorm initialisation, the
inverse of the same z and samples from the same generator, and a few Adam steps; float64 and
float32 (exit status 1 on a mismatch):

    SCRATCHGEN_DATA=/work/shared/data python bench/torch_realnvp.py check
    python bench/torch_realnvp.py check --dtype float64 --scales 3 --couplings 3 --blocks 2

Training run, `scratchgen train realnvp` with torch (bench/twins/runner.py's run: config.json,
shuffled batches as scratchgen's DataLoader draws them, validation after each epoch, the best
epoch by valid_nll, metrics.jsonl, best.pt / checkpoint.pt, the test split, samples.png,
curves.png, results.json with test_nll and test_bits_per_dim). The data and the noise are
scratchgen's: its own MNIST loader and `dequantize`, fresh training noise from
default_rng(seed + 1) batch after batch, one fixed draw default_rng(12345) for valid and test,
evaluated in chunks of 100. Initial weights: scratchgen's, by default (its model built after
seed_everything(seed) by `scratchgen.specs.create("realnvp", ...).build()`, as cmd_train does, in a
subprocess so that this process never loads scratchgen's engine or thread policy); actnorm then
initialises on the first training batch, as scratchgen's does:

    python bench/torch_realnvp.py train --epochs 1 --limit-train 2000 --limit-eval 500 --threads 1 --out /tmp/trn
    scratchgen train realnvp --epochs 1 --limit-train 2000 --limit-eval 500 --threads 1 --out /tmp/srn

--torch-init uses torch's own draw (the same distributions) instead; --dtype float64 trains the twin
in float64, a reference with less rounding. Known differences in the work done: torch's conv2d
kernels and summation orders (float32 rounding); checkpoints are .pt files; samples.png draws its z
from default_rng(seed), not from scratchgen's global generator.

Rounding is all that separates the two runs, but a short run amplifies it: on the first step the
actnorm gradients are zero up to rounding (the init batch has zero mean and unit variance by
construction), so Adam moves every actnorm parameter by +-lr in a direction set by rounding, and
lr 1e-3 gives loss spikes early on. After 32 steps (--limit-train 2000, 1 epoch) the twin in float32
and the twin in float64, same weights and data, differed by up to 0.11 test bits/dim (7 seeds);
twin minus scratchgen was +0.013 bits/dim on average over those seeds (spread -0.16 .. +0.07).
Compare single short runs with that in mind: a same-budget comparison wants several seeds or a
budget long enough for the runs to settle.

The Glow twin (torch_glow.py) imports its shared parts from here: the shape bijections, ActNorm,
ChannelCoupling (its `net`), FlowSequence, the Flow base class (logit, log_prob, bits/dim, sampling),
check_flow / check_main, the train twin (make_model) and main.

torch is a bench-only dependency; scratchgen itself never imports it.
"""
import argparse
import math
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH)
for _p in (os.path.join(BENCH, "twins"), BENCH, REPO_ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
from standalone import (add_train_args, from_scratchgen, max_abs, optimizer_steps, rel_diff,  # noqa: E402
                        run_checks, train)

LOG_2PI = math.log(2 * math.pi)
EVAL_CHUNK = 100          # scratchgen.specs.realnvp.EVAL_CHUNK
EVAL_NOISE_SEED = 12345   # the fixed dequantization draw of valid / test
SPEC_DEFAULTS = dict(epochs=10, batch_size=64, lr=1e-3, scales=2, channels=32, blocks=1, couplings=2,
                     temperature=1.0)   # scratchgen.specs.realnvp.RealNVPSpec.defaults


def bits_per_dim(log_likelihood_nats, dim=784, levels=256):
    """scratchgen.models.nice.bits_per_dim: bpd of the 8-bit data from the density on [0, 1]^dim."""
    return (-log_likelihood_nats + dim * math.log(levels)) / (dim * math.log(2))


# -- shape bijections -------------------------------------------------------------------------------
def squeeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)


def split(x):
    """(kept, z): z is the first half of the channels."""
    c = x.shape[1]
    return x[:, c // 2:], x[:, :c // 2]


def unsplit(kept, z):
    return torch.cat([z, kept], dim=1)


def gaussian_log_prob(z):
    return -0.5 * (z * z + LOG_2PI).reshape(z.shape[0], -1).sum(1)


def checkerboard(h, w, parity, dtype, device=None):
    """b of shape (1, 1, h, w): 1 where (i + j) % 2 == parity."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return ((i + j) % 2 == parity).to(dtype)[None, None]


# -- actnorm ----------------------------------------------------------------------------------------
class ActNorm(tnn.Module):
    """y = (x + bias) * exp(log_scale); log-det H * W * sum(log_scale) (the same scalar for every image).
    Initialised from the first batch it sees in training mode unless `initialized` is set."""

    def __init__(self, channels, dtype=torch.float32):
        super().__init__()
        self.bias = tnn.Parameter(torch.zeros(1, channels, 1, 1, dtype=dtype))
        self.log_scale = tnn.Parameter(torch.zeros(1, channels, 1, 1, dtype=dtype))
        self.register_buffer("initialized", torch.zeros((), dtype=dtype))

    @torch.no_grad()
    def initialize(self, x):
        data = x.detach().to(torch.float64)
        mean = data.mean(dim=(0, 2, 3), keepdim=True)
        std = data.std(dim=(0, 2, 3), keepdim=True, correction=0)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x):
        if self.training and not bool(self.initialized):
            self.initialize(x)
        h, w = x.shape[2:]
        return (x + self.bias) * self.log_scale.exp(), self.log_scale.sum() * (h * w)

    def inverse(self, y):
        return y * (-self.log_scale).exp() - self.bias


# -- couplings --------------------------------------------------------------------------------------
class ResidualBlock(tnn.Module):
    """scratchgen.nn.ResidualBlock(batch_norm=False): relu(x + conv(relu(conv(x)))), 'same' 3x3 convs."""

    def __init__(self, channels, dtype=torch.float32):
        super().__init__()
        self.body = tnn.Sequential(tnn.Conv2d(channels, channels, 3, padding=1, dtype=dtype), tnn.ReLU(),
                                   tnn.Conv2d(channels, channels, 3, padding=1, dtype=dtype))

    def forward(self, x):
        return torch.relu(x + self.body(x))


def zero_conv(in_channels, out_channels, dtype=torch.float32):
    """A 'same' 3x3 convolution started at zero (weight and bias): a coupling's or a prior's output."""
    conv = tnn.Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype)
    tnn.init.zeros_(conv.weight)
    tnn.init.zeros_(conv.bias)
    return conv


class ResNet(tnn.Module):
    def __init__(self, in_channels, out_channels, channels, blocks, dtype=torch.float32):
        super().__init__()
        self.net = tnn.Sequential(tnn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype), tnn.ReLU(),
                                  *[ResidualBlock(channels, dtype) for _ in range(blocks)])
        self.out = zero_conv(channels, 2 * out_channels, dtype)
        self.scale = tnn.Parameter(torch.ones(1, out_channels, 1, 1, dtype=dtype))

    def forward(self, x):
        out = self.out(self.net(x))
        c = out.shape[1] // 2
        return torch.tanh(out[:, :c]) * self.scale, out[:, c:]


def affine_coupling(x, s, t):
    """(x * exp(s) + t, s summed per image): scratchgen.ops.coupling.affine_coupling."""
    return x * s.exp() + t, s.reshape(s.shape[0], -1).sum(1)


def affine_coupling_inverse(y, s, t):
    return (y - t) * (-s).exp()


class CheckerboardCoupling(tnn.Module):
    def __init__(self, channels, hidden, blocks, parity, dtype=torch.float32):
        super().__init__()
        self.parity = parity
        self.net = ResNet(channels, channels, hidden, blocks, dtype)

    def _shift_and_log_scale(self, x):
        b = checkerboard(x.shape[2], x.shape[3], self.parity, x.dtype, x.device)
        s, t = self.net(x * b)
        return s * (1 - b), t * (1 - b)

    def forward(self, x):
        s, t = self._shift_and_log_scale(x)
        return affine_coupling(x, s, t)

    def inverse(self, y):
        s, t = self._shift_and_log_scale(y)
        return affine_coupling_inverse(y, s, t)


class ChannelCoupling(tnn.Module):
    """parity 0: the first half of the channels conditions the second; parity 1: the other way.
    `net` (s, t) = net(cond) in place of the ResNet (Glow's coupling, torch_glow.py)."""

    def __init__(self, channels, hidden, blocks, parity, dtype=torch.float32, net=None):
        super().__init__()
        self.parity = parity
        self.net = net if net is not None else ResNet(channels // 2, channels // 2, hidden, blocks, dtype)

    def _halves(self, x):
        c = x.shape[1] // 2
        a, b = x[:, :c], x[:, c:]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, cond, changed):
        return torch.cat([cond, changed] if self.parity == 0 else [changed, cond], dim=1)

    def forward(self, x):
        cond, changed = self._halves(x)
        y, logdet = affine_coupling(changed, *self.net(cond))
        return self._join(cond, y), logdet

    def inverse(self, y):
        cond, changed = self._halves(y)
        return self._join(cond, affine_coupling_inverse(changed, *self.net(cond)))


class FlowSequence(tnn.ModuleList):
    """Layers of a flow applied in turn (a ModuleList: state_dict keys 0., 1., ...):
    forward(x) -> (y, summed log-det), inverse(y) -> x."""

    def forward(self, x):
        logdet = 0
        for layer in self:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y):
        for layer in reversed(self):
            y = layer.inverse(y)
        return y


class _Steps(tnn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = FlowSequence(layers)

    def forward(self, x):
        return self.layers(x)

    def inverse(self, y):
        return self.layers.inverse(y)


class _Normed(tnn.Module):
    def __init__(self, coupling, channels, dtype):
        super().__init__()
        self.coupling, self.norm = coupling, ActNorm(channels, dtype)

    def forward(self, x):
        y, ld = self.coupling(x)
        y, ld2 = self.norm(y)
        return y, ld + ld2

    def inverse(self, y):
        return self.coupling.inverse(self.norm.inverse(y))


class Flow(tnn.Module):
    """What TorchRealNVP and TorchGlow (torch_glow.py) share around their layers. A subclass sets
    self.shape (C, H, W), self.alpha (the logit's) and self.z_shapes, and defines forward(x) ->
    ([z_1..z_L], log-det per image) with every z standard normal, and inverse(zs)."""

    @property
    def dtype(self):
        return next(self.parameters()).dtype

    @property
    def device(self):
        return next(self.parameters()).device

    def preprocess(self, x):
        p = self.alpha + (1 - 2 * self.alpha) * x
        y = p.log() - torch.log1p(-p)
        logdet = (math.log1p(-2 * self.alpha) - p.log() - torch.log1p(-p)).reshape(x.shape[0], -1).sum(1)
        return y, logdet

    def postprocess(self, y):
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)

    def _as_input(self, x):
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=torch.empty((), dtype=self.dtype).numpy().dtype))
        return x.to(self.device, self.dtype).reshape(x.shape[0], *self.shape)

    def log_prob(self, x):
        zs, logdet = self(x)
        return sum(gaussian_log_prob(z) for z in zs) + logdet

    def bits_per_dim(self, x):
        return bits_per_dim(self.log_prob(x), dim=int(np.prod(self.shape)))

    @torch.no_grad()
    def sample(self, n, temperature=1.0, generator=None):
        """n images in [0, 1] from z ~ N(0, temperature^2 I), drawn as scratchgen's sample draws them:
        `generator` a NumPy Generator, a seed, or a scratchgen Generator (its .rng)."""
        draw = getattr(generator, "rng", generator)
        draw = draw if isinstance(draw, np.random.Generator) else np.random.default_rng(draw)
        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        zs = [torch.from_numpy((temperature * draw.standard_normal((n,) + s)).astype(np_dtype)).to(self.device)
              for s in self.z_shapes]
        return self.inverse(zs)


class TorchRealNVP(Flow):
    """scratchgen.models.realnvp.RealNVP: forward(x) -> ([z_1..z_L], log-det per image), inverse(zs),
    log_prob(x) in nats per image for x in [0, 1]^D, bits_per_dim(x), sample(n, temperature, generator)."""

    def __init__(self, shape=(1, 28, 28), scales=2, channels=64, blocks=2, couplings=3, alpha=0.05,
                 dtype=torch.float32):
        super().__init__()
        c, h, w = shape
        if scales < 1 or couplings < 1:
            raise ValueError(f"scales and couplings must be >= 1, got {scales}, {couplings}")
        if h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ValueError(f"{scales} scales: {h}x{w} must be divisible by {2 ** (scales - 1)}")
        self.shape, self.alpha = tuple(shape), alpha
        levels, self.z_shapes = [], []
        for i in range(scales):
            checker = [_Normed(CheckerboardCoupling(c, channels, blocks, k % 2, dtype), c, dtype)
                       for k in range(couplings + (i == scales - 1))]
            if i == scales - 1:
                levels.append(tnn.ModuleList([_Steps(checker)]))
                self.z_shapes.append((c, h, w))
                break
            c, h, w = 4 * c, h // 2, w // 2
            chan = [_Normed(ChannelCoupling(c, channels, blocks, k % 2, dtype), c, dtype) for k in range(couplings)]
            levels.append(tnn.ModuleList([_Steps(checker), _Steps(chan)]))
            self.z_shapes.append((c // 2, h, w))
            c //= 2
        self.levels = tnn.ModuleList(levels)

    def forward(self, x):
        x, logdet = self.preprocess(self._as_input(x))
        zs = []
        for level in self.levels:
            x, ld = level[0](x)
            logdet = logdet + ld
            if len(level) == 1:
                zs.append(x)
                break
            x, ld = level[1](squeeze(x))
            logdet = logdet + ld
            x, z = split(x)
            zs.append(z)
        return zs, logdet

    def inverse(self, zs):
        x = zs[-1]
        for level, z in zip(reversed(self.levels), reversed(zs)):
            if len(level) == 2:
                x = unsqueeze(level[1].inverse(unsplit(x, z)))
            x = level[0].inverse(x)
        return self.postprocess(x)


# -- equivalence check ------------------------------------------------------------------------------
def randomize_(sgm, rng):
    """Random weights that make every coupling a non-trivial map: the zero-initialised output convs
    get small normal weights, the tanh scales U(0.5, 1.5) (the convs keep their default draw)."""
    for name, p in sgm.named_parameters():
        if name.endswith("out.weight") or name.endswith("out.bias"):
            p.data[...] = (0.05 * rng.standard_normal(p.shape)).astype(p.dtype)
        elif name.endswith("net.scale"):
            p.data[...] = rng.uniform(0.5, 1.5, p.shape).astype(p.dtype)


def check_one(dtype_name, batches, args, log=print):
    """One dtype: returns a dict of worst differences, and whether each is within its tolerance."""
    def models(np_dtype, t_dtype):
        from scratchgen.models.realnvp import RealNVP
        kw = dict(scales=args.scales, channels=args.channels, blocks=args.blocks, couplings=args.couplings)
        sgm = RealNVP((1, 28, 28), dtype=np_dtype, **kw)
        randomize_(sgm, np.random.default_rng(args.seed + 100))
        return sgm, lambda: from_scratchgen(TorchRealNVP((1, 28, 28), dtype=t_dtype, **kw), sgm), {}

    return check_flow(dtype_name, batches, args, models, f"scales {args.scales}, channels {args.channels}, "
                      f"blocks {args.blocks}, couplings {args.couplings}", log=log)


def check_flow(dtype_name, batches, args, models, describe, log=print):
    """check_one of a flow twin (this file's, torch_glow.py's): `models(np_dtype, torch_dtype)` ->
    (scratchgen's model with random weights and actnorm not initialised yet, a function that copies
    its state into a new twin, keywords of optimizer_steps); `describe` the configuration, for the log.
    Returns a dict of worst differences, and whether each is within its tolerance."""
    import scratchgen as sg
    from scratchgen.train import seed_everything
    np_dtype = np.float64 if dtype_name == "float64" else np.float32
    t_dtype = torch.float64 if dtype_name == "float64" else torch.float32
    seed_everything(args.seed)
    torch.manual_seed(args.seed)
    sgm, twin_of_sgm, step_kw = models(np_dtype, t_dtype)
    tm = twin_of_sgm()   # uninitialised actnorm
    x0, x1 = (b.astype(np_dtype) for b in batches[:2])
    res = {}

    # 1. actnorm's data-dependent init, each model on its own activations of the same batch
    sgm.train()
    tm.train()
    with sg.no_grad():
        lp_sg0 = sgm.log_prob(sg.tensor(x0)).numpy()
    with torch.no_grad():
        lp_t0 = tm.log_prob(torch.from_numpy(x0)).numpy()
    sd_sg, sd_t = sgm.state_dict(), tm.state_dict()
    norm_keys = [k for k in sd_t if ".norm." in k]
    res["actnorm_init_rel"] = max(rel_diff(sd_t[k], sd_sg[k]) for k in norm_keys)
    res["init_batch_log_prob_rel"] = rel_diff(lp_t0, lp_sg0)
    assert all(float(np.asarray(sd_sg[k])) == 1 for k in norm_keys if k.endswith("initialized"))

    # 2. log_prob, loss and every gradient on another batch (training mode, already initialised)
    x_sg = sg.tensor(x1)
    lp_sg = sgm.log_prob(x_sg)
    loss_sg = -lp_sg.mean()
    sgm.zero_grad()
    loss_sg.backward()
    x_t = torch.from_numpy(x1)
    lp_t = tm.log_prob(x_t)
    loss_t = -lp_t.mean()
    tm.zero_grad()
    loss_t.backward()
    t_params = dict(tm.named_parameters())
    sg_params = dict(sgm.named_parameters())
    if set(t_params) != set(sg_params):
        raise KeyError("parameter names differ")
    grad = {n: rel_diff(t_params[n].grad, p.grad.numpy()) for n, p in sg_params.items()}
    worst = max(grad, key=grad.get)
    res.update({"log_prob_max_abs_nats": max_abs(lp_t, lp_sg.detach().numpy()),
                "log_prob_rel": rel_diff(lp_t, lp_sg.detach().numpy()),
                "loss_sg": float(loss_sg.item()), "loss_torch": float(loss_t.item()),
                "bits_per_dim_sg": bits_per_dim(-float(loss_sg.item())),
                "bits_per_dim_torch": bits_per_dim(-float(loss_t.item())),
                "bits_per_dim_abs": abs(bits_per_dim(-float(loss_sg.item())) - bits_per_dim(-float(loss_t.item()))),
                "grad_rel_max": grad[worst], "grad_rel_max_param": worst,
                "grad_rel_median": float(np.median(list(grad.values()))), "n_params": len(grad)})

    # 3. a copy of the initialised model does not initialise again (training mode, a new batch)
    tm2 = twin_of_sgm().train()
    before = {k: v.clone() for k, v in tm2.state_dict().items()}
    with torch.no_grad():
        lp2 = tm2.log_prob(torch.from_numpy(batches[2].astype(np_dtype)))
    res["reinit_changed"] = max(max_abs(v, before[k]) for k, v in tm2.state_dict().items())
    with sg.no_grad():
        res["copy_log_prob_rel"] = rel_diff(lp2, sgm.log_prob(sg.tensor(batches[2].astype(np_dtype))).numpy())

    # 4. inverse of the same z, the round trip, samples from the same generator
    sgm.eval()
    tm.eval()
    zrng = np.random.default_rng(args.seed + 7)
    zs = [zrng.standard_normal((8,) + s).astype(np_dtype) for s in sgm.z_shapes]
    if [tuple(s) for s in sgm.z_shapes] != [tuple(s) for s in tm.z_shapes]:
        raise ValueError(f"z shapes differ: {sgm.z_shapes} vs {tm.z_shapes}")
    with sg.no_grad():
        x_inv_sg = sgm.inverse([sg.tensor(z) for z in zs]).numpy()
        samples_sg = sgm.sample(8, temperature=0.8, generator=sg.random.Generator(args.seed + 9)).numpy()
    with torch.no_grad():
        x_inv_t = tm.inverse([torch.from_numpy(z) for z in zs])
        samples_t = tm.sample(8, temperature=0.8, generator=np.random.default_rng(args.seed + 9))
        x_round = tm.inverse(tm(torch.from_numpy(x1))[0])
    res.update({"inverse_max_abs": max_abs(x_inv_t, x_inv_sg), "samples_max_abs": max_abs(samples_t, samples_sg),
                "round_trip_x_max_abs": max_abs(x_round, x1)})

    # 5. a few Adam steps side by side (lr 1e-3, the spec's optimizer; step_kw: a spec's lr schedule)
    sgm.train()
    tm.train()
    sg_opt = sg.optim.Adam(sgm.parameters(), lr=1e-3)
    t_opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    step_loss, step_param, step_lr = [], [], []
    for loss_rel in optimizer_steps(sg, sgm, tm, sg_opt, t_opt, batches[3:3 + args.steps], np_dtype, **step_kw):
        step_loss.append(loss_rel)
        step_param.append(max(rel_diff(t_params[n], p.detach().numpy()) for n, p in sg_params.items()))
        step_lr.append((float(sg_opt.param_groups[0]["lr"]), float(t_opt.param_groups[0]["lr"])))
    res["adam_loss_rel_max"] = max(step_loss) if step_loss else 0.0
    res["adam_param_rel_max"] = max(step_param) if step_param else 0.0
    res["adam_lr_max_abs"] = max((abs(a - b) for a, b in step_lr), default=0.0)
    res["adam_lr"] = [b for a, b in step_lr]

    # tolerances: float64 agrees to rounding; float32 to float32 rounding through ~20 layers
    f64 = dtype_name == "float64"
    tol = {"actnorm_init_rel": 1e-9 if f64 else 1e-4, "init_batch_log_prob_rel": 1e-9 if f64 else 1e-5,
           "log_prob_rel": 1e-9 if f64 else 1e-5, "log_prob_max_abs_nats": 1e-6 if f64 else 5e-3,
           "grad_rel_max": 1e-7 if f64 else 1e-3, "copy_log_prob_rel": 1e-9 if f64 else 1e-5,
           "reinit_changed": 0.0, "inverse_max_abs": 1e-9 if f64 else 1e-4,
           "samples_max_abs": 1e-9 if f64 else 1e-4, "round_trip_x_max_abs": 1e-9 if f64 else 1e-4,
           "adam_loss_rel_max": 1e-8 if f64 else 1e-4, "adam_param_rel_max": 1e-7 if f64 else 1e-3,
           "adam_lr_max_abs": 0.0}
    failed = sorted(k for k, t in tol.items() if not res[k] <= t)
    log(f"{dtype_name}: {describe}, batch {len(x1)}; {res['n_params']} parameter tensors")
    log(f"  actnorm init: max rel diff of bias/log_scale {res['actnorm_init_rel']:.2e}; log_prob on the init "
        f"batch rel {res['init_batch_log_prob_rel']:.2e}")
    log(f"  log_prob: max |diff| {res['log_prob_max_abs_nats']:.2e} nats (rel L2 {res['log_prob_rel']:.2e}); "
        f"mean NLL scratchgen {res['loss_sg']:.6f} torch {res['loss_torch']:.6f} "
        f"({res['bits_per_dim_sg']:.6f} / {res['bits_per_dim_torch']:.6f} bits/dim, "
        f"diff {res['bits_per_dim_abs']:.1e})")
    log(f"  gradients of the mean NLL: max rel L2 diff {res['grad_rel_max']:.2e} ({worst}), median "
        f"{res['grad_rel_median']:.2e}")
    log(f"  copied initialised model, training-mode forward: parameters changed by {res['reinit_changed']:.1e}, "
        f"log_prob rel {res['copy_log_prob_rel']:.2e}")
    log(f"  inverse of the same z: max |diff| {res['inverse_max_abs']:.2e}; samples (same generator, T=0.8) "
        f"{res['samples_max_abs']:.2e}; torch round trip inverse(forward(x)) "
        f"{res['round_trip_x_max_abs']:.2e}")
    log(f"  {len(step_loss)} Adam steps (lr {', '.join(f'{lr:.3g}' for lr in res['adam_lr'])}; scratchgen's "
        f"differ by {res['adam_lr_max_abs']:.1e}): loss rel max {res['adam_loss_rel_max']:.2e}, params rel max "
        f"{res['adam_param_rel_max']:.2e}")
    if failed:
        log("  OUT OF TOLERANCE: " + ", ".join(f"{k} {res[k]:.3g} > {tol[k]:.1g}" for k in failed))
    res["failed"] = failed
    return res


def check_main(args, check_one=check_one):
    """The check subcommand: 3 + args.steps dequantized MNIST training batches, check_one per dtype."""
    from scratchgen.data import dequantize, load_mnist
    torch.set_num_threads(args.threads)
    u8 = load_mnist("train")[0][:, None]
    rng = np.random.default_rng(args.seed)
    batches = [dequantize(u8[rng.choice(len(u8), args.batch_size, replace=False)], rng)
               for _ in range(3 + args.steps)]
    return run_checks(check_one, batches, args)


# -- training: `scratchgen train realnvp` with torch ------------------------------------------------
def _twin_class():
    from runner import Twin, data, plots

    class RealNVPTwin(Twin):
        """scratchgen.specs.realnvp.RealNVPSpec with torch."""
        name = "realnvp"
        defaults = dict(SPEC_DEFAULTS)
        monitor = ("valid_nll", "min")
        init_keys = ("scales", "channels", "blocks", "couplings")   # what scratchgen's build() reads

        def __init__(self, config, init_state=None):
            super().__init__(config)
            self.init_state = init_state

        def make_model(self, dtype):
            c = self.config
            return TorchRealNVP((1, 28, 28), scales=c["scales"], channels=c["channels"], blocks=c["blocks"],
                                couplings=c["couplings"], dtype=dtype)

        def build(self):
            c = self.config
            # the spec's build(): the training noise has its own stream
            self.noise = np.random.default_rng(int(c["seed"]) + 1)
            model = self.make_model(getattr(torch, c.get("dtype") or "float32"))
            if self.init_state is not None:
                from_scratchgen(model, self.init_state)
            return model

        def _images(self, split):
            return data().load_mnist(split)[0][:, None]   # uint8 (N, 1, 28, 28)

        def train_dataset(self):
            return data().first_rows(self.config.get("limit_train"), self._images("train"))

        def loss(self, model, batch):
            x = torch.from_numpy(data().dequantize(batch[0].numpy(), self.noise))   # fresh noise every batch
            return -model.log_prob(x).mean()

        def evaluate(self, model, split):
            images, = data().first_rows(self.config.get("limit_eval"), self._images(split))
            x = data().dequantize(images, np.random.default_rng(EVAL_NOISE_SEED))   # one fixed draw
            with torch.no_grad():
                ll = sum(float(model.log_prob(torch.from_numpy(x[i:i + EVAL_CHUNK])).sum().item())
                         for i in range(0, len(x), EVAL_CHUNK)) / len(x)
            return {f"{split}_nll": -ll, f"{split}_bits_per_dim": bits_per_dim(ll, dim=x[0].size)}

        def visualize(self, model, out, n=64):
            images = model.sample(n, temperature=self.config["temperature"],
                                  generator=np.random.default_rng(int(self.config["seed"])))
            images = np.clip(images.numpy(), 0, 1)
            plots().image_grid(images.reshape(n, 28, 28), os.path.join(out, "samples.png"), nrow=int(math.sqrt(n)))

    return RealNVPTwin


def train_main(args, log=print, twin_class=_twin_class):
    """The train subcommand for the twin class that `twin_class()` returns: the run's flags and the
    twin's own settings (the keys of its defaults) as its config."""
    cls = twin_class()
    keys = ("epochs", "batch_size", "lr", "seed", "patience", "limit_train", "limit_eval", *cls.defaults, "dtype")
    twin = cls({k: getattr(args, k) for k in dict.fromkeys(keys)})
    return train(twin, args, twin.init_keys, log=log)


CHECK_ARGS = [("--scales", dict(type=int, default=2)), ("--channels", dict(type=int, default=32)),
              ("--blocks", dict(type=int, default=1)), ("--couplings", dict(type=int, default=2))]
TRAIN_ARGS = [("--scales", dict(type=int)), ("--channels", dict(type=int)), ("--blocks", dict(type=int)),
              ("--couplings", dict(type=int)), ("--temperature", dict(type=float))]


def main(argv=None, doc=__doc__, model="realnvp", check_args=CHECK_ARGS, train_args=TRAIN_ARGS, steps=3,
         check_one=check_one, twin_class=_twin_class):
    """The command line of a flow twin (this file's, torch_glow.py's): `check` with the model's
    `check_args` and `steps` Adam steps by default, `train` with its `train_args`."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="scratchgen vs torch: log_prob, gradients, actnorm init, inverse, Adam steps")
    c.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    for flag, kw in check_args:
        c.add_argument(flag, **kw)
    c.add_argument("--batch-size", type=int, default=16)
    c.add_argument("--steps", type=int, default=steps, help="Adam steps compared after the gradients")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--json", default=None, help="write the numbers here")

    t = sub.add_parser("train", help=f"`scratchgen train {model}` with the torch twin")
    add_train_args(t, model_args=train_args)
    args = p.parse_args(argv)
    if args.cmd == "check":
        return check_main(args, check_one)
    train_main(args, log=lambda *a: print(*a, flush=True), twin_class=twin_class)
    return 0


if __name__ == "__main__":
    sys.exit(main())
