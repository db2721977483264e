#!/usr/bin/env python
"""PyTorch twin of scratchgen's MAF (Papamakarios et al. 2017), for same-budget comparisons of
`scratchgen train maf` (the recipe maf_mnist: `--set hidden=[1024]`, test_ll_logit).

TorchMAF is scratchgen.models.maf.MAF layer for layer, with the same module tree, so its
state_dict keys and shapes are scratchgen's (`from_scratchgen` copies one into the other):

    MADE k (k = 0..K-1)   GaussianMADE: D -> hidden... -> (mu, alpha), ReLU, MaskedLinear layers
                          (y = x @ (W * mask).T + b, the mask a saved buffer); input degrees 1..D,
                          reversed (D..1) in every odd MADE; hidden degrees cycling through 1..D-1;
                          hidden masks m_out >= m_in, the two output heads' masks strict (>)
                          u = (x - mu) exp(-alpha), log-det -sum alpha; the inverse one pass per
                          dimension in the ordering, the first layer's pre-activation updated in place
    batch norm            between MADEs (K - 1 of them, `batch_norm=True`):
                          y = (x - m) / sqrt(v + 1e-5) * exp(log_gamma) + beta, log-det
                          sum(log_gamma - log(v + 1e-5) / 2); training: batch mean and *population*
                          variance, running_mean / running_var <- 0.9 * running + 0.1 * batch;
                          eval mode and the inverse: the running statistics
    prior                 N(0, I); log_prob(x) in nats per example, in the space x is given in

Data (the spec's, scratchgen.specs.maf): MNIST's 50,000 training digits (--limit-train: the first
N), pixels dequantized x = (k + u) / 256 and modelled as y = logit(1e-6 + (1 - 2e-6) x). Training
noise: a fresh draw per batch from default_rng(seed + 1); valid / test: one fixed draw
default_rng(12345), log p in chunks of 1000, in eval mode (batch norm on its running statistics):

    {split}_ll_logit       mean log p(y), the paper's Table 2 number (the recipe's metric)
    {split}_ll             mean log p(x) = log p(y) + log|dy/dx| (logit_transform's log-det)
    {split}_bits_per_dim   (-{split}_ll + 784 log 256) / (784 log 2)

Adam(1e-4, weight_decay 1e-6: L2 added to the gradient, as scratchgen's Adam and torch's), batch
100, monitor valid_ll (max), patience 10. `--data two_moons` (any toy set) mirrors the spec's 2-D
mode: {split}_ll of the points as drawn.

Equivalence check: a scratchgen MAF with random weights (batch norm's log_gamma, beta and running
statistics drawn too) copied into the twin, after checking that the twin's own masks are
scratchgen's; on the same logit-space MNIST batches: log_prob and the gradient of the mean NLL
w.r.t. every parameter in eval mode (running statistics; they must not change) and in training
mode (batch statistics; the running statistics after the update), log_prob in eval mode with the
updated statistics, the inverse of the same u, samples from the same generator, the round trip,
and a few steps of the spec's Adam; float64 and float32 (exit status 1 on a mismatch). Tolerances:
1e-10 relative in float64, 1e-4 in float32 (measured: ~1e-13 and ~1e-5 at worst; batch norm's
running statistics after the Adam steps, which see the null directions below: ~5e-5 in float32,
tolerance 3e-4).

Null directions: in training mode a MADE followed by batch norm leaves the loss unchanged (up to
batch norm's eps) when its alpha bias moves (u_i scaled by exp(-c), the log-det's -c undone by
batch norm's +c), and exactly unchanged when the mu bias of the first dimension in the ordering
moves (a constant shift); dimensions whose few hidden units are dead ReLUs come close. There the
gradient is rounding-sized, float32 cannot agree on it, and Adam turns it into a step of about lr
of a sign that rounding picks. So the check compares gradients per layer (weight and bias
together) and per tensor outside those entries, and Adam's parameters per layer outside them,
with the null entries only bounded by Adam's largest steps; the per-tensor numbers are printed.

    SCRATCHGEN_DATA=/work/shared/data python bench/torch_maf.py check
    python bench/torch_maf.py check --dtype float64 --hidden 1024 --blocks 5

Training run, `scratchgen train maf` with torch (bench/twins/runner.py's run: config.json,
shuffled batches as scratchgen's DataLoader draws them, validation after each epoch, the best
epoch by valid_ll, metrics.jsonl, best.pt / checkpoint.pt with the noise generator's state, the
test split, samples.png, curves.png, results.json with test_ll, test_ll_logit and
test_bits_per_dim). Initial weights: scratchgen's, by default (its model built after
seed_everything(seed) by `scratchgen.specs.create("maf", ...).build()`, as cmd_train does, in a
subprocess so that this process never loads scratchgen's engine or thread policy):

  python bench/torch_maf.py train --epochs 1 --hidden 1024 --limit-train 2000 --limit-eval 500 --threads 1 --out /tmp/a
  scratchgen train maf --epochs 1 --set hidden=[1024] --limit-train 2000 --limit-eval 500 --threads 1 --out /tmp/b

Rounding is all that separates the two runs, and the null directions turn it into random +-lr
walks of the alpha biases that batch norm's running statistics follow with momentum 0.1, so the
eval-mode numbers differ more than the training loss: --hidden 1024, 1 epoch of --limit-train 2000
(20 steps), --limit-eval 500, seed 0: train_loss 1788.3906 scratchgen, 1788.3905 twin (float32),
1788.3909 twin (float64); valid_ll 2790.43 / 2791.08 / 2790.87 nats, test_ll_logit -1842.10 /
-1841.44 / -1841.66. Compare single short runs with that in mind.

--torch-init uses torch's own draw (nn.Linear's distributions, as scratchgen's) instead; --dtype
float64 trains the twin in float64, a reference with less rounding. Known differences in the work
done: torch's matmul and reduction orders (float32 rounding); scratchgen's Adam flushes subnormal
moments and parameters to zero, torch's does not; checkpoints are .pt files; samples.png draws its
u from default_rng(seed), not from scratchgen's global generator.

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
import torch.nn.functional as TF  # noqa: E402
from standalone import (add_train_args, from_scratchgen, max_abs, optimizer_steps, rel_diff,  # noqa: E402
                        run_checks, to_numpy, train)

LOG_2PI = math.log(2 * math.pi)
LAMBDA = 1e-6             # scratchgen.specs.maf.LAMBDA: the logit transform's constant for MNIST
EVAL_CHUNK = 1000         # scratchgen.specs.maf.MAFSpec._log_prob's chunk
EVAL_NOISE_SEED = 12345   # the fixed dequantization draw of valid / test
SPEC_DEFAULTS = dict(epochs=20, batch_size=100, lr=1e-4, weight_decay=1e-6, blocks=5, hidden=[512],
                     batch_norm=True, data="mnist", n_train=10000)   # scratchgen.specs.maf.MAFSpec.defaults
SPEC_PATIENCE = 10        # MAFSpec.patience


def bits_per_dim(log_likelihood_nats, dim=784, levels=256):
    """scratchgen.models.nice.bits_per_dim: bpd of the 8-bit data from the density on [0, 1]^dim."""
    return (-log_likelihood_nats + dim * math.log(levels)) / (dim * math.log(2))


# -- MADE's masks -----------------------------------------------------------------------------------
def made_degrees(dim, hidden_sizes, reverse):
    """scratchgen GaussianMADE.degrees: inputs 1..D (D..1 reversed), hidden units cycling 1..D-1."""
    m0 = np.arange(dim, 0, -1) if reverse else np.arange(1, dim + 1)
    return [m0] + [np.arange(n) % max(1, dim - 1) + 1 for n in hidden_sizes]


def degree_mask(m_in, m_out, strict):
    """M[k, j] = m_out[k] > m_in[j] (strict) or >= (hidden layers)."""
    return (m_out[:, None] > m_in[None, :]) if strict else (m_out[:, None] >= m_in[None, :])


class MaskedLinear(tnn.Module):
    """scratchgen.nn.MaskedLinear: y = x @ (W * mask).T + b; nn.Linear's initial draw."""

    def __init__(self, in_features, out_features, mask, dtype=torch.float32):
        super().__init__()
        self.weight = tnn.Parameter(torch.empty(out_features, in_features, dtype=dtype))
        self.bias = tnn.Parameter(torch.empty(out_features, dtype=dtype))
        self.register_buffer("mask", torch.as_tensor(np.asarray(mask), dtype=dtype).clone())
        tnn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
        tnn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return TF.linear(x, self.weight * self.mask, self.bias)


