#!/usr/bin/env python
"""PyTorch twin of scratchgen's DCGAN for MNIST (scratchgen/models/dcgan.py), for step-time
benchmarks (bench/step_time.py, bench/cli_epoch.py) and an equivalence check.

    G  z (100) -> linear (no bias) -> BN1d, ReLU -> 128x7x7 -> tconv 4x4/2 (no bias) -> 64x14x14 -> BN2d,
       ReLU -> tconv 4x4/2 -> 1x28x28 -> tanh                                    (flat (N, 784) out)
    D  1x28x28 -> conv 4x4/2 -> 64x14x14 -> LeakyReLU(0.2) -> conv 4x4/2 (no bias) -> 128x7x7 -> BN2d,
       LeakyReLU(0.2) -> linear -> 1 logit                   (batch_norm=False: the WGAN-GP critic)
    one training iteration (scratchgen.models.gan.train_step, n_critic 1):
       D step  fake = G(z) without grad; L_D = BCE(D(x), 1) + BCE(D(fake), 0); Adam(2e-4, (0.5, 0.999))
       G step  fresh z; L_G = BCE(D(G(z)), 1) (non-saturating), D frozen; Adam(2e-4, (0.5, 0.999))

Parameter and buffer names are scratchgen's (project.0.weight, up.1.running_mean, features.3.weight,
out.bias, ...), so a scratchgen state_dict loads straight in (`from_scratchgen`).

    python bench/torch_dcgan.py check            # D and G losses, gradients, BN running stats, 3 steps
    python bench/torch_dcgan.py check --double   # the same in float64: the differences are float32 rounding

torch is a bench-only dependency; scratchgen itself never imports it.
"""
import argparse
import json
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

ADAM = dict(lr=2e-4, betas=(0.5, 0.999))


class TorchDCGANGenerator(tnn.Module):
    def __init__(self, latent_dim=100, channels=64):
        super().__init__()
        c = self.c = channels
        self.latent_dim = latent_dim
        self.project = tnn.Sequential(tnn.Linear(latent_dim, 2 * c * 7 * 7, bias=False), tnn.BatchNorm1d(2 * c * 7 * 7),
                                      tnn.ReLU())
        self.up = tnn.Sequential(tnn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False), tnn.BatchNorm2d(c),
                                 tnn.ReLU(), tnn.ConvTranspose2d(c, 1, 4, stride=2, padding=1), tnn.Tanh())

    def forward(self, z):
        h = self.project(z).reshape(z.shape[0], 2 * self.c, 7, 7)
        return self.up(h).reshape(z.shape[0], 784)


class TorchDCGANDiscriminator(tnn.Module):
    def __init__(self, channels=64, batch_norm=True):
        super().__init__()
        c = channels
        self.features = tnn.Sequential(
            tnn.Conv2d(1, c, 4, stride=2, padding=1), tnn.LeakyReLU(0.2),
            tnn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=not batch_norm),
            *([tnn.BatchNorm2d(2 * c)] if batch_norm else []),
            tnn.LeakyReLU(0.2))
        self.out = tnn.Linear(2 * c * 7 * 7, 1)

    def forward(self, x):
        h = self.features(x.reshape(x.shape[0], 1, 28, 28))
        return self.out(h.reshape(h.shape[0], -1)).reshape(x.shape[0])


def from_scratchgen(torch_model, sg_model):
    """Copy every parameter and buffer (BN running stats, num_batches_tracked) of a scratchgen
    module into its torch twin (same keys, strict)."""
    own = torch_model.state_dict()
    sd = {}
    for k, v in sg_model.state_dict().items():
        a = np.array(v)
        sd[k] = torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64))
        if k in own and tuple(own[k].shape) != tuple(sd[k].shape):
            raise ValueError(f"{k}: scratchgen shape {tuple(sd[k].shape)} vs torch {tuple(own[k].shape)}")
    torch_model.load_state_dict(sd, strict=True)
    return torch_model


