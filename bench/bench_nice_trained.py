"""NICE training-step time on TRAINED weights, scratchgen vs torch (CPU), and torch with flush-to-zero.

Why: in a long twin run (bench/runs/nice_torch_authors) torch's epochs went from ~85 s to ~175 s
after epoch 5 while scratchgen's stayed at ~84 s with equal numbers. The speed table in RESULTS.md
times freshly initialised weights; this times one training step (forward, backward, RMSprop with
momentum) from a trained torch checkpoint, loaded into both frameworks.

    SCRATCHGEN_DATA=../shared/data python bench/bench_nice_trained.py runs/nice_torch_authors/best.pt --threads 1
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import pin_threads, timeit  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a TorchNICE state_dict saved by bench/torch_models.py nice (best.pt)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    pin_threads(args.threads)
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.data import dequantize, load_mnist
    from scratchgen.models.nice import NICE
    from torch_models import TorchNICE
    torch.set_num_threads(args.threads)
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"no checkpoint at {args.checkpoint!r}: run bench/torch_models.py nice --out DIR first")
    state = torch.load(args.checkpoint)
    x = dequantize(load_mnist("train")[0][:200].reshape(200, -1), np.random.default_rng(0))

    def torch_step(model, opt):
        xt = torch.from_numpy(x)
        def step():
            opt.zero_grad()
            model.loss(xt).backward()
            opt.step()
        return step

    def sg_step(model, opt):
        xs = sg.tensor(x)
        def step():
            opt.zero_grad()
            (-model.log_prob(xs).mean()).backward()
            opt.step()
        return step

    rows = {}
    for label, trained in (("initial weights", False), ("trained weights", True)):
        sg.manual_seed(0)
        sgm = NICE(784)
        tm = TorchNICE(784, 4, 1000, 5)
        if trained:
            tm.load_state_dict(state)
            sgm.load_state_dict({k: v.numpy() for k, v in state.items()})
        else:
            tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sgm.state_dict().items()})
        kw = dict(lr=1e-4, alpha=0.95, eps=1e-2, momentum=0.5)
        for name, make in (("scratchgen", lambda: sg_step(sgm, sg.optim.RMSprop(sgm.parameters(), **kw))),
                           ("torch", lambda: torch_step(tm, torch.optim.RMSprop(tm.parameters(), **kw)))):
            rows[(label, name)] = timeit(make(), repeat=args.steps, warmup=2)
        torch.set_flush_denormal(True)
        rows[(label, "torch, flush_denormal")] = timeit(torch_step(tm, torch.optim.RMSprop(tm.parameters(), **kw)),
                                                       repeat=args.steps, warmup=2)
        torch.set_flush_denormal(False)
    for (label, name), t in rows.items():
        print(f"{label:16s} {name:24s} {t.median * 1e3:8.1f} ms/step (iqr {t.iqr * 1e3:.1f})")


if __name__ == "__main__":
    main()
