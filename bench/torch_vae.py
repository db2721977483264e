#!/usr/bin/env python
"""PyTorch twin of scratchgen's VAE (scratchgen/models/vae.py), as a check and as a reference run.

    TorchVAE(784, [500, 500], 50)   Gaussian encoder (heads for mu and log sigma^2), ReLU MLPs,
                                    Bernoulli decoder (logits), analytic KL to N(0, I) (SGVB L^B),
                                    loss = -ELBO averaged over the batch; Adam(lr 1e-3), batch 100.

Parameter names (state_dict keys) are scratchgen's, so a scratchgen VAE's weights load straight in
(`from_scratchgen`). The noise eps ~ N(0, I) is an argument, drawn by the caller from a NumPy
generator with the same calls scratchgen makes, so both frameworks can see the same eps.

    python bench/torch_vae.py check --steps 5           # same weights, batches and eps: losses and grads
    SCRATCHGEN_DATA=/work/shared/data python bench/torch_vae.py train --epochs 25 --iwae-k 5000 --out runs/vae_torch_e25
    python bench/torch_vae.py train --epochs 1 --limit-train 2000 --iwae-k 10 --iwae-examples 200 --out /tmp/tv  # smoke

`train` mirrors the since-removed examples/vae_mnist.py that measured the vae_iwae recipe (now
`scratchgen train vae`, scratchgen/specs/vae.py): Larochelle's binarized MNIST via scratchgen.data (or
--binarization dynamic), the same initial weights (a scratchgen VAE built after seeding, copied
over), the same batch order (scratchgen's DataLoader permutation), the same eps stream (scratchgen's
global generator after the model's init, as `VAE.training_loss` draws it), the validation ELBO with
the same fixed noise after each epoch, best epoch by validation ELBO with patience 30, then the test
ELBO and the IWAE bound with the same chunking and noise as `scratchgen.models.vae.evaluate_iwae`
(100 digits per pass, 10,000 decoder rows per chunk, so memory stays bounded for k = 5000).
torch is a bench-only dependency; scratchgen itself never imports it.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import from_scratchgen, rel_diff  # noqa: E402  (puts the repo on sys.path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

VAE_ADAM = dict(lr=1e-3)
LOG_2PI = math.log(2 * math.pi)


def relu_mlp(sizes):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [tnn.Linear(n_in, n_out), tnn.ReLU()]
    return tnn.Sequential(*layers)


class TorchVAE(tnn.Module):
    def __init__(self, input_dim=784, hidden=(500, 500), latent=50):
        super().__init__()
        h = list(hidden)
        self.latent_dim = latent
        self.encoder = relu_mlp([input_dim] + h)
        self.enc_mu = tnn.Linear(h[-1], latent)
        self.enc_logvar = tnn.Linear(h[-1], latent)
        self.decoder = relu_mlp([latent] + h[::-1])
        self.dec_out = tnn.Linear(h[0], input_dim)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))  # scratchgen's warm-up counter

    def encode(self, x):
        """(mu, sigma) of q(z|x)."""
        h = self.encoder(x)
        return self.enc_mu(h), (0.5 * self.enc_logvar(h)).exp()

    def elbo(self, x, eps):
        """Per-example (ELBO, log p(x|z), KL) with z = mu + sigma * eps."""
        mu, sigma = self.encode(x)
        z = mu + sigma * eps
        rec = -TF.binary_cross_entropy_with_logits(self.dec_out(self.decoder(z)), x, reduction="none").sum(-1)
        kl = (0.5 * (sigma * sigma + mu * mu) - 0.5 - sigma.log()).sum(-1)   # KL(N(mu, sigma) || N(0, 1))
        return rec - kl, rec, kl

    def loss(self, x, eps):
        return -self.elbo(x, eps)[0].mean()

    def log_weights(self, x, eps):
        """log p(x|z) + log p(z) - log q(z|x) for eps of shape (k, N, latent): shape (k, N)."""
        mu, sigma = self.encode(x)
        z = mu + sigma * eps
        logits = self.dec_out(self.decoder(z))
        log_px = -TF.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_pz = (-0.5 * z * z - 0.5 * LOG_2PI).sum(-1)
        u = (z - mu) / sigma
        log_qz = (-0.5 * u * u - sigma.log() - 0.5 * LOG_2PI).sum(-1)
        return log_px + log_pz - log_qz


def vae_pair(hidden=(500, 500), latent=50):
    """(scratchgen VAE, identical TorchVAE), the scratchgen one built from the global generator."""
    from scratchgen.models.vae import VAE
    sgm = VAE(784, list(hidden), latent)
    return sgm, from_scratchgen(TorchVAE(784, hidden, latent), sgm)


def normal(rng, shape, dtype=np.float32):
    """eps ~ N(0, I) exactly as scratchgen's VAE draws it (in the model's dtype, from a NumPy Generator)."""
    return torch.from_numpy(rng.standard_normal(shape, dtype=dtype))


@torch.no_grad()
def evaluate_elbo(model, x, batch=1000, seed=0):
    """Mean ELBO with fixed noise, as scratchgen.models.vae.evaluate_elbo (same seed -> same eps)."""
    g = np.random.default_rng(seed)
    total = 0.0
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch])
        total += float(model.elbo(xb, normal(g, (len(xb), model.latent_dim)))[0].sum())
    return total / len(x)


@torch.no_grad()
def evaluate_iwae(model, x, k=5000, batch=None, seed=0, examples_per_pass=None, log=None):
    """Mean IWAE bound L_k in nats, with scratchgen's chunking and noise order (evaluate_iwae)."""
    g = np.random.default_rng(seed)
    per = examples_per_pass or max(1, min(len(x), 100))
    total, t0 = 0.0, time.time()
    for i in range(0, len(x), per):
        xb = torch.from_numpy(x[i:i + per])
        n = len(xb)
        chunk = int(batch or max(1, min(k, 10000 // n)))
        parts = [torch.logsumexp(model.log_weights(xb, normal(g, (min(chunk, k - s), n, model.latent_dim))), 0)
                 for s in range(0, k, chunk)]
        lse = parts[0] if len(parts) == 1 else torch.logsumexp(torch.stack(parts), 0)
        total += float((lse - math.log(k)).sum())
        if log and (i // per) % 10 == 9:
            log(f"IWAE k={k}: {i + n}/{len(x)} digits, {time.time() - t0:.0f}s")
    return total / len(x)


# -- equivalence check ------------------------------------------------------------------------------
def check(batches, seed=0, float64=False, log=print):
    """Train a scratchgen VAE and its torch twin side by side on the same batches with the same eps;
    per step: loss rel diff, worst per-tensor gradient rel diff, worst parameter rel diff after Adam.
    float64: models, data and eps in double precision. Over ~100 steps the float32 losses drift apart
    to ~1e-3 while the float64 ones stay within 1e-15: the drift is rounding, amplified by Adam where
    gradient entries are near zero (collapsed latent units), not a different computation."""
    import scratchgen as sg
    sg.manual_seed(seed)
    sgm, tm = vae_pair()
    dtype = np.float64 if float64 else np.float32
    if float64:
        sgm, tm = sgm.double(), tm.double()
    sg_opt, t_opt = sg.optim.Adam(sgm.parameters(), **VAE_ADAM), torch.optim.Adam(tm.parameters(), **VAE_ADAM)
    sg_noise, t_noise = sg.Generator(seed + 1), np.random.default_rng(seed + 1)   # the same eps stream
    t_params = dict(tm.named_parameters())
    rows = []
    for step, xb in enumerate(batches, 1):
        xb = xb.astype(dtype)
        sg_opt.zero_grad()
        ls = sgm.training_loss(xb, generator=sg_noise)["loss"]
        ls.backward()
        t_opt.zero_grad()
        lt = tm.loss(torch.from_numpy(xb), normal(t_noise, (len(xb), tm.latent_dim), dtype))
        lt.backward()
        grad_rel = {n: rel_diff(p.grad, t_params[n].grad.numpy()) for n, p in sgm.named_parameters()}
        sg_opt.step()
        t_opt.step()
        param_rel = max(rel_diff(p.detach().numpy(), t_params[n].detach().numpy()) for n, p in sgm.named_parameters())
        worst = max(grad_rel, key=grad_rel.get)
        rows.append({"step": step, "loss_sg": ls.item(), "loss_torch": lt.item(),
                     "loss_rel": abs(ls.item() - lt.item()) / abs(lt.item()), "grad_rel_max": grad_rel[worst],
                     "grad_rel_max_param": worst, "param_rel_max": param_rel})
        if log:
            r = rows[-1]
            log(f"vae step {step}: loss scratchgen {r['loss_sg']:.6f} torch {r['loss_torch']:.6f} "
                f"(rel {r['loss_rel']:.2e}); max grad rel diff {r['grad_rel_max']:.2e} ({worst}); "
                f"max param rel diff after step {param_rel:.2e}")
    return rows


def check_main(args):
    from scratchgen.data import load_binarized_mnist
    torch.set_num_threads(args.threads)
    x = load_binarized_mnist("train")
    order = np.random.default_rng([0, 0]).permutation(len(x))   # the first batches of DataLoader(seed=0)
    rows = check([x[order[i * 100:(i + 1) * 100]] for i in range(args.steps)], float64=args.float64,
                 log=print if args.steps <= 20 else None)
    worst = {m: max(r[m] for r in rows) for m in ("loss_rel", "grad_rel_max", "param_rel_max")}
    print("worst over steps:", json.dumps(worst))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "worst": worst}, f, indent=1)
    ok = worst["loss_rel"] < args.tol and worst["grad_rel_max"] < args.tol
    print("EQUIVALENT" if ok else f"MISMATCH (tolerance {args.tol})")
    return 0 if ok else 1


# -- the reference training run ---------------------------------------------------------------------
def train(args, log=print):
    import scratchgen as sg
    from scratchgen.specs.vae import load_split
    from scratchgen.train import seed_everything
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    seed_everything(args.seed)
    torch.manual_seed(args.seed)
    train_x, valid, test = (load_split(s, "bernoulli", args.binarization) for s in ("train", "valid", "test"))
    if args.limit_train:
        train_x = train_x[:args.limit_train]
    log(f"data: {args.binarization} binarized MNIST from {sg.data.data_root()} "
        f"({len(train_x)}/{len(valid)}/{len(test)})")
    _, model = vae_pair(args.hidden, args.latent)      # scratchgen's initial weights under this seed
    eps_rng = sg.random.rng()        # the global stream VAE.training_loss draws from, after the init
    binarize = np.random.default_rng(args.seed + 1)   # dynamic binarization, as examples/vae_mnist.py did
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    metrics_path = os.path.join(args.out, "metrics.jsonl")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    n, bs = len(train_x), args.batch_size
    best, best_epoch, best_state, bad, epoch = -math.inf, None, None, 0, 0
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = np.random.default_rng([args.seed, epoch - 1]).permutation(n)   # as scratchgen's DataLoader
        sums = np.zeros(3)
        for b in range(0, n, bs):
            x = train_x[order[b:b + bs]]
            if args.binarization == "dynamic":
                x = (binarize.random(x.shape) < x).astype(np.float32)
            x = torch.from_numpy(x)
            opt.zero_grad()
            elbo, rec, kl = model.elbo(x, normal(eps_rng, (len(x), model.latent_dim)))
            loss = -elbo.mean()
            rec, kl = rec.detach(), kl.detach()
            loss.backward()
            opt.step()
            model.steps += 1
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at epoch {epoch}, batch {b // bs}")
            sums += np.array([value, kl.mean().item(), rec.mean().item()]) * len(x)
        train_time = time.perf_counter() - t0
        model.eval()
        valid_elbo = evaluate_elbo(model, valid)
        loss, kl, rec = sums / n
        record = {"epoch": epoch, "train_loss": loss, "train_elbo": -loss, "train_kl": kl, "train_rec": rec,
                  "valid_elbo": valid_elbo, "lr": args.lr, "time_s": round(time.perf_counter() - t0, 4),
                  "train_time_s": round(train_time, 4), "examples_per_s": round(n / max(train_time, 1e-9), 1)}
        improved = valid_elbo > best
        if improved:
            best, best_epoch, bad = valid_elbo, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        log(f"epoch {epoch}/{args.epochs}  train_elbo {-loss:.4f}  train_kl {kl:.4f}  valid_elbo {valid_elbo:.4f}  "
            f"{record['time_s']:.1f}s  {record['examples_per_s']:.0f} ex/s{'  *' if improved else ''}")
        if args.patience and bad >= args.patience:
            log(f"early stopping: no improvement for {bad} epochs (best {best:.4f} at epoch {best_epoch})")
            break
    train_time = time.time() - start
    model.load_state_dict(best_state)
    torch.save(best_state, os.path.join(args.out, "best.pt"))
    model.eval()
    results = {"framework": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "test_elbo": evaluate_elbo(model, test), "best_valid_elbo": best, "best_epoch": best_epoch,
               "epochs_run": epoch, "train_time_s": round(train_time, 1)}
    if args.iwae_k > 0:
        scored = test[:args.iwae_examples] if args.iwae_examples else test
        t0 = time.time()
        results["test_nll_iwae"] = -evaluate_iwae(model, scored, k=args.iwae_k, batch=args.iwae_batch, log=log)
        results.update(iwae_k=args.iwae_k, iwae_examples=len(scored), iwae_time_s=round(time.time() - t0, 1))
        if len(scored) < len(test):
            results["test_elbo_same_examples"] = evaluate_elbo(model, scored)
    results["config"] = {k: v for k, v in vars(args).items() if k not in ("func", "cmd")}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    line = f"test ELBO {results['test_elbo']:.2f} nats"
    if "test_nll_iwae" in results:
        line += f", test NLL (IWAE, k={args.iwae_k}) {results['test_nll_iwae']:.2f} nats"
    log(f"{line}; best epoch {best_epoch} of {epoch}, {train_time / 60:.1f} min")
    return results


def add_parsers(sub, check_name="check", train_name="train"):
    """The `check` and `train` subcommands (also reachable through bench/torch_models.py)."""
    c = sub.add_parser(check_name, help="VAE: scratchgen vs torch losses/gradients, same weights, batches, eps")
    c.add_argument("--steps", type=int, default=5)
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--json", default=None, help="write the per-step numbers here")
    c.add_argument("--float64", action="store_true", help="models, data and eps in float64 (see check())")
    c.set_defaults(func=check_main)
    t = sub.add_parser(train_name, help="train the torch VAE as the run behind the vae_iwae recipe")
    t.add_argument("--epochs", type=int, default=25)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    t.add_argument("--latent", type=int, default=50)
    t.add_argument("--binarization", choices=["fixed", "dynamic"], default="fixed")
    t.add_argument("--patience", type=int, default=30, help="epochs without a better valid ELBO (0: never stop)")
    t.add_argument("--limit-train", type=int, default=None)
    t.add_argument("--iwae-k", type=int, default=0, help="importance samples for the test NLL (0: skip)")
    t.add_argument("--iwae-batch", type=int, default=None, help="importance samples per chunk (memory)")
    t.add_argument("--iwae-examples", type=int, default=None, help="score only the first N test digits")
    t.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/vae_torch")
    t.set_defaults(func=lambda a: print(json.dumps({k: v for k, v in train(a).items() if k != "config"}, indent=2)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_parsers(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