class GaussianMADE(tnn.Module):
    """scratchgen.models.maf.GaussianMADE (no context input, no direct connection)."""

    def __init__(self, dim, hidden_sizes, reverse=False, dtype=torch.float32):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("GaussianMADE needs at least one hidden layer")
        self.dim, self.hidden_sizes, self.reverse = dim, list(hidden_sizes), bool(reverse)
        m = made_degrees(dim, self.hidden_sizes, self.reverse)
        sizes = [dim] + self.hidden_sizes + [dim]
        masks = [degree_mask(m[i], m[i + 1], False) for i in range(len(self.hidden_sizes))]
        masks.append(degree_mask(m[-1], m[0], True))
        self.layers = tnn.ModuleList([MaskedLinear(n_in, n_out, mask, dtype)
                                      for n_in, n_out, mask in zip(sizes[:-1], sizes[1:], masks)])
        self.alpha_out = MaskedLinear(self.hidden_sizes[-1], dim, degree_mask(m[-1], m[0], True), dtype)
        self.ordering = np.argsort(m[0])   # input indices in the order they are generated

    def forward(self, x):
        """(mu, alpha), each (N, D)."""
        h = torch.relu(self.layers[0](x))
        for layer in self.layers[1:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h), self.alpha_out(h)

    def to_noise(self, x):
        mu, alpha = self(x)
        return (x - mu) * (-alpha).exp(), -alpha.sum(1)

    @torch.no_grad()
    def from_noise(self, u):
        """x with to_noise(x) = u, one pass per dimension in the ordering, as scratchgen's: the first
        layer's pre-activation updated in place by x_i (W_1 * M_1)[:, i], only output i evaluated."""
        weights = [layer.weight * layer.mask for layer in self.layers]
        biases = [layer.bias for layer in self.layers]
        w_alpha = self.alpha_out.weight * self.alpha_out.mask
        b_alpha = self.alpha_out.bias
        x = torch.zeros_like(u)
        first = biases[0].expand(len(x), -1).clone()
        for i in self.ordering:
            h = first.clamp_min(0)
            for w, b in zip(weights[1:-1], biases[1:-1]):
                h = (h @ w.T + b).clamp_min(0)
            mu = h @ weights[-1][i] + biases[-1][i]
            alpha = h @ w_alpha[i] + b_alpha[i]
            x[:, i] = u[:, i] * alpha.exp() + mu
            first += x[:, i][:, None] * weights[0][:, i]
        return x


