#!/usr/bin/env python
"""PyTorch twins of scratchgen's MADE and NICE, for speed comparisons and as a reference run.

Same architecture, parameter names (state_dict keys), float32, loss and optimizer settings as
scratchgen.models.made.MADE and scratchgen.models.nice.NICE, so a scratchgen state_dict loads
straight into the torch model (`from_scratchgen`) and both start from identical weights/masks.

    TorchMADE(784, [500])                        masked MLP, loss = BCE-with-logits summed over
                                                 pixels, mean over the batch; Adam(lr 1e-3)
    TorchNICE(784, 4, 1000, 5)                   4 additive couplings (5x1000 ReLU), logistic
                                                 prior, odd/even split via reshape(N, -1, 2),
                                                 diagonal log-scale; Adam(1e-3, (0.9, 0.99), 1e-4)

Equivalence check (scratchgen vs torch losses and gradients over a few Adam steps from the same
weights, real MNIST batches):

    python bench/torch_models.py check

Reference NICE training run, with the data pipeline of the since-removed examples/nice_mnist.py
that measured the NICE rows of bench/RESULTS.md and the nice_mnist recipe (`scratchgen train nice`,
scratchgen/specs/nice.py, now trains the same model the same way, with its own noise seeds): fresh
dequantization noise per batch for training, one fixed draw for validation and test; validation
picks the best epoch; test log-likelihood in nats and bits/dim; one JSON line per epoch in
DIR/metrics.jsonl:

    SCRATCHGEN_DATA=/work/shared/data python bench/torch_models.py nice --epochs 1000 --out runs/torch_nice
    python bench/torch_models.py nice --epochs 1 --limit-train 2000 --out /tmp/tn     # smoke test

--optimizer rmsprop, --init-range, --scale-init data, --lr-decay/--min-lr, --ema and --max-time mirror that
example's flags of the same names (the same initial weights, S, rate per epoch and momentum switch);
`scratchgen train nice` has two of them as --set scale_init=data and --set ema=DECAY.

The VAE, GAN and WGAN-GP twins are in bench/torch_vae.py and bench/torch_gan.py (their docstrings
say what is mirrored); their subcommands can be run from here as well:

    python bench/torch_models.py check-vae                     # = python bench/torch_vae.py check
    python bench/torch_models.py check-gan                     # = python bench/torch_gan.py check
    python bench/torch_models.py vae --epochs 25 --iwae-k 5000 --out runs/vae_torch_e25
    python bench/torch_models.py gan --epochs 100 --out runs/gan_torch
    python bench/torch_models.py wgan_gp --epochs 100 --out runs/wgan_gp_torch

torch is a bench-only dependency; scratchgen itself never imports it.
"""
import argparse
import contextlib
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

MADE_ADAM = dict(lr=1e-3)
NICE_ADAM = dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-4)


# -- MADE -------------------------------------------------------------------------------------------
class MaskedLinear(tnn.Linear):
    """y = x @ (W * mask).T + b, the mask a (out, in) buffer (as scratchgen.nn.MaskedLinear)."""

    def __init__(self, n_in, n_out, bias=True):
        super().__init__(n_in, n_out, bias=bias)
        self.register_buffer("mask", torch.ones(n_out, n_in))

    def set_mask(self, mask):
        self.mask.copy_(torch.as_tensor(np.asarray(mask, dtype=np.float32)))

    def forward(self, x):
        return TF.linear(x, self.weight * self.mask, self.bias)


