#!/usr/bin/env python
"""PyTorch twin of scratchgen's Glow, for same-budget comparisons of `scratchgen train glow`.

TorchGlow is scratchgen.models.glow.Glow layer for layer, with the same module tree, so its
state_dict keys and shapes are scratchgen's (`from_scratchgen` copies one into the other, buffers
included: actnorm's `initialized`, the 1x1 convolution's fixed permutation `p` and `sign_s`):

    pre-processing   logit_alpha a: RealNVP's y = logit(a + (1 - 2a) x) with its log-det (the
                     default, a = 0.05); None or 0: x - 1/2 (log-det 0, the paper's)
    per level        squeeze, `couplings` steps of flow, then (all levels but the last) factor out
                     the first half of the channels as z_i
    step of flow     actnorm -> invertible 1x1 convolution -> affine coupling
    actnorm          torch_realnvp.py's: (x + bias) * exp(log_scale), data-dependent init on the
                     first training batch; `initialized` is a saved buffer
    1x1 convolution  W = P L (U + diag(sign_s * exp(log_s))), P and sign_s fixed buffers, L unit lower
                     and U strictly upper triangular learned, log-det H W sum log_s; W starts as the
                     LU factors of a random rotation (scratchgen's draw, copied; --torch-init: torch's)
    coupling         torch_realnvp.py's channel-wise coupling (parity 0: the first half conditions the
                     second) with Glow's NN: conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3 (zero
                     init), log s = logsigmoid(raw + 2), t
    split prior      (split_prior, default true) z_i -> (z_i - mean(h_i)) * exp(-log_std(h_i)), from a
                     zero-initialised conv3x3 of the kept half h_i, log-det -sum log_std; false: N(0, I)
    density          every z returned is N(0, I): log_prob(x) in nats per image on [0, 1]^D and
                     bits/dim as torch_realnvp.py's (its Flow base class: log_prob, bits_per_dim, sample)

Squeeze / split, actnorm, the channel-wise coupling, the logit, log_prob, sampling, the check's
comparisons and the train subcommand's data, loss, evaluation and pictures are torch_realnvp.py's,
imported, as scratchgen's Glow and its spec reuse RealNVP's.

Equivalence check: a scratchgen Glow with random weights (the couplings' and split priors' zero-
initialised convolutions drawn small and normal, so no coupling is the identity and no prior is
N(0, I); actnorm initialised on a batch by both models), copied into the twin; log_prob of the same
dequantized MNIST batch, the gradient of the mean NLL w.r.t. every parameter, the actnorm
initialisation, the inverse of the same z and samples from the same generator, and a few Adam steps
with the warm-up: scratchgen's side steps through GlowSpec.training_step itself (its lr ramp), the
twin's through WarmUp, and their learning rates must be equal at every step; float64 and float32
(exit status 1 on a mismatch):

    SCRATCHGEN_DATA=/work/shared/data python bench/torch_glow.py check
    python bench/torch_glow.py check --dtype float64 --levels 2 --couplings 4 --channels 32 --warmup 3

Training run, `scratchgen train glow` with torch (torch_realnvp.py's train, so bench/twins/runner.py's
run: config.json, shuffled batches as scratchgen's DataLoader draws them, validation after each epoch,
the best epoch by valid_nll, metrics.jsonl, best.pt / checkpoint.pt, the test split, samples.png at
`temperature`, curves.png, results.json with test_nll and test_bits_per_dim). The data and the noise
are scratchgen's (its MNIST loader and `dequantize`; fresh training noise from default_rng(seed + 1),
one fixed draw default_rng(12345) for valid and test, evaluated in chunks of 100). The lr warm-up is
the spec's: before each training step, while the step count (from 0) is at most `warmup`, lr * min(1,
(step + 1) / warmup), then lr; the count is saved in the checkpoints' "spec" entry. Initial weights:
scratchgen's, by default (`scratchgen.specs.create("glow", ...).build()` after seed_everything(seed),
in a subprocess), the 1x1 convolutions' rotations included:

    python bench/torch_glow.py train --epochs 1 --limit-train 2000 --limit-eval 500 --threads 1 --out /tmp/tg
    scratchgen train glow --epochs 1 --limit-train 2000 --limit-eval 500 --threads 1 --out /tmp/sg

Model settings are flags here (--levels, --channels, --couplings, --logit-alpha, --split-prior
true|false, --warmup, --temperature) where scratchgen takes --set KEY=VALUE. --torch-init uses
torch's own draw (the same distributions; the rotations from torch.randn) instead; --dtype float64
trains the twin in float64. Known differences in the work done: torch's conv2d, matmul and inverse
kernels and summation orders (float32 rounding), logsigmoid computed by torch rather than as
-softplus(-x); checkpoints are .pt files and have no --resume; samples.png draws its z from
default_rng(seed), not from scratchgen's global generator. A short run amplifies rounding as
torch_realnvp.py's docstring describes (actnorm's first-step gradients are rounding; the warm-up's
small first steps damp that).

torch is a bench-only dependency; scratchgen itself never imports it.
"""
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(BENCH, "twins"), BENCH):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
import torch_realnvp as rn  # noqa: E402
from standalone import from_scratchgen  # noqa: E402
from torch_realnvp import (ActNorm, ChannelCoupling, Flow, FlowSequence, split, squeeze, unsplit,  # noqa: E402
                           unsqueeze, zero_conv)