class BatchNormFlow(tnn.Module):
    """scratchgen.models.maf.BatchNormFlow: batch statistics (population variance) in training,
    with the running averages updated; the running statistics in eval mode and in the inverse."""

    def __init__(self, dim, momentum=0.1, eps=1e-5, dtype=torch.float32):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = tnn.Parameter(torch.zeros(dim, dtype=dtype))
        self.beta = tnn.Parameter(torch.zeros(dim, dtype=dtype))
        self.register_buffer("running_mean", torch.zeros(dim, dtype=dtype))
        self.register_buffer("running_var", torch.ones(dim, dtype=dtype))

    def forward(self, x):
        if self.training:
            mean = x.mean(0)
            var = ((x - mean) ** 2).mean(0)
            m = self.momentum
            with torch.no_grad():
                self.running_mean.copy_((1 - m) * self.running_mean + m * mean)
                self.running_var.copy_((1 - m) * self.running_var + m * var)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) / (var + self.eps).sqrt() * self.log_gamma.exp() + self.beta
        return y, (self.log_gamma - 0.5 * (var + self.eps).log()).sum()

    def inverse(self, y):
        return (y - self.beta) * (-self.log_gamma).exp() * (self.running_var + self.eps).sqrt() + self.running_mean


class TorchMAF(tnn.Module):
    """scratchgen.models.maf.MAF: forward(x) -> (u, log-det per example), inverse(u), log_prob(x),
    sample(n, generator)."""

    def __init__(self, dim, num_mades=5, hidden_sizes=(100,), batch_norm=True, dtype=torch.float32):
        super().__init__()
        if dim < 2:
            raise ValueError(f"MAF needs dim >= 2, got {dim}")
        self.dim = dim
        self.mades = tnn.ModuleList([GaussianMADE(dim, list(hidden_sizes), reverse=k % 2 == 1, dtype=dtype)
                                     for k in range(num_mades)])
        self.norms = tnn.ModuleList([BatchNormFlow(dim, dtype=dtype) for _ in range(num_mades - 1)]) \
            if batch_norm else None

    @property
    def dtype(self):
        return self.mades[0].alpha_out.weight.dtype

    @property
    def device(self):
        return self.mades[0].alpha_out.weight.device

    def _tensor(self, x):
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.ascontiguousarray(x))
        return x.to(self.device, self.dtype)

    def forward(self, x):
        x = self._tensor(x)
        logdet = 0
        for k, made in enumerate(self.mades):
            x, ld = made.to_noise(x)
            logdet = logdet + ld
            if self.norms is not None and k < len(self.norms):
                x, ld = self.norms[k](x)
                logdet = logdet + ld
        return x, logdet

    @torch.no_grad()
    def inverse(self, u):
        x = self._tensor(u)
        for k in reversed(range(len(self.mades))):
            if self.norms is not None and k < len(self.norms):
                x = self.norms[k].inverse(x)
            x = self.mades[k].from_noise(x)
        return x

    def log_prob(self, x):
        u, logdet = self(x)
        return -0.5 * (u * u + LOG_2PI).sum(1) + logdet

    @torch.no_grad()
    def sample(self, n, generator=None):
        """n draws x = inverse(u), u ~ N(0, I) drawn as scratchgen's sample draws it: `generator` a
        NumPy Generator, a seed, or a scratchgen Generator (its .rng)."""
        draw = getattr(generator, "rng", generator)
        draw = draw if isinstance(draw, np.random.Generator) else np.random.default_rng(draw)
        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        return self.inverse(torch.from_numpy(draw.standard_normal((n, self.dim)).astype(np_dtype)))