def dcgan_pair(latent_dim=100, channels=64, seed=0):
    """(scratchgen G, D) initialised as the 'dcgan' spec does, and torch twins with the same weights."""
    import scratchgen as sg
    from scratchgen.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
    sg.manual_seed(seed)
    G = dcgan_init_(DCGANGenerator(latent_dim, channels), seed=seed)
    D = dcgan_init_(DCGANDiscriminator(channels, batch_norm=True), seed=seed + 1)
    return (G, D), (from_scratchgen(TorchDCGANGenerator(latent_dim, channels), G),
                    from_scratchgen(TorchDCGANDiscriminator(channels, True), D))


def torch_train_step(G, D, g_opt, d_opt, real, z_d, z_g):
    """One iteration of scratchgen.models.gan.train_step (n_critic 1, non-saturating G loss), with
    the noise given: z_d for the discriminator's fakes, z_g for the generator step."""
    for p in G.parameters():
        p.requires_grad_(False)
    for p in D.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        fake = G(z_d)
    d_opt.zero_grad()
    real_logits, fake_logits = D(real), D(fake)
    d_loss = (TF.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
              + TF.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    d_loss.backward()
    d_opt.step()
    for p in D.parameters():
        p.requires_grad_(False)
    for p in G.parameters():
        p.requires_grad_(True)
    g_opt.zero_grad()
    g_logits = D(G(z_g))
    g_loss = TF.softplus(-g_logits).mean()
    g_loss.backward()
    g_opt.step()
    return {"g_loss": float(g_loss.item()), "d_loss": float(d_loss.item())}


def sg_train_step(G, D, g_opt, d_opt, real, z_d, z_g):
    """The same iteration in scratchgen with explicit noise (the losses and calls of gan.py's
    discriminator_steps / generator_loss / train_step)."""
    import scratchgen as sg
    from scratchgen.models.gan import gan_discriminator_loss, gan_generator_loss
    G.requires_grad_(False)
    D.requires_grad_(True)
    with sg.no_grad():
        fake = G(sg.tensor(z_d))
    d_opt.zero_grad()
    d_loss = gan_discriminator_loss(D(sg.tensor(real)), D(fake))
    d_loss.backward()
    d_opt.step()
    D.requires_grad_(False)
    G.requires_grad_(True)
    g_opt.zero_grad()
    g_loss = gan_generator_loss(D(G(sg.tensor(z_g))))
    g_loss.backward()
    g_opt.step()
    return {"g_loss": float(g_loss.item()), "d_loss": float(d_loss.item())}


def rel_diff(a, b):
    a, b = (np.asarray(v.detach().numpy() if isinstance(v, torch.Tensor) else
                       (v.numpy() if hasattr(v, "numpy") else v), np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def flat_rel(pairs):
    """||a - b|| / ||b|| over all the (a, b) pairs concatenated (one number for a whole model)."""
    num = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)) for a, b in pairs)
    den = sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for _, b in pairs)
    return float(np.sqrt(num / max(den, 1e-300)))