SPEC_DEFAULTS = dict(epochs=10, batch_size=64, lr=1e-3, levels=2, channels=64, couplings=8, temperature=0.7,
                     logit_alpha=0.05, split_prior=True, warmup=800)   # scratchgen.specs.glow.GlowSpec.defaults


# -- the model --------------------------------------------------------------------------------------
class InvConv1x1(tnn.Module):
    """scratchgen.models.glow.InvConv1x1: the LU-decomposed invertible 1x1 convolution."""

    def __init__(self, channels, dtype=torch.float32):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))   # a random rotation
        p, lower, upper = torch.linalg.lu(q)   # q = p @ lower @ upper, as scipy.linalg.lu
        s = upper.diagonal()
        self.register_buffer("p", p.to(dtype))
        self.register_buffer("sign_s", s.sign().to(dtype))
        self.lower = tnn.Parameter(lower.tril(-1).to(dtype))
        self.upper = tnn.Parameter(upper.triu(1).to(dtype))
        self.log_s = tnn.Parameter(s.abs().log().to(dtype))

    def weight(self):
        eye = torch.eye(self.log_s.shape[0], dtype=self.log_s.dtype, device=self.log_s.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.sign_s * self.log_s.exp())
        return self.p @ lower @ upper

    def forward(self, x):
        n, c, h, w = x.shape
        y = (self.weight() @ x.reshape(n, c, h * w)).reshape(n, c, h, w)
        return y, self.log_s.sum() * (h * w)

    def inverse(self, y):
        n, c, h, w = y.shape
        return (torch.linalg.inv(self.weight()) @ y.reshape(n, c, h * w)).reshape(n, c, h, w)


class GlowNN(tnn.Module):
    """(log s, t) = NN(h_a): conv 3x3, ReLU, conv 1x1, ReLU, zero-initialised conv 3x3;
    log s = logsigmoid(raw + 2)."""

    def __init__(self, in_channels, out_channels, channels, dtype=torch.float32):
        super().__init__()
        self.net = tnn.Sequential(tnn.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype), tnn.ReLU(),
                                  tnn.Conv2d(channels, channels, 1, dtype=dtype), tnn.ReLU())
        self.out = zero_conv(channels, 2 * out_channels, dtype)

    def forward(self, x):
        raw, t = self.out(self.net(x)).chunk(2, dim=1)
        return TF.logsigmoid(raw + 2), t