# -- equivalence check ------------------------------------------------------------------------------
def randomize_(sgm, rng, x_calibrate):
    """Batch norm away from the identity: log_gamma U(-0.3, 0.3), beta N(0, 0.3^2); running
    statistics those of a batch (a training-mode pass over x_calibrate with momentum 1), then
    perturbed (mean + 0.1 std N(0, 1), variance * U(0.7, 1.4)), so that eval mode is neither the
    batch statistics nor the initial (0, 1), which an untrained MADE's u overflows in logit space.
    The MADEs keep their default draw, already non-trivial."""
    import scratchgen as sg
    for name, p in sgm.named_parameters():
        if name.endswith("log_gamma"):
            p.data[...] = rng.uniform(-0.3, 0.3, p.shape).astype(p.dtype)
        elif name.endswith(".beta"):
            p.data[...] = (0.3 * rng.standard_normal(p.shape)).astype(p.dtype)
    norms = list(sgm.norms or [])
    if not norms:
        return
    momentum = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum = 1.0
    sgm.train()
    with sg.no_grad():
        sgm.log_prob(sg.tensor(x_calibrate))
    for norm, m in zip(norms, momentum):
        norm.momentum = m
        mean, var = norm.running_mean.data, norm.running_var.data
        mean[...] = (mean + 0.1 * np.sqrt(var) * rng.standard_normal(mean.shape)).astype(mean.dtype)
        var[...] = (var * rng.uniform(0.7, 1.4, var.shape)).astype(var.dtype)


