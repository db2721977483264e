"""NICE training-step time on TRAINED weights, scratchgen vs torch (CPU), and torch with flush-to-zero.

Why: in a long twin run (bench/runs/nice_torch_authors) torch's epochs went from ~85 s to ~175 s
after epoch 5 while scratchgen's stayed at ~84 s with equal numbers. The speed table in RESULTS.md
times freshly initialised weights; this times one training step (forward, backward, RMSprop with
momentum) from a trained torch checkpoint, loaded into both frameworks.

    SCRATCHGEN_DATA=../shared/data python bench/bench_nice_trained.py runs/nice_torch_authors/best.pt --threads 1

With --optimizer-state (alias --adam-state), it also times steps from a scratchgen
examples/nice_mnist.py checkpoint: its weights AND its optimizer's state (Adam moments or
RMSprop averages and momentum buffers), given to both frameworks. Late in a run most of that
state of dead or near-dead ReLU units' weights lies in float32's subnormal range (tiny or zero
gradients, averages times beta per step), and arithmetic on subnormals is slow in torch unless
flushed to zero:

    SCRATCHGEN_DATA=../shared/data python bench/bench_nice_trained.py --optimizer-state runs/nice_cpu_scaleinit_ema/checkpoint.npz --threads 1
    SCRATCHGEN_DATA=../shared/data python bench/bench_nice_trained.py --optimizer-state runs/nice_cpu_authors/checkpoint.npz --threads 1
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import pin_threads, timeit  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="a TorchNICE state_dict saved by bench/torch_models.py nice (best.pt)")
    p.add_argument("--optimizer-state", "--adam-state", dest="optimizer_state",
                   help="a scratchgen nice_mnist.py checkpoint.npz (Adam or RMSprop): time steps from its weights "
                        "and optimizer state")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    pin_threads(args.threads)
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.data import dequantize, load_mnist
    torch.set_num_threads(args.threads)
    if not args.checkpoint and not args.optimizer_state:
        p.error("give a torch checkpoint (best.pt), --optimizer-state CHECKPOINT.npz, or both")
    for path in (args.checkpoint, args.optimizer_state):
        if path and not os.path.isfile(path):
            raise SystemExit(f"no checkpoint at {path!r}: run bench/torch_models.py nice or examples/nice_mnist.py "
                             f"with --out DIR first")
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
    if args.optimizer_state:
        rows.update(optimizer_state_rows(args.optimizer_state, x, torch_step, sg_step, args.steps))
    if args.checkpoint:
        rows.update(rmsprop_rows(torch.load(args.checkpoint), x, torch_step, sg_step, args.steps))
    for (label, name), t in rows.items():
        print(f"{label:16s} {name:24s} {t.median * 1e3:8.1f} ms/step (iqr {t.iqr * 1e3:.1f})")


def optimizer_state_rows(path, x, torch_step, sg_step, steps):
    """Adam or RMSprop steps from a scratchgen checkpoint's weights and optimizer state, in both frameworks."""
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.models.nice import NICE
    from torch_models import TorchNICE
    ckpt = sg.load(path)
    group = ckpt["optimizer"]["param_groups"]["0"]
    if "betas" in group:
        name, keys = "Adam", ("exp_avg", "exp_avg_sq")
        hyper = dict(lr=float(group["lr"]), betas=tuple(float(b) for b in group["betas"]), eps=float(group["eps"]))
    else:
        name, keys = "RMSprop", ("square_avg", "momentum_buffer")
        hyper = {k: float(group[k]) for k in ("lr", "alpha", "eps", "momentum")}
    states = ckpt["optimizer"]["state"].values()
    tiny = np.finfo(np.float32).tiny
    for key in keys:
        values = np.concatenate([np.ravel(s[key]) for s in states if key in s])
        print(f"{path}: epoch {ckpt['epoch']}, {name} {key}: {np.mean((values != 0) & (np.abs(values) < tiny)):.1%} "
              f"of {values.size:,} subnormal, {np.mean(values == 0):.1%} zero")
    print(f"{name} {hyper}")
    sgm, tm = NICE(784), TorchNICE(784, 4, 1000, 5)
    sgm.load_state_dict(ckpt["model"])
    tm.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in ckpt["model"].items()})

    def sg_opt():
        opt = getattr(sg.optim, name)(sgm.parameters(), **hyper)
        opt.load_state_dict(ckpt["optimizer"])
        return opt

    def torch_opt():
        opt = getattr(torch.optim, name)(tm.parameters(), **hyper)
        by_name = dict(tm.named_parameters())
        for k, (param_name, _) in enumerate(sgm.named_parameters()):
            s = ckpt["optimizer"]["state"][str(k)]
            state = {"step": torch.tensor(float(s["step"]))}
            state.update({key: torch.from_numpy(np.array(s[key], dtype=np.float32)) for key in keys if key in s})
            opt.state[by_name[param_name]] = state
        return opt

    label = f"{name}, epoch {ckpt['epoch']}"
    rows = {(label, "scratchgen"): timeit(sg_step(sgm, sg_opt()), repeat=steps, warmup=2),
            (label, "torch"): timeit(torch_step(tm, torch_opt()), repeat=steps, warmup=2)}
    torch.set_flush_denormal(True)
    rows[(label, "torch, flush_denormal")] = timeit(torch_step(tm, torch_opt()), repeat=steps, warmup=2)
    torch.set_flush_denormal(False)
    return rows


def rmsprop_rows(state, x, torch_step, sg_step, steps):
    """RMSprop-with-momentum steps from fresh optimizer state, at initial and at trained weights."""
    import numpy as np
    import torch
    import scratchgen as sg
    from scratchgen.models.nice import NICE
    from torch_models import TorchNICE
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
            rows[(label, name)] = timeit(make(), repeat=steps, warmup=2)
        torch.set_flush_denormal(True)
        rows[(label, "torch, flush_denormal")] = timeit(torch_step(tm, torch.optim.RMSprop(tm.parameters(), **kw)),
                                                       repeat=steps, warmup=2)
        torch.set_flush_denormal(False)
    return rows


if __name__ == "__main__":
    main()