def check(steps=3, batch=64, seed=0, double=False, sync=True, log=print):
    """Same weights, data and noise: per iteration the D and G losses, the D gradients of the D step
    and the G gradients of the G step (per tensor, and over the whole player), and the parameters and
    BN buffers after the step. With `sync` (default) the torch twin is reloaded from scratchgen's
    current weights before every iteration, so every comparison starts from the same weights
    (otherwise float rounding differences compound through Adam's first, sign-like steps)."""
    import scratchgen as sg
    from scratchgen.data import load_mnist
    (G, D), (tG, tD) = dcgan_pair(seed=seed)
    dt = np.float64 if double else np.float32
    if double:
        for m in (G, D, tG, tD):
            m.double()
    sg_g, sg_d = sg.optim.Adam(G.parameters(), **ADAM), sg.optim.Adam(D.parameters(), **ADAM)
    t_g, t_d = torch.optim.Adam(tG.parameters(), **ADAM), torch.optim.Adam(tD.parameters(), **ADAM)
    rng = np.random.default_rng(seed)
    x = load_mnist("train")[0].reshape(-1, 784).astype(dt) / 255.0 * 2 - 1
    rows = []
    for step in range(steps):
        if sync and step:
            with torch.no_grad():
                for sm, tmod in ((G, tG), (D, tD)):
                    tsd = tmod.state_dict()
                    for k, v in sm.state_dict().items():
                        tsd[k].copy_(torch.from_numpy(np.array(v)))
        real = x[rng.choice(len(x), batch, replace=False)]
        z_d, z_g = (rng.standard_normal((batch, 100)).astype(dt) for _ in range(2))
        a = sg_train_step(G, D, sg_g, sg_d, real, z_d, z_g)
        b = torch_train_step(tG, tD, t_g, t_d, torch.from_numpy(real), torch.from_numpy(z_d), torch.from_numpy(z_g))
        grads, grad = {}, {}
        for name, sm, tmod in (("G", G, tG), ("D", D, tD)):   # D's grads: those of the D step
            tp = dict(tmod.named_parameters())
            pairs = [(p.grad.numpy(), tp[n].grad.numpy()) for n, p in sm.named_parameters()]
            grads[name] = flat_rel(pairs)
            grad.update({f"{name}.{n}": rel_diff(*pr) for (n, _), pr in zip(sm.named_parameters(), pairs)})
        state = {}
        for name, (sm, tmod) in {"G": (G, tG), "D": (D, tD)}.items():
            tsd = tmod.state_dict()
            for k, v in sm.state_dict().items():
                if not k.endswith("num_batches_tracked"):
                    state[f"{name}.{k}"] = rel_diff(np.array(v), tsd[k])
        wg, ws = max(grad, key=grad.get), max(state, key=state.get)
        row = {"step": step + 1, "d_loss_sg": a["d_loss"], "d_loss_torch": b["d_loss"],
               "g_loss_sg": a["g_loss"], "g_loss_torch": b["g_loss"],
               "loss_rel": max(abs(a[k] - b[k]) / abs(b[k]) for k in a),
               "grad_rel_G": grads["G"], "grad_rel_D": grads["D"],
               "grad_rel_max_tensor": grad[wg], "grad_rel_max_param": wg,
               "state_rel_max": state[ws], "state_rel_max_key": ws}
        rows.append(row)
        log(f"dcgan step {step + 1}: D loss {a['d_loss']:.6f} / {b['d_loss']:.6f}, G loss {a['g_loss']:.6f} / "
            f"{b['g_loss']:.6f} (rel {row['loss_rel']:.1e}); grads rel G {grads['G']:.1e} D {grads['D']:.1e}, "
            f"worst tensor {grad[wg]:.1e} ({wg}); params+BN buffers after the step rel max {state[ws]:.1e} ({ws})")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--steps", type=int, default=3)
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--double", action="store_true", help="both in float64")
    c.add_argument("--no-sync", action="store_true", help="let the two runs drift apart (no reload per step)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = check(args.steps, args.batch_size, double=args.double, sync=not args.no_sync)
    keys = ("loss_rel", "grad_rel_G", "grad_rel_D", "grad_rel_max_tensor", "state_rel_max")
    worst = {k: max(r[k] for r in rows) for k in keys}
    print("worst over steps:", json.dumps(worst))
    # Losses at every step; gradients at step 1, the only one where G's step also starts from the same D
    # (after it, D's float32 Adam step differs by rounding, amplified where a gradient is near zero).
    ok = worst["loss_rel"] < args.tol and rows[0]["grad_rel_G"] < args.tol and rows[0]["grad_rel_D"] < args.tol
    print("EQUIVALENT" if ok else f"MISMATCH (tolerance {args.tol})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
