#!/usr/bin/env python
"""Training steps and kernels on a GPU: scratchgen (CuPy arrays; CuPy / Numba CUDA kernels) vs the same
programs in PyTorch on CUDA, float32, the same weights and batches (the twins in bench/torch_*.py).

Part 1, one training step (batch to device + zero_grad + forward + backward + Adam step + loss.item()):
  MADE-500 (batch 100), NICE 4 x 5 x 1000 (batch 200), VAE 784-500-500-50 (batch 100), the MLP GAN
  (one D step + one G step, batch 64) and PixelCNN (7x7 'A' + 5 residual blocks, 32 channels, batch 64).
Part 2, kernels: the masked convolution forward + backward at PixelCNN's shapes ('cupy', 'cuda'
  = Numba CUDA, and torch's conv2d(x, w * mask)), and the fused affine coupling forward + backward
  against the same computation from unfused scratchgen ops and from torch ops.

Steps alternate between the frameworks; each is timed with the device synchronised before and
after; medians are reported, ratio = ours / torch.

    SCRATCHGEN_DATA=... python bench/bench_gpu.py --md bench/results_gpu.md
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402,F401  (puts the repository on sys.path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="timed steps per framework and model (default 50)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--models", default="made,nice,vae,gan,pixelcnn")
    p.add_argument("--skip-kernels", action="store_true")
    p.add_argument("--md", default=None, help="write the markdown report here")
    p.add_argument("--json", default=None, help="write the raw results here")
    p.add_argument("--profile", type=int, default=0, help="instead: cProfile this many scratchgen steps per model")
    return p.parse_args(argv)


def synchronize():
    import cupy
    import torch
    cupy.cuda.Device().synchronize()
    torch.cuda.synchronize()


def compare(fns, steps, warmup):
    """Interleaved, synchronised single calls: {name: [seconds]}."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(steps):
        for k, f in fns.items():
            synchronize()
            t0 = time.perf_counter()
            f()
            synchronize()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# -- part 1: training steps ---------------------------------------------------------------------------
def model_steps(which, n_batches=20):
    """{'scratchgen': step, 'torch': step} for one model, both on the GPU, with the same initial weights."""
    import numpy as np
    import torch
    import scratchgen as sg

    sg.manual_seed(0)
    rng = np.random.default_rng(0)
    if which in ("made", "vae"):
        from scratchgen.data import load_binarized_mnist
        data, batch = load_binarized_mnist("train"), 100
    elif which == "pixelcnn":
        from scratchgen.data import load_binarized_mnist
        data, batch = load_binarized_mnist("train").reshape(-1, 1, 28, 28), 64
    else:
        from scratchgen.data import dequantize, load_mnist
        raw = load_mnist("train")[0].reshape(-1, 784)
        data, batch = (dequantize(raw[:4000], rng), 200) if which == "nice" else (raw[:4000] / 127.5 - 1, 64)
    batches = [np.ascontiguousarray(data[i * batch:(i + 1) * batch], dtype=np.float32) for i in range(n_batches)]
    state = {"scratchgen": 0, "torch": 0}

    def next_batch(name):
        state[name] += 1
        return batches[state[name] % n_batches]

    if which == "made":
        import torch_models as tm
        sgm, tmod = tm.made_pair(0)
        sg_loss = lambda x: -sgm.log_prob_one_mask(x).mean()  # noqa: E731
        t_loss, adam = tmod.loss, tm.MADE_ADAM
    elif which == "nice":
        import torch_models as tm
        sgm, tmod = tm.nice_pair()
        sg_loss = lambda x: -sgm.log_prob(x).mean()  # noqa: E731
        t_loss, adam = tmod.loss, tm.NICE_ADAM
    elif which == "vae":
        import torch_vae as tv
        sgm, tmod = tv.vae_pair()
        sg_loss = lambda x: sgm.training_loss(x)["loss"]  # noqa: E731
        t_loss = lambda x: tmod.loss(x, torch.randn(len(x), tmod.latent_dim, device="cuda"))  # noqa: E731
        adam = tv.VAE_ADAM
    elif which == "pixelcnn":
        import torch_pixelcnn as tp
        sgm, tmod = tp.pair("pixelcnn", 32, 5, out_channels=32)
        sg_loss = lambda x: sgm.nll(x).mean()  # noqa: E731
        t_loss, adam = (lambda x: tmod.nll(x).mean()), tp.ADAM
    elif which == "gan":
        return gan_steps(next_batch)
    else:
        raise ValueError(f"unknown model {which!r}")

    sgm.to("cuda").train()
    tmod.cuda().train()
    sg_opt = sg.optim.Adam(sgm.parameters(), **adam)
    t_opt = torch.optim.Adam(tmod.parameters(), **adam)

    def ours():
        sg_opt.zero_grad()
        loss = sg_loss(sg.tensor(next_batch("scratchgen"), device="cuda"))
        loss.backward()
        sg_opt.step()
        return loss.item()

    def theirs():
        t_opt.zero_grad()
        loss = t_loss(torch.from_numpy(next_batch("torch")).cuda())
        loss.backward()
        t_opt.step()
        return loss.item()

    return {"scratchgen": ours, "torch": theirs}


