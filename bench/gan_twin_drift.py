#!/usr/bin/env python
"""How long do scratchgen's MNIST GAN and its PyTorch twin stay identical? (issue 6 diagnostic)

Both train from the same weights on the same batches with the same noise (bench/torch_gan.py), in
float64 and in float32, with one-sided label smoothing as in the FID comparison of bench/RESULTS.md.
Every --every steps: the largest relative parameter difference between the twins; after every epoch:
both models' validation FID (the same classifier, the same 5,000-sample noise). If the float64 twins
stay equal to rounding over many epochs, the two frameworks compute the same training algorithm, and
a float32 gap in FID is float32 rounding amplified by the GAN's chaotic dynamics, not a different
computation.

    SCRATCHGEN_DATA=../shared/data python bench/gan_twin_drift.py --epochs 5 --out bench/runs/gan_twin_drift
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gan as TG  # noqa: E402  (puts the repo on sys.path)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def run(dtype, epochs, every, label_smoothing, seed, eval_samples, log):
    import scratchgen as sg
    from scratchgen.metrics.classifier import mnist_fid
    from scratchgen.models.gan import AdversarialOptimizer, train_step as sg_train_step
    float64 = dtype == "float64"
    x, _ = TG.mnist("train")
    if float64:
        x = x.astype(np.float64)
    sg.manual_seed(seed)
    sgm, tm = TG.gan_pair("gan")
    if float64:
        sgm, tm = sgm.double(), tm.double()
    sgm.label_smoothing = tm.label_smoothing = label_smoothing
    r = TG.RECIPES["gan"]
    sg_opt = AdversarialOptimizer(*(sg.optim.Adam(m.parameters(), lr=r["lr"], betas=r["betas"])
                                    for m in (sgm.generator, sgm.discriminator)))
    g_opt, d_opt = TG.make_optimizers(tm)
    sg.manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 1)
    t_params = dict(tm.named_parameters())
    rows, step = [], 0
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        t0 = time.time()
        for i in range(0, len(x) - 63, 64):
            xb = x[order[i:i + 64]]
            s = sg_train_step(sgm, sg_opt, sg.tensor(xb))
            t = TG.train_step(tm, g_opt, d_opt, torch.from_numpy(xb), rng)
            step += 1
            if step % every == 0:
                diff = max(TG.rel_diff(p.detach(), t_params[n].detach()) for n, p in sgm.named_parameters())
                rows.append({"dtype": dtype, "step": step, "param_rel_max": diff,
                             "g_loss": [s["g_loss"], t["g_loss"]], "d_loss": [s["d_loss"], t["d_loss"]]})
        # Both generators scored on the same noise (a separate stream, so training is not disturbed).
        z = np.random.default_rng([seed, 99, epoch]).standard_normal((eval_samples, sgm.latent_dim))
        with sg.no_grad():
            fake_sg = sgm.generator(sg.tensor(z.astype(x.dtype))).numpy()
        with torch.no_grad():
            fake_t = tm.generator(torch.from_numpy(z.astype(x.dtype))).numpy()
        fids = [mnist_fid(TG.to_unit(f).astype(np.float32), reference="valid") for f in (fake_sg, fake_t)]
        row = {"dtype": dtype, "epoch": epoch, "step": step, "param_rel_max": rows[-1]["param_rel_max"],
               "valid_fid": fids, "epoch_s": time.time() - t0}
        rows.append(row)
        log(json.dumps(row))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--every", type=int, default=100, help="steps between parameter comparisons")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--eval-samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    rows = []
    for dtype in args.dtypes.split(","):
        rows += run(dtype, args.epochs, args.every, args.label_smoothing, args.seed, args.eval_samples,
                    lambda s: print(s, flush=True))
    if args.out:
        with open(os.path.join(args.out, "drift.json"), "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