class TorchMADE(tnn.Module):
    """One mask set, natural ordering, no direct connection (the MADE-500 benchmark config).
    Masks: copy them from a scratchgen MADE (`from_scratchgen`) or pass `masks` (list of (out, in))."""

    def __init__(self, input_dim=784, hidden_sizes=(500,), masks=None):
        super().__init__()
        sizes = [input_dim] + list(hidden_sizes) + [input_dim]
        self.layers = tnn.ModuleList([MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        if masks is not None:
            for layer, m in zip(self.layers, masks):
                layer.set_mask(m)

    def forward(self, x):
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h)

    def log_prob(self, x):
        return -TF.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(1)

    def loss(self, x):
        return -self.log_prob(x).mean()


# -- NICE -------------------------------------------------------------------------------------------
def mlp(n_in, n_hidden, n_layers, n_out):
    layers, n = [], n_in
    for _ in range(n_layers):
        layers += [tnn.Linear(n, n_hidden), tnn.ReLU()]
        n = n_hidden
    return tnn.Sequential(*layers, tnn.Linear(n, n_out))


class AdditiveCoupling(tnn.Module):
    def __init__(self, dim, hidden, n_layers, parity):
        super().__init__()
        self.parity = parity
        self.m = mlp(dim // 2, hidden, n_layers, dim // 2)

    def split(self, x):
        pairs = x.reshape(x.shape[0], -1, 2)
        return pairs[:, :, self.parity], pairs[:, :, 1 - self.parity]

    def merge(self, y1, y2):
        halves = (y1, y2) if self.parity == 0 else (y2, y1)
        return torch.stack(halves, dim=2).reshape(y1.shape[0], -1)

    def forward(self, x):
        x1, x2 = self.split(x)
        return self.merge(x1, x2 + self.m(x1))

    def inverse(self, y):
        y1, y2 = self.split(y)
        return self.merge(y1, y2 - self.m(y1))


class TorchNICE(tnn.Module):
    def __init__(self, dim=784, num_couplings=4, hidden=1000, hidden_layers=5):
        super().__init__()
        self.dim = dim
        self.couplings = tnn.ModuleList([AdditiveCoupling(dim, hidden, hidden_layers, i % 2)
                                         for i in range(num_couplings)])
        self.log_scale = tnn.Parameter(torch.zeros(dim))

    def forward(self, x):
        for layer in self.couplings:
            x = layer(x)
        return x * self.log_scale.exp(), self.log_scale.sum()

    def log_prob(self, x):
        h, logdet = self(x)
        return -(TF.softplus(h) + TF.softplus(-h)).sum(1) + logdet   # logistic prior

    def loss(self, x):
        return -self.log_prob(x).mean()


# -- weights from scratchgen ------------------------------------------------------------------------
def from_scratchgen(torch_model, sg_model):
    """Copy every parameter and buffer of a scratchgen model into its torch twin (same keys)."""
    sd = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sg_model.state_dict().items()}
    torch_model.load_state_dict(sd, strict=True)
    return torch_model


def made_pair(seed=0, hidden=500):
    """(scratchgen MADE, identical TorchMADE)."""
    from scratchgen.models.made import MADE
    sgm = MADE(784, [hidden], num_masks=1, natural_ordering=True, seed=seed)
    return sgm, from_scratchgen(TorchMADE(784, [hidden]), sgm)


def nice_pair(num_couplings=4, hidden=1000, hidden_layers=5):
    """(scratchgen NICE, identical TorchNICE)."""
    from scratchgen.models.nice import NICE
    sgm = NICE(784, num_couplings, hidden, hidden_layers, prior="logistic", coupling="additive")
    return sgm, from_scratchgen(TorchNICE(784, num_couplings, hidden, hidden_layers), sgm)


# -- equivalence check ------------------------------------------------------------------------------
def rel_diff(a, b):
    """||a - b|| / ||b|| in float64 (a and b: arrays, or scratchgen/torch tensors without grad)."""
    a, b = (np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


_rel = rel_diff


def check_equivalence(which, batches, steps=5, seed=0, log=print):
    """Train the scratchgen model and its torch twin side by side for `steps` Adam steps on the same
    batches; return per-step {loss rel diff, max grad rel diff (per-tensor, relative L2 norm),
    max param rel diff after the step}."""
    import scratchgen as sg
    sg.manual_seed(seed)
    torch.manual_seed(seed)
    if which == "made":
        sgm, tm = made_pair(seed)
        sg_opt, t_opt = sg.optim.Adam(sgm.parameters(), **MADE_ADAM), torch.optim.Adam(tm.parameters(), **MADE_ADAM)
        sg_loss = lambda x: -sgm.log_prob_one_mask(x).mean()  # noqa: E731
    else:
        sgm, tm = nice_pair()
        sg_opt, t_opt = sg.optim.Adam(sgm.parameters(), **NICE_ADAM), torch.optim.Adam(tm.parameters(), **NICE_ADAM)
        sg_loss = lambda x: -sgm.log_prob(x).mean()  # noqa: E731
    t_params = dict(tm.named_parameters())
    rows = []
    for step in range(steps):
        xb = batches[step % len(batches)]
        sg_opt.zero_grad()
        ls = sg_loss(sg.tensor(xb))
        ls.backward()
        t_opt.zero_grad()
        lt = tm.loss(torch.from_numpy(xb))
        lt.backward()
        grad_rel = {n: _rel(p.grad.numpy(), t_params[n].grad.numpy()) for n, p in sgm.named_parameters()}
        sg_opt.step()
        t_opt.step()
        param_rel = {n: _rel(p.detach().numpy(), t_params[n].detach().numpy()) for n, p in sgm.named_parameters()}
        worst = max(grad_rel, key=grad_rel.get)
        row = {"step": step + 1, "loss_sg": float(ls.item()), "loss_torch": float(lt.item()),
               "loss_rel": abs(float(ls.item()) - float(lt.item())) / abs(float(lt.item())),
               "grad_rel_max": grad_rel[worst], "grad_rel_max_param": worst,
               "param_rel_max": max(param_rel.values())}
        rows.append(row)
        if log:
            log(f"{which} step {row['step']}: loss scratchgen {row['loss_sg']:.6f} torch {row['loss_torch']:.6f} "
                f"(rel {row['loss_rel']:.2e}); max grad rel diff {row['grad_rel_max']:.2e} "
                f"({worst}); max param rel diff after step {row['param_rel_max']:.2e}")
    return rows


def _check_main(args):
    from scratchgen.data import dequantize, load_binarized_mnist, load_mnist
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    xb = load_binarized_mnist("train")
    made_batches = [xb[rng.choice(len(xb), 100, replace=False)] for _ in range(args.steps)]
    u8 = load_mnist("train")[0].reshape(-1, 784)
    nice_batches = [dequantize(u8[rng.choice(len(u8), 200, replace=False)], rng) for _ in range(args.steps)]
    out = {"made": check_equivalence("made", made_batches, args.steps),
           "nice": check_equivalence("nice", nice_batches, args.steps)}
    worst = {k: {m: max(r[m] for r in v) for m in ("loss_rel", "grad_rel_max", "param_rel_max")}
             for k, v in out.items()}
    print("worst over steps:", json.dumps(worst))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": out, "worst": worst}, f, indent=1)
    ok = all(w["loss_rel"] < args.tol and w["grad_rel_max"] < args.tol for w in worst.values())
    print("EQUIVALENT" if ok else f"MISMATCH (tolerance {args.tol})")
    return 0 if ok else 1


# -- reference NICE training run --------------------------------------------------------------------
@torch.no_grad()
def log_likelihood(model, x, batch=1000, device="cpu"):
    """Average log-likelihood in nats of float32 array x."""
    return sum(float(model.log_prob(torch.from_numpy(x[i:i + batch]).to(device)).sum())
               for i in range(0, len(x), batch)) / len(x)


def train_torch_nice(epochs, out=None, batch_size=200, lr=1e-3, patience=20, seed=0, num_couplings=4,
                     hidden=1000, hidden_layers=5, limit_train=None, limit_eval=None, threads=None,
                     init_from_scratchgen=True, device="cpu", log=print, optimizer="adam", init_range=None,
                     scale_init="zeros", lr_decay=1.0, min_lr=1e-4, max_time=None, ema=0.0):
    """Train TorchNICE on dequantized MNIST (50k train / 10k valid / 10k test) as the since-removed
    examples/nice_mnist.py did (now `scratchgen train nice`); return the results dict. Writes
    out/metrics.jsonl (one line per epoch) and out/results.json."""
    from scratchgen.data import dequantize, load_mnist
    from scratchgen.models.nice import bits_per_dim
    if threads:
        torch.set_num_threads(int(threads))
    if out:
        os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    train_u8 = flat(load_mnist("train")[0])
    valid = dequantize(flat(load_mnist("valid")[0]), rng)   # one fixed draw (order of examples/nice_mnist.py, removed)
    test = dequantize(flat(load_mnist("test")[0]), rng)
    scale_batch = dequantize(train_u8[:1000], rng) if scale_init == "data" else None
    if limit_train:
        train_u8 = train_u8[:limit_train]
    if limit_eval:
        valid, test = valid[:limit_eval], test[:limit_eval]
    if init_from_scratchgen:   # the same initial weights as scratchgen's NICE under the same seed
        import scratchgen as sg
        from scratchgen.models.nice import NICE
        sg.manual_seed(seed)
        sgm = NICE(784, num_couplings, hidden, hidden_layers, "logistic", "additive")
        if init_range is not None:
            sgm.uniform_init_(init_range)
        if scale_batch is not None:
            sgm.initialize_scale(scale_batch)
        model = from_scratchgen(TorchNICE(784, num_couplings, hidden, hidden_layers), sgm)
    else:
        if init_range is not None or scale_batch is not None:
            raise ValueError("init_range and scale_init='data' need the scratchgen initial weights (drop --torch-init)")
        model = TorchNICE(784, num_couplings, hidden, hidden_layers)
    model.to(device)
    if optimizer == "rmsprop":   # the since-removed examples/nice_mnist.py's make_optimizer, momentum switched on below
        opt = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.95, eps=1e-2, momentum=0.0)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-4)
    n_batches = -(-len(train_u8) // batch_size)
    params = list(model.parameters())
    shadow = [p.detach().clone() for p in params] if ema else None   # scratchgen's optim.EMA, same update

    @contextlib.contextmanager
    def averaged():   # validate, select and test the averages, as fit(ema=...) does
        if shadow is None:
            yield
            return
        live = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, s in zip(params, shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, a in zip(params, live):
                    p.copy_(a)
    noise = np.random.default_rng(seed + 1)
    metrics_path = os.path.join(out, "metrics.jsonl") if out else None
    if metrics_path and os.path.exists(metrics_path):
        os.remove(metrics_path)
    n = len(train_u8)
    best, best_epoch, best_state, bad = -math.inf, None, None, 0
    start = time.time()
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        epoch_lr = lr * max(lr_decay ** -((epoch - 1) * n_batches), min_lr / lr)   # the removed example's LambdaLR
        for group in opt.param_groups:
            group["lr"] = epoch_lr
            if optimizer == "rmsprop" and epoch > 5:   # the authors' momentum: 0 for 5 epochs, then 0.5
                group["momentum"] = 0.5
                for p in group["params"]:   # torch makes this buffer only if momentum > 0 at the first step
                    if p in opt.state and "momentum_buffer" not in opt.state[p]:
                        opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        order = np.random.default_rng([seed, epoch - 1]).permutation(n)   # as scratchgen's DataLoader
        loss_sum = 0.0
        for b in range(0, n, batch_size):
            x = torch.from_numpy(dequantize(train_u8[order[b:b + batch_size]], noise)).to(device)  # fresh noise
            opt.zero_grad()
            loss = model.loss(x)
            loss.backward()
            opt.step()
            if shadow is not None:
                with torch.no_grad():
                    for s, p in zip(shadow, params):
                        s.mul_(ema).add_((1.0 - ema) * p)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at epoch {epoch}, batch {b // batch_size}")
            loss_sum += value * len(x)
        train_time = time.perf_counter() - t0
        model.eval()
        with averaged():
            valid_ll = log_likelihood(model, valid, device=device)
        record = {"epoch": epoch, "train_loss": loss_sum / n, "valid_ll": valid_ll,
                  "valid_bits_per_dim": bits_per_dim(valid_ll), "lr": epoch_lr,
                  "time_s": round(time.perf_counter() - t0, 4), "train_time_s": round(train_time, 4),
                  "examples_per_s": round(n / max(train_time, 1e-9), 1)}
        improved = valid_ll > best
        if improved:
            best, best_epoch, bad = valid_ll, epoch, 0
            with averaged():
                best_state = copy.deepcopy(model.state_dict())
            if out:
                torch.save(best_state, os.path.join(out, "best.pt"))
        else:
            bad += 1
        if metrics_path:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if log:
            log(f"epoch {epoch}/{epochs}  train_loss {record['train_loss']:.4f}  valid_ll {valid_ll:.2f} "
                f"({record['valid_bits_per_dim']:.4f} bpd)  {record['time_s']:.1f}s  "
                f"{record['examples_per_s']:.0f} ex/s{'  *' if improved else ''}")
        if max_time is not None and time.time() - start > max_time:   # as fit(max_time=...)
            if log:
                log(f"time budget of {max_time:.0f} s spent after epoch {epoch}")
            break
        if patience is not None and bad >= patience:
            if log:
                log(f"early stopping: no improvement for {bad} epochs (best {best:.2f} at epoch {best_epoch})")
            break
    train_time = time.time() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    test_ll = log_likelihood(model, test, device=device)
    results = {"framework": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "test_ll_nats": test_ll, "test_bits_per_dim": bits_per_dim(test_ll), "best_valid_ll": best,
               "best_epoch": best_epoch, "epochs_run": epoch, "train_time_s": round(train_time, 1),
               "config": dict(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                              couplings=num_couplings, hidden=hidden, hidden_layers=hidden_layers,
                              limit_train=limit_train, limit_eval=limit_eval,
                              init_from_scratchgen=init_from_scratchgen, optimizer=optimizer,
                              init_range=init_range, scale_init=scale_init, lr_decay=lr_decay, min_lr=min_lr,
                              max_time=max_time, ema=ema)}
    if out:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    if log:
        log(f"test log-likelihood {test_ll:.1f} nats = {bits_per_dim(test_ll):.3f} bits/dim "
            f"(best epoch {best_epoch}, {train_time / 60:.1f} min)")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="scratchgen vs torch losses/gradients from identical weights")
    c.add_argument("--steps", type=int, default=5)
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--json", default=None, help="write the per-step numbers here")
    n = sub.add_parser("nice", help="train the torch NICE on dequantized MNIST")
    n.add_argument("--epochs", type=int, default=20)
    n.add_argument("--batch-size", type=int, default=200)
    n.add_argument("--lr", type=float, default=1e-3)
    n.add_argument("--patience", type=int, default=20, help="epochs without a better valid LL (0: never stop)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--couplings", type=int, default=4)
    n.add_argument("--hidden", type=int, default=1000)
    n.add_argument("--hidden-layers", type=int, default=5)
    n.add_argument("--limit-train", type=int, default=None, help="first N training images only (smoke tests)")
    n.add_argument("--limit-eval", type=int, default=None, help="first N valid/test images only (smoke tests)")
    n.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    n.add_argument("--torch-init", action="store_true", help="torch's own init instead of scratchgen's weights")
    n.add_argument("--device", default="cpu", help="torch device, e.g. cuda (for a twin of nice_mnist.py --device cuda)")
    n.add_argument("--optimizer", choices=["adam", "rmsprop"], default="adam")
    n.add_argument("--init-range", type=float, default=None)
    n.add_argument("--scale-init", choices=["zeros", "data"], default="zeros")
    n.add_argument("--lr-decay", type=float, default=1.0)
    n.add_argument("--min-lr", type=float, default=1e-4)
    n.add_argument("--max-time", type=float, default=None, help="stop after the epoch that ends past this many seconds")
    n.add_argument("--ema", type=float, default=0.0, help="validate and test a moving average of the weights")
    n.add_argument("--flush-denormal", action="store_true",
                   help="torch.set_flush_denormal(True): late in a run most Adam moments are subnormal, which "
                        "slows torch's CPU steps")
    n.add_argument("--out", default="runs/torch_nice")
    # VAE, GAN and WGAN-GP twins live in their own files; their subcommands are reachable from here too.
    import torch_gan
    import torch_vae
    torch_vae.add_parsers(sub, "check-vae", "vae")
    torch_gan.add_parsers(sub, "check-gan", "gan", objective="gan")
    torch_gan.add_parsers(sub, None, "wgan_gp", objective="wgan_gp")
    args = p.parse_args(argv)
    if hasattr(args, "func"):
        return args.func(args) or 0
    if args.cmd == "check":
        return _check_main(args)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    print(json.dumps(train_torch_nice(args.epochs, args.out, args.batch_size, args.lr, args.patience or None,
                                      args.seed, args.couplings, args.hidden, args.hidden_layers,
                                      args.limit_train, args.limit_eval, args.threads,
                                      not args.torch_init, args.device, print, args.optimizer, args.init_range,
                                      args.scale_init, args.lr_decay, args.min_lr, args.max_time, args.ema),
                      indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