def gan_steps(next_batch):
    import torch
    import torch.nn.functional as TF
    import scratchgen as sg
    from scratchgen.specs.gan import AdversarialOptimizer, train_step
    import torch_gan as tg

    sgm, tmod = tg.gan_pair("gan")
    recipe = tg.RECIPES["gan"]
    sgm.to("cuda")
    tmod.cuda()
    sg_opt = AdversarialOptimizer(*(sg.optim.Adam(m.parameters(), lr=recipe["lr"], betas=recipe["betas"])
                                    for m in (sgm.generator, sgm.discriminator)))
    g_opt, d_opt = tg.make_optimizers(tmod)

    def ours():
        return train_step(sgm, sg_opt, sg.tensor(next_batch("scratchgen"), device="cuda"))["g_loss"]

    def theirs():   # tg.train_step with the noise drawn on the GPU
        real = torch.from_numpy(next_batch("torch")).cuda()
        tmod.generator.requires_grad_(False)
        tmod.discriminator.requires_grad_(True)
        with torch.no_grad():
            fake = tmod.generator(torch.randn(len(real), tmod.latent_dim, device="cuda"))
        d_opt.zero_grad()
        loss, _ = tmod.discriminator_loss(real, fake, None)
        loss.backward()
        d_opt.step()
        tmod.discriminator.requires_grad_(False)
        tmod.generator.requires_grad_(True)
        g_opt.zero_grad()
        a = tmod.discriminator(tmod.generator(torch.randn(len(real), tmod.latent_dim, device="cuda")))
        g_loss = TF.softplus(-a).mean()
        g_loss.backward()
        g_opt.step()
        return g_loss.item()

    return {"scratchgen": ours, "torch": theirs}


# -- part 2: kernels -------------------------------------------------------------------------------------
MASKED_SHAPES = [("A 7x7 1->64", 1, 64, 7, "A"), ("B 3x3 64->64", 64, 64, 3, "B"),
                 ("B 1x1 64->64", 64, 64, 1, "B")]