def glow_coupling(channels, hidden, dtype=torch.float32):
    """scratchgen.models.glow.GlowCoupling: RealNVP's channel-wise coupling (parity 0) with Glow's NN."""
    if channels % 2:
        raise ValueError(f"Glow's coupling needs an even number of channels, got {channels}")
    return ChannelCoupling(channels, hidden, 0, 0, dtype, net=GlowNN(channels // 2, channels // 2, hidden, dtype))


class SplitPrior(tnn.Module):
    """The learned prior of a factored-out half z given the kept half: forward(kept, z) ->
    ((z - mean) / std, -sum log std), inverse(kept, eps) -> z; the identity at the start."""

    def __init__(self, channels, dtype=torch.float32):
        super().__init__()
        self.net = zero_conv(channels, 2 * channels, dtype)

    def forward(self, kept, z):
        mean, log_std = self.net(kept).chunk(2, dim=1)
        return (z - mean) * (-log_std).exp(), -log_std.reshape(z.shape[0], -1).sum(1)

    def inverse(self, kept, eps):
        mean, log_std = self.net(kept).chunk(2, dim=1)
        return eps * log_std.exp() + mean


class FlowStep(tnn.Module):
    """actnorm -> invertible 1x1 conv -> affine coupling."""

    def __init__(self, channels, hidden, dtype=torch.float32):
        super().__init__()
        self.norm = ActNorm(channels, dtype)
        self.conv = InvConv1x1(channels, dtype)
        self.coupling = glow_coupling(channels, hidden, dtype)

    def forward(self, x):   # the three layers in turn, as a FlowSequence (keys norm., conv., coupling.)
        return FlowSequence.forward([self.norm, self.conv, self.coupling], x)

    def inverse(self, y):
        return FlowSequence.inverse([self.norm, self.conv, self.coupling], y)


class TorchGlow(Flow):
    """scratchgen.models.glow.Glow: forward(x) -> ([z_1..z_L], log-det per image), inverse(zs),
    log_prob(x) in nats per image for x in [0, 1]^D, bits_per_dim(x), sample(n, temperature, generator)."""

    def __init__(self, shape=(1, 28, 28), levels=2, steps=8, channels=64, logit_alpha=None, split_prior=True,
                 dtype=torch.float32):
        super().__init__()
        self.alpha = logit_alpha
        c, h, w = shape
        if levels < 1 or steps < 1:
            raise ValueError(f"levels and steps must be >= 1, got {levels}, {steps}")
        if h % 2 ** levels or w % 2 ** levels:
            raise ValueError(f"{levels} levels: {h}x{w} must be divisible by {2 ** levels}")
        self.shape, self.z_shapes, blocks, priors = tuple(shape), [], [], []
        for i in range(levels):
            c, h, w = 4 * c, h // 2, w // 2
            blocks.append(FlowSequence([FlowStep(c, channels, dtype) for _ in range(steps)]))
            if i < levels - 1:
                self.z_shapes.append((c // 2, h, w))
                c //= 2
                if split_prior:
                    priors.append(SplitPrior(c, dtype))
        self.z_shapes.append((c, h, w))
        self.levels = tnn.ModuleList(blocks)
        self.priors = tnn.ModuleList(priors) if split_prior else None

    def forward(self, x):
        x = self._as_input(x)
        x, logdet = (x - 0.5, 0) if self.alpha is None else self.preprocess(x)
        zs = []
        for i, level in enumerate(self.levels):
            x, ld = level(squeeze(x))
            logdet = logdet + ld
            if i < len(self.levels) - 1:
                x, z = split(x)
                if self.priors is not None:
                    z, ld = self.priors[i](x, z)
                    logdet = logdet + ld
                zs.append(z)
        zs.append(x)
        return zs, logdet

    def inverse(self, zs):
        x = zs[-1]
        for i in reversed(range(len(self.levels))):
            if i < len(self.levels) - 1:
                x = unsplit(x, zs[i] if self.priors is None else self.priors[i].inverse(x, zs[i]))
            x = unsqueeze(self.levels[i].inverse(x))
        return x + 0.5 if self.alpha is None else self.postprocess(x)


class WarmUp:
    """scratchgen.specs.glow.GlowSpec.training_step's learning-rate ramp, called before each training
    step: while the step count is at most `warmup`, every group's lr = lr * min(1, (step + 1) / warmup);
    then the count goes up by one (`steps`, saved with the checkpoints)."""

    def __init__(self, lr, warmup, steps=0):
        self.lr, self.warmup, self.steps = float(lr), int(warmup or 0), int(steps)

    def __call__(self, optimizer):
        if self.steps <= self.warmup:
            for group in optimizer.param_groups:
                group["lr"] = self.lr * min(1.0, (self.steps + 1) / max(self.warmup, 1))
        self.steps += 1


# -- equivalence check ------------------------------------------------------------------------------
def _bool(text):
    low = str(text).lower()
    if low not in ("true", "false", "1", "0"):
        raise ValueError(f"expected true or false, got {text!r}")
    return low in ("true", "1")


def _model_kw(config):
    """TorchGlow's / Glow's keywords from the spec settings, as GlowSpec.make_model reads them."""
    return dict(levels=int(config["levels"]), steps=int(config["couplings"]), channels=int(config["channels"]),
                logit_alpha=config.get("logit_alpha") or None, split_prior=bool(config.get("split_prior", True)))


def check_one(dtype_name, batches, args, log=print):
    """One dtype: returns a dict of worst differences, and whether each is within its tolerance."""
    kw = _model_kw(vars(args))

    def models(np_dtype, t_dtype):
        from scratchgen.models.glow import Glow
        from scratchgen.specs import create
        sgm = Glow((1, 28, 28), dtype=np_dtype, **kw)   # the 1x1 convolutions: rotations from seed_everything
        rng = np.random.default_rng(args.seed + 100)
        rn.randomize_(sgm, rng)   # the couplings' output convolutions
        for name, p in sgm.named_parameters():
            if name.startswith("priors."):
                p.data[...] = (0.05 * rng.standard_normal(p.shape)).astype(p.dtype)
        # scratchgen's steps go through the spec's own training_step (its warm-up), the loss the mean NLL
        spec = create("glow", {"lr": 1e-3, "warmup": args.warmup})
        spec.steps = 0
        spec.loss = lambda model, x: -model.log_prob(x).mean()
        step_kw = dict(sg_step=spec.training_step, t_schedule=WarmUp(1e-3, args.warmup))
        return sgm, lambda: from_scratchgen(TorchGlow((1, 28, 28), dtype=t_dtype, **kw), sgm), step_kw

    return rn.check_flow(dtype_name, batches, args, models,
                         f"levels {args.levels}, channels {args.channels}, couplings {args.couplings}, logit_alpha "
                         f"{kw['logit_alpha']}, split_prior {kw['split_prior']}, warmup {args.warmup}", log=log)


# -- training: `scratchgen train glow` with torch ---------------------------------------------------
def _twin_class():
    class GlowTwin(rn._twin_class()):
        """scratchgen.specs.glow.GlowSpec with torch: RealNVP's twin with TorchGlow and the warm-up."""
        name = "glow"
        defaults = dict(SPEC_DEFAULTS)
        init_keys = ("levels", "channels", "couplings", "logit_alpha", "split_prior")   # what build() reads

        def make_model(self, dtype):
            return TorchGlow((1, 28, 28), dtype=dtype, **_model_kw(self.config))

        def make_optimizer(self, model):
            self.optimizer = super().make_optimizer(model)
            self.warm_up = WarmUp(self.config["lr"], self.config.get("warmup"))
            return self.optimizer

        def loss(self, model, batch):
            # runner.run computes the loss once before each optimizer step: the lr of that step, as the
            # spec's training_step sets it before its step
            self.warm_up(self.optimizer)
            return super().loss(model, batch)

        def training_state(self):
            return {"steps": self.warm_up.steps}

    return GlowTwin


CHECK_ARGS = [("--levels", dict(type=int, default=2)), ("--channels", dict(type=int, default=16)),
              ("--couplings", dict(type=int, default=3, help="steps of flow per level")),
              ("--logit-alpha", dict(type=float, default=0.05, dest="logit_alpha", help="0: x - 1/2")),
              ("--split-prior", dict(type=_bool, default=True, dest="split_prior", help="true or false")),
              ("--warmup", dict(type=int, default=3, help="the warm-up's steps in the Adam steps compared"))]
TRAIN_ARGS = [("--levels", dict(type=int)), ("--channels", dict(type=int)),
              ("--couplings", dict(type=int, help="steps of flow per level")),
              ("--logit-alpha", dict(type=float, dest="logit_alpha", help="0: x - 1/2 (the paper's)")),
              ("--split-prior", dict(type=_bool, dest="split_prior", help="true or false")),
              ("--warmup", dict(type=int, help="training steps over which the lr rises to --lr (0: none)")),
              ("--temperature", dict(type=float))]


def main(argv=None):
    return rn.main(argv, doc=__doc__, model="glow", check_args=CHECK_ARGS, train_args=TRAIN_ARGS, steps=5,
                   check_one=check_one, twin_class=_twin_class)


if __name__ == "__main__":
    sys.exit(main())