def _buffers(state):
    return {k: np.array(to_numpy(v)) for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def _split_null(name, value, null):
    """(entries outside the null directions, entries in them) of a parameter, flattened, float64."""
    v = np.asarray(to_numpy(value), np.float64).reshape(-1)
    if name not in null:
        return v, v[:0]
    keep = np.ones(v.size, bool)
    keep[null[name]] = False
    return v[keep], v[~keep]


def compare_tensors(t_values, sg_values, null=None):
    """({tensor: rel L2 diff}, {layer: rel L2 diff over its weight and bias}, max |diff| in the null
    directions), the relative differences over the entries outside the null directions."""
    null = null or {}
    per_tensor, sums, inside = {}, {}, 0.0
    for n, b in sg_values.items():
        (a_out, a_in), (b_out, b_in) = _split_null(n, t_values[n], null), _split_null(n, b, null)
        if a_in.size:
            inside = max(inside, float(np.max(np.abs(a_in - b_in))))
        if b_out.size:
            per_tensor[n] = float(np.linalg.norm(a_out - b_out) / max(np.linalg.norm(b_out), 1e-30))
        acc = sums.setdefault(n.rsplit(".", 1)[0], [0.0, 0.0])
        acc[0] += float(np.sum((a_out - b_out) ** 2))
        acc[1] += float(np.sum(b_out ** 2))
    per_layer = {k: math.sqrt(d) / max(math.sqrt(r), 1e-30) for k, (d, r) in sums.items()}
    return per_tensor, per_layer, inside


def _grads(sgm, tm, x_np, np_dtype):
    """(log_prob sg, log_prob torch, loss sg, loss torch, {name: torch grad}, {name: scratchgen grad})
    on x in the current mode."""
    import scratchgen as sg
    lp_sg = sgm.log_prob(sg.tensor(x_np.astype(np_dtype)))
    loss_sg = -lp_sg.mean()
    sgm.zero_grad()
    loss_sg.backward()
    lp_t = tm.log_prob(torch.from_numpy(x_np.astype(np_dtype)))
    loss_t = -lp_t.mean()
    tm.zero_grad()
    loss_t.backward()
    t_params, sg_params = dict(tm.named_parameters()), dict(sgm.named_parameters())
    if set(t_params) != set(sg_params):
        raise KeyError(f"parameter names differ: {sorted(set(t_params) ^ set(sg_params))}")
    return (lp_sg.detach().numpy(), lp_t, float(loss_sg.item()), float(loss_t.item()),
            {n: p.grad for n, p in t_params.items()}, {n: p.grad.numpy() for n, p in sg_params.items()})


def null_directions(sgm):
    """{parameter: index of the entries the training-mode loss does not depend on (up to batch
    norm's eps)}: in a MADE followed by batch norm, u_i = (x_i - mu_i) exp(-alpha_i) and batch
    norm standardises u_i over the batch, so adding c to alpha_i's bias (u_i scaled by exp(-c), its
    log-det -c undone by batch norm's +c) changes nothing but eps's share, and adding c to the mu
    bias of the first dimension in the ordering (mu_i the bias alone: u_i shifted by a constant)
    changes nothing at all. Their gradients are rounding (and eps) sized, so float32 cannot agree
    on them, and Adam turns any gradient into a step of about lr, of the sign that rounding picks."""
    if sgm.norms is None:
        return {}
    out = {}
    for k in range(len(sgm.norms)):
        out[f"mades.{k}.alpha_out.bias"] = slice(None)
        out[f"mades.{k}.layers.{len(sgm.mades[k].layers) - 1}.bias"] = [int(sgm.mades[k].ordering[0])]
    return out


def check_one(dtype_name, batches, args, log=print):
    """One dtype: returns a dict of worst differences, and whether each is within its tolerance."""
    import scratchgen as sg
    from scratchgen.models.maf import MAF
    from scratchgen.train import seed_everything
    np_dtype = np.float64 if dtype_name == "float64" else np.float32
    t_dtype = torch.float64 if dtype_name == "float64" else torch.float32
    seed_everything(args.seed)
    torch.manual_seed(args.seed)
    kw = dict(num_mades=args.blocks, hidden_sizes=args.hidden, batch_norm=not args.no_batch_norm)
    sgm = MAF(784, dtype=np_dtype, **kw)
    randomize_(sgm, np.random.default_rng(args.seed + 100), batches[-1].astype(np_dtype))
    tm = TorchMAF(784, dtype=t_dtype, **kw)
    own_masks = {k: v.clone() for k, v in tm.state_dict().items() if k.endswith(".mask")}
    sd_sg = sgm.state_dict()
    res = {"masks_max_abs": max(max_abs(v, sd_sg[k]) for k, v in own_masks.items())}
    res["orderings_differ"] = float(sum(not np.array_equal(a.ordering, b.ordering)
                                        for a, b in zip(sgm.mades, tm.mades)))
    from_scratchgen(tm, sgm)
    t_params, sg_params = dict(tm.named_parameters()), dict(sgm.named_parameters())
    x0, x1, x2 = batches[:3]

    # 1. eval mode: running statistics, which must stay as they are
    sgm.eval()
    tm.eval()
    before = _buffers(tm.state_dict())
    lp_sg, lp_t, l_sg, l_t, g_t, g_sg = _grads(sgm, tm, x0, np_dtype)
    grad_eval, layer_eval, _ = compare_tensors(g_t, g_sg)
    res["eval_log_prob_rel"] = rel_diff(lp_t, lp_sg)
    res["eval_grad_rel_max"] = max(grad_eval.values())
    res["eval_grad_layer_rel_max"] = max(layer_eval.values())
    res["eval_running_changed"] = max(max(max_abs(v, before[k]) for k, v in _buffers(tm.state_dict()).items()),
                                      max(max_abs(v, before[k]) for k, v in _buffers(sgm.state_dict()).items())) \
        if before else 0.0

    # 2. training mode: batch statistics; log_prob, loss, every gradient, the running statistics after
    sgm.train()
    tm.train()
    lp_sg, lp_t, l_sg, l_t, g_t, g_sg = _grads(sgm, tm, x1, np_dtype)
    null = null_directions(sgm)
    grad, layer, _ = compare_tensors(g_t, g_sg)
    free, _, _ = compare_tensors(g_t, g_sg, null)
    worst, worst_layer, worst_free = (max(d, key=d.get) for d in (grad, layer, free))
    b_t, b_sg = _buffers(tm.state_dict()), _buffers(sgm.state_dict())
    res.update({"log_prob_max_abs_nats": max_abs(lp_t, lp_sg), "log_prob_rel": rel_diff(lp_t, lp_sg),
                "loss_sg": l_sg, "loss_torch": l_t,
                "grad_rel_max": grad[worst], "grad_rel_max_param": worst,
                "grad_layer_rel_max": layer[worst_layer], "grad_layer_rel_max_layer": worst_layer,
                "grad_rel_max_outside_null": free[worst_free], "grad_rel_max_outside_null_param": worst_free,
                "grad_rel_median": float(np.median(list(grad.values()))), "n_params": len(grad),
                "running_stats_rel": max((rel_diff(b_t[k], b_sg[k]) for k in b_t), default=0.0),
                "running_stats_moved": max((max_abs(b_t[k], before[k]) for k in b_t), default=0.0)})

    # 3. eval mode on the updated running statistics
    sgm.eval()
    tm.eval()
    with sg.no_grad():
        lp2_sg = sgm.log_prob(sg.tensor(x2.astype(np_dtype))).numpy()
    with torch.no_grad():
        lp2_t = tm.log_prob(torch.from_numpy(x2.astype(np_dtype)))
    res["eval_updated_log_prob_rel"] = rel_diff(lp2_t, lp2_sg)

    # 4. inverse of the same u (eval mode), samples from the same generator, the round trip
    n_inv = args.inverse_n
    u = np.random.default_rng(args.seed + 7).standard_normal((n_inv, 784)).astype(np_dtype)
    with sg.no_grad():
        u_sg = sgm(sg.tensor(x2[:n_inv].astype(np_dtype)))[0].numpy()
        x_inv_sg = sgm.inverse(u).numpy()
        samples_sg = sgm.sample(n_inv, generator=sg.random.Generator(args.seed + 9)).numpy()
    with torch.no_grad():
        x_inv_t = tm.inverse(torch.from_numpy(u))
        samples_t = tm.sample(n_inv, generator=np.random.default_rng(args.seed + 9))
        x_round = tm.inverse(tm(torch.from_numpy(x2[:n_inv].astype(np_dtype)))[0])
        x_round_sg_u = tm.inverse(torch.from_numpy(u_sg))
    res.update({"inverse_rel": rel_diff(x_inv_t, x_inv_sg), "samples_rel": rel_diff(samples_t, samples_sg),
                "round_trip_rel": rel_diff(x_round, x2[:n_inv]),
                "inverse_of_sg_u_rel": rel_diff(x_round_sg_u, x2[:n_inv]),
                "inverse_finite": float(np.isfinite(to_numpy(x_inv_t)).all() and np.isfinite(x_inv_sg).all())})

    # 5. a few steps of the spec's Adam (lr 1e-4, L2 1e-6) side by side, training mode
    sgm.train()
    tm.train()
    sg_opt = sg.optim.Adam(sgm.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    t_opt = torch.optim.Adam(tm.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    step_loss, step_param, step_layer, step_null = [], [], [], []
    for loss_rel in optimizer_steps(sg, sgm, tm, sg_opt, t_opt, batches[3:3 + args.steps], np_dtype):
        step_loss.append(loss_rel)
        per_tensor, per_layer, inside = compare_tensors(t_params, {n: p.detach().numpy() for n, p in sg_params.items()},
                                                        null)
        step_param.append(max(per_tensor.values()))
        step_layer.append(max(per_layer.values()))
        step_null.append(inside)
    res["adam_loss_rel_max"] = max(step_loss) if step_loss else 0.0
    res["adam_param_rel_max"] = max(step_param) if step_param else 0.0
    res["adam_param_layer_rel_max"] = max(step_layer) if step_layer else 0.0
    # the null directions: at most Adam's largest steps apart, about lr per step each way
    res["adam_null_max_abs_in_lr"] = max(step_null) / args.lr if step_null else 0.0
    b_t, b_sg = _buffers(tm.state_dict()), _buffers(sgm.state_dict())
    res["adam_running_stats_rel"] = max((rel_diff(b_t[k], b_sg[k]) for k in b_t), default=0.0)

    f64 = dtype_name == "float64"
    tol = {"masks_max_abs": 0.0, "orderings_differ": 0.0, "inverse_finite": None,
           "eval_log_prob_rel": 1e-10 if f64 else 1e-4, "eval_grad_rel_max": 1e-10 if f64 else 1e-4,
           "eval_running_changed": 0.0,
           "log_prob_rel": 1e-10 if f64 else 1e-4, "grad_layer_rel_max": 1e-10 if f64 else 1e-4,
           "grad_rel_max_outside_null": 1e-10 if f64 else 1e-4,
           "running_stats_rel": 1e-10 if f64 else 1e-4, "eval_updated_log_prob_rel": 1e-10 if f64 else 1e-4,
           "inverse_rel": 1e-10 if f64 else 1e-4, "samples_rel": 1e-10 if f64 else 1e-4,
           "round_trip_rel": 1e-10 if f64 else 1e-4, "inverse_of_sg_u_rel": 1e-10 if f64 else 1e-4,
           "adam_loss_rel_max": 1e-10 if f64 else 1e-4, "adam_param_layer_rel_max": 1e-10 if f64 else 1e-4,
           "adam_null_max_abs_in_lr": 2.0 * args.steps * 1.01,
           # batch norm's statistics see the null directions' steps (u_i scaled by exp(-c))
           "adam_running_stats_rel": 1e-9 if f64 else 3e-4}
    failed = sorted(k for k, t in tol.items() if not (res[k] == 1.0 if t is None else res[k] <= t))
    if not args.no_batch_norm:   # the check must have exercised the running statistics
        if not res["running_stats_moved"] > 0:
            failed.append("running_stats_moved")
    log(f"{dtype_name}: MAF({args.blocks}) hidden {args.hidden}, batch norm {not args.no_batch_norm}, "
        f"batch {len(x1)}; {res['n_params']} parameter tensors; the twin's own masks vs scratchgen's: max |diff| "
        f"{res['masks_max_abs']:.0f}, orderings differing {res['orderings_differ']:.0f}")
    log(f"  eval mode (running statistics): log_prob rel {res['eval_log_prob_rel']:.2e}, gradients max rel "
        f"{res['eval_grad_rel_max']:.2e} (per layer {res['eval_grad_layer_rel_max']:.2e}), running statistics "
        f"changed by {res['eval_running_changed']:.1e}")
    log(f"  training mode: log_prob max |diff| {res['log_prob_max_abs_nats']:.2e} nats (rel L2 "
        f"{res['log_prob_rel']:.2e}); mean NLL scratchgen {res['loss_sg']:.6f} torch {res['loss_torch']:.6f}")
    log(f"  gradients of the mean NLL: max rel L2 diff per layer {res['grad_layer_rel_max']:.2e} ({worst_layer}); "
        f"per tensor {res['grad_rel_max']:.2e} ({worst}), median {res['grad_rel_median']:.2e}, outside the null "
        f"directions {res['grad_rel_max_outside_null']:.2e} ({worst_free})")
    log(f"  running statistics after the training-mode update: rel {res['running_stats_rel']:.2e}")
    log(f"  eval mode, updated statistics: log_prob rel {res['eval_updated_log_prob_rel']:.2e}")
    log(f"  inverse of the same u: rel {res['inverse_rel']:.2e}; samples (same generator) rel "
        f"{res['samples_rel']:.2e}; round trip torch inverse(torch forward(x)) rel {res['round_trip_rel']:.2e}, "
        f"torch inverse(scratchgen forward(x)) rel {res['inverse_of_sg_u_rel']:.2e}")
    log(f"  {len(step_loss)} Adam steps (lr {args.lr}, weight decay {args.weight_decay}): loss rel max "
        f"{res['adam_loss_rel_max']:.2e}, params rel max per layer {res['adam_param_layer_rel_max']:.2e}, per tensor "
        f"{res['adam_param_rel_max']:.2e} (the null directions: "
        f"max |diff| {res['adam_null_max_abs_in_lr']:.2f} lr), running statistics rel "
        f"{res['adam_running_stats_rel']:.2e}")
    if failed:
        log("  OUT OF TOLERANCE: " + ", ".join(f"{k} {res.get(k, 0):.3g} (tolerance {tol.get(k)})" for k in failed))
    res["failed"] = failed
    return res


def check_main(args):
    from scratchgen.data import dequantize, load_mnist, logit_transform
    torch.set_num_threads(args.threads)
    pixels = load_mnist("train")[0].reshape(-1, 784)
    rng = np.random.default_rng(args.seed)
    batches = [logit_transform(dequantize(pixels[rng.choice(len(pixels), args.batch_size, replace=False)], rng),
                               LAMBDA)[0] for _ in range(4 + args.steps)]
    return run_checks(check_one, batches, args)


# -- training: `scratchgen train maf` with torch ----------------------------------------------------
def _twin_class():
    from runner import Twin, data, plots

    class MAFTwin(Twin):
        """scratchgen.specs.maf.MAFSpec with torch."""
        name = "maf"
        defaults = dict(SPEC_DEFAULTS)
        monitor = ("valid_ll", "max")
        patience = SPEC_PATIENCE
        init_keys = ("blocks", "hidden", "batch_norm", "data")   # what scratchgen's build() reads

        def __init__(self, config, init_state=None):
            super().__init__(config)
            self.init_state = init_state

        @property
        def toy(self):
            name = self.config["data"]
            if name != "mnist" and name not in data().TOY_DATASETS:
                raise ValueError(f"data must be 'mnist' or one of {sorted(data().TOY_DATASETS)}, got {name!r}")
            return name != "mnist"

        def describe_data(self):
            if self.toy:
                return f"2-D toy set {self.config['data']} ({self.config['n_train']} training points)"
            return data().describe_mnist_source() + " (dequantized, logit space, lambda = 1e-6)"

        @property
        def np_dtype(self):
            return np.float64 if self.config.get("dtype") == "float64" else np.float32

        def build(self):
            c = self.config
            self.noise = np.random.default_rng(int(c["seed"]) + 1)   # the spec's training noise stream
            model = TorchMAF(2 if self.toy else 784, int(c["blocks"]), list(c["hidden"]),
                             batch_norm=bool(c["batch_norm"]),
                             dtype=getattr(torch, c.get("dtype") or "float32"))
            if self.init_state is not None:
                from_scratchgen(model, self.init_state)
            return model

        def make_optimizer(self, model):   # ModelSpec.make_optimizer: Adam, L2 when weight_decay is set
            kwargs = {"lr": self.config["lr"]}
            if self.config.get("weight_decay"):
                kwargs["weight_decay"] = self.config["weight_decay"]
            return torch.optim.Adam(model.parameters(), **kwargs)

        def training_state(self):
            return {"noise": self.noise.bit_generator.state}

        def _toy(self, split, n):
            offset = {"train": 0, "valid": 1, "test": 2}[split]
            return data().TOY_DATASETS[self.config["data"]](n, seed=int(self.config["seed"]) * 3 + offset + 1000)[0]

        def _images(self, split):
            images = data().load_mnist(split)[0]
            return images.reshape(len(images), -1)

        def train_dataset(self):
            if self.toy:
                points = self._toy("train", int(self.config["n_train"]))
                return data().first_rows(self.config.get("limit_train"), points)
            return data().first_rows(self.config.get("limit_train"), self._images("train"))

        def _logit(self, pixels, rng):
            return data().logit_transform(data().dequantize(pixels, rng), LAMBDA)

        def loss(self, model, batch):
            x = batch[0].numpy()
            if not self.toy:   # fresh dequantization noise every batch
                x = self._logit(x, self.noise)[0]
            return -model.log_prob(torch.from_numpy(np.ascontiguousarray(x, dtype=self.np_dtype))).mean()

        def _log_prob(self, model, x):
            x = np.ascontiguousarray(x, dtype=self.np_dtype)
            with torch.no_grad():
                return np.concatenate([model.log_prob(torch.from_numpy(x[i:i + EVAL_CHUNK])).numpy().astype(np.float64)
                                       for i in range(0, len(x), EVAL_CHUNK)])

        def evaluate(self, model, split):
            limit = self.config.get("limit_eval")
            if self.toy:
                x = self._toy(split, limit or 5000)
                return {f"{split}_ll": float(self._log_prob(model, x).mean())}
            pixels, = data().first_rows(limit, self._images(split))
            y, logdet = self._logit(pixels, np.random.default_rng(EVAL_NOISE_SEED))   # one fixed dequantization
            ll_logit = self._log_prob(model, y)
            ll = float((ll_logit + logdet).mean())
            return {f"{split}_ll": ll, f"{split}_ll_logit": float(ll_logit.mean()),
                    f"{split}_bits_per_dim": bits_per_dim(ll)}

        def visualize(self, model, out, n=64):
            path = os.path.join(out, "samples.png")
            generator = np.random.default_rng(int(self.config["seed"]))
            if self.toy:
                points = model.sample(max(n, 1000), generator=generator).numpy()
                return plots().scatter_2d(points, path=path, title=f"MAF samples ({self.config['data']})")
            images = np.clip(data().logit_inverse(model.sample(n, generator=generator).numpy(), LAMBDA), 0, 1)
            return plots().image_grid(images.reshape(n, 28, 28), path, nrow=int(math.sqrt(n)))

    return MAFTwin


def train_main(args, log=print):
    config = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "seed", "patience",
                                             "limit_train", "limit_eval", "blocks", "hidden", "batch_norm",
                                             "data", "n_train", "dtype")}
    twin = _twin_class()(config)
    return train(twin, args, twin.init_keys, log=log)


def _bool(s):
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="scratchgen vs torch: log_prob, gradients, batch norm, inverse, Adam steps")
    c.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    c.add_argument("--blocks", type=int, default=5)
    c.add_argument("--hidden", type=int, nargs="+", default=[256])
    c.add_argument("--no-batch-norm", action="store_true")
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--inverse-n", type=int, default=4, help="examples inverted and sampled (784 passes per MADE)")
    c.add_argument("--steps", type=int, default=3, help="Adam steps compared after the gradients")
    c.add_argument("--lr", type=float, default=SPEC_DEFAULTS["lr"])
    c.add_argument("--weight-decay", type=float, default=SPEC_DEFAULTS["weight_decay"])
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--json", default=None, help="write the numbers here")

    t = sub.add_parser("train", help="`scratchgen train maf` with the torch twin")
    add_train_args(t, optimizer_args=[("--weight-decay", dict(type=float, dest="weight_decay"))], model_args=[
        ("--blocks", dict(type=int)),
        ("--hidden", dict(type=int, nargs="+", help="hidden layer sizes of each MADE (the spec's hidden=[...])")),
        ("--batch-norm", dict(type=_bool, dest="batch_norm", help="true / false (default true)")),
        ("--data", dict(help="mnist (default) or a 2-D toy set (the spec's data=...)")),
        ("--n-train", dict(type=int, dest="n_train", help="training points of a toy set"))])
    args = p.parse_args(argv)
    if args.cmd == "check":
        return check_main(args)
    train_main(args, log=lambda *a: print(*a, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