def masked_conv_rows(steps, warmup, batch=64, size=28):
    import cupy as cp
    import numpy as np
    import torch
    import torch.nn.functional as F
    from scratchgen.kernels import masked_conv as K

    rng = np.random.default_rng(0)
    rows = []
    for label, c_in, c_out, k, mask_type in MASKED_SHAPES:
        x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
        w = (rng.standard_normal((c_out, c_in, k, k)) / np.sqrt(c_in * k * k)).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32)
        g = rng.standard_normal((batch, c_out, size, size)).astype(np.float32)
        mask = K.pixelcnn_mask(c_out, c_in, k, mask_type)
        X, W, B, G = (cp.asarray(a) for a in (x, w, b, g))
        tx, tw, tb = (torch.from_numpy(a).cuda().requires_grad_() for a in (x, w, b))
        tmask, tg = torch.from_numpy(mask).cuda(), torch.from_numpy(g).cuda()

        def ours(impl):
            def f():
                y = K.masked_conv2d_forward(X, W, B, mask_type, impl=impl)
                return (y, K.masked_conv2d_input_grad(G, W, mask_type, impl=impl),
                        K.masked_conv2d_weight_grad(X, G, k, mask_type, impl=impl), G.sum(axis=(0, 2, 3)))
            return f

        def theirs():
            tx.grad = tw.grad = tb.grad = None
            F.conv2d(tx, tw * tmask, tb, padding=k // 2).backward(tg)

        ref = [K.masked_conv2d_forward(x, w, b, mask_type), K.masked_conv2d_input_grad(g, w, mask_type),
               K.masked_conv2d_weight_grad(x, g, k, mask_type)]
        errors = {}
        for impl in ("cupy", "cuda"):
            out = ours(impl)()
            errors[impl] = max(float(np.abs(cp.asnumpy(o) - r).max() / np.abs(r).max()) for o, r in zip(out, ref))
        t = compare({"cupy": ours("cupy"), "cuda": ours("cuda"), "torch": theirs}, steps, warmup)
        rows.append({"shape": label, "ms": {k: v * 1e3 for k, v in t.items()}, "max_rel_err": errors})
    return rows


def coupling_rows(steps, warmup, shapes=((100, 392), (256, 392), (4096, 392))):
    import cupy as cp
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.ops import affine_coupling

    rng = np.random.default_rng(0)
    rows = []
    for n, d in shapes:
        arrays = [rng.standard_normal((n, d)).astype(np.float32) * sc for sc in (1.0, 0.5, 1.0)]
        gy = cp.asarray(rng.standard_normal((n, d)).astype(np.float32))
        gl = cp.asarray(rng.standard_normal(n).astype(np.float32))
        xs = [sg.tensor(a, device="cuda", requires_grad=True) for a in arrays]
        ts = [torch.from_numpy(a).cuda().requires_grad_() for a in arrays]
        tgy, tgl = torch.as_tensor(gy, device="cuda"), torch.as_tensor(gl, device="cuda")
        Gy, Gl = sg.tensor(gy), sg.tensor(gl)

        def fused():
            y, ld = affine_coupling(*xs)
            return sg.grad([y, ld], xs, grad_outputs=[Gy, Gl])

        def unfused():
            x2, s, t = xs
            y, ld = x2 * s.exp() + t, s.sum(axis=1)
            return sg.grad([y, ld], xs, grad_outputs=[Gy, Gl])

        def torch_ops():
            x2, s, t = ts
            for a in ts:
                a.grad = None
            torch.autograd.backward([x2 * s.exp() + t, s.sum(1)], [tgy, tgl])

        t = compare({"fused": fused, "unfused": unfused, "torch": torch_ops}, steps, warmup)
        rows.append({"shape": f"{n} x {d}", "ms": {k: v * 1e3 for k, v in t.items()}})
    return rows


def report(res):
    lines = ["## GPU: scratchgen on CuPy vs PyTorch on CUDA", "",
             f"{res['device']}; CuPy {res['cupy']}, numba-cuda {res['numba_cuda']}, torch {res['torch']}, "
             f"float32. Command: `{res['command']}`", "",
             "### Training steps (ms, median; one step = batch upload + zero_grad + forward + backward + Adam + loss.item())",
             "", "| model | scratchgen | torch | ratio |", "|---|---|---|---|"]
    for m, t in res["models"].items():
        lines.append(f"| {m} | {t['scratchgen']:.2f} | {t['torch']:.2f} | **{t['scratchgen'] / t['torch']:.2f}** |")
    if res.get("masked_conv"):
        lines += ["", "### Masked conv2d forward + input, weight and bias gradients (ms, batch 64, 28x28)", "",
                  "| shape | cupy | cuda (Numba) | torch conv2d(x, w*mask) | cupy / torch | max rel. err cupy / cuda |",
                  "|---|---|---|---|---|---|"]
        for r in res["masked_conv"]:
            t = r["ms"]
            lines.append(f"| {r['shape']} | {t['cupy']:.3f} | {t['cuda']:.3f} | {t['torch']:.3f} | "
                         f"**{t['cupy'] / t['torch']:.2f}** | {r['max_rel_err']['cupy']:.1e} / {r['max_rel_err']['cuda']:.1e} |")
    if res.get("coupling"):
        lines += ["", "### Affine coupling forward + backward (ms)", "",
                  "| N x D | fused (CuPy kernel) | unfused scratchgen ops | torch ops | fused speed-up | fused / torch |",
                  "|---|---|---|---|---|---|"]
        for r in res["coupling"]:
            t = r["ms"]
            lines.append(f"| {r['shape']} | {t['fused']:.3f} | {t['unfused']:.3f} | {t['torch']:.3f} | "
                         f"{t['unfused'] / t['fused']:.2f}x | {t['fused'] / t['torch']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    import importlib.metadata as md
    import cupy
    import torch
    res = {"device": torch.cuda.get_device_name(), "cupy": cupy.__version__, "torch": torch.__version__,
           "numba_cuda": md.version("numba-cuda") if _installed("numba-cuda") else "-",
           "command": "python " + " ".join(sys.argv), "models": {}}
    if args.profile:
        return profile(args)
    for which in args.models.split(","):
        t = compare(model_steps(which), args.steps, args.warmup)
        res["models"][which] = {k: v * 1e3 for k, v in t.items()}
        print(which, res["models"][which], file=sys.stderr, flush=True)
    if not args.skip_kernels:
        res["masked_conv"] = masked_conv_rows(args.steps, args.warmup)
        res["coupling"] = coupling_rows(args.steps, args.warmup)
    text = report(res)
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


def profile(args):
    import cProfile
    import pstats
    for which in args.models.split(","):
        step = model_steps(which)["scratchgen"]
        for _ in range(args.warmup):
            step()
        synchronize()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for _ in range(args.profile):
            step()
        synchronize()
        prof.disable()
        print(f"== {which}: {(time.perf_counter() - t0) / args.profile * 1e3:.2f} ms/step under the profiler")
        pstats.Stats(prof).sort_stats("tottime").print_stats(22)


def _installed(name):
    import importlib.metadata as md
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
