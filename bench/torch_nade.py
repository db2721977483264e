#!/usr/bin/env python
"""PyTorch twin of scratchgen's fixed-order NADE (scratchgen/models/nade.py), written the way a
PyTorch user would: the O(DH) forward as one cumulative sum, autograd for the backward.

    TorchNADE(784, 500)   W (H x D), V (D x H), b (D), c (H), sigmoid hidden units, an ordering
                          (default: natural), scratchgen's initial ranges (W ~ U(+-1/sqrt(D)),
                          V ~ U(+-1/sqrt(H)), b = c = 0); parameter names are scratchgen's, so a
                          scratchgen NADE's state_dict loads straight in.

    a_d = c + sum_{i<d} W[:, o_i] x_{o_i}        all d at once: a cumsum over d of an (N, D, H) tensor
    logit_{o_d} = b_{o_d} + V_{o_d} . sigmoid(a_d),   log p(x) = -sum_d BCE-with-logits

The bias rides along as the first column of the cumsum (with input 1), so the exclusive sum
needs no shifted copy of the (N, D, H) tensor.

    python bench/torch_nade.py check        # scratchgen weights copied in: log p(x) and gradients,
                                            # float32 and float64, natural and a random ordering

torch is a bench-only dependency; scratchgen itself never imports it. Importing this file does
not import scratchgen (only `check` does), so bench/twins/cli.py can use TorchNADE.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as TF


class TorchNADE(tnn.Module):
    def __init__(self, input_dim=784, hidden=500, ordering=None, dtype=torch.float32):
        super().__init__()
        D, H = int(input_dim), int(hidden)
        self.input_dim, self.hidden = D, H
        self.ordering = None if ordering is None else torch.as_tensor(np.asarray(ordering, np.int64))
        self.W = tnn.Parameter(torch.empty(H, D, dtype=dtype).uniform_(-1 / math.sqrt(D), 1 / math.sqrt(D)))
        self.V = tnn.Parameter(torch.empty(D, H, dtype=dtype).uniform_(-1 / math.sqrt(H), 1 / math.sqrt(H)))
        self.b = tnn.Parameter(torch.zeros(D, dtype=dtype))
        self.c = tnn.Parameter(torch.zeros(H, dtype=dtype))

    def forward(self, x):
        """Logits of p(x_i = 1 | the inputs before i), (N, D), in input order."""
        o = self.ordering
        W, V, b = self.W, self.V, self.b
        if o is not None:                       # work in generation order
            x, W, V, b = x[:, o], W[:, o], V[o], b[o]
        ones = x.new_ones(len(x), 1)
        inputs = torch.cat([ones, x[:, :-1]], dim=1)                       # (N, D): 1, x_0 .. x_{D-2}
        columns = torch.cat([self.c[None], W.t()[:-1]], dim=0)             # (D, H): c, W[:, 0] .. W[:, D-2]
        a = torch.cumsum(inputs[:, :, None] * columns, dim=1)             # (N, D, H): a_0 .. a_{D-1}
        logits = (torch.sigmoid(a) * V).sum(-1) + b                        # (N, D)
        if o is not None:
            logits = logits[:, torch.argsort(o)]
        return logits

    def log_prob(self, x):
        return -TF.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n, generator=None):
        """Ancestral sampling, O(nH) per pixel: drawing x_d adds x_d W[:, d] to the running a."""
        D = self.input_dim
        o = range(D) if self.ordering is None else self.ordering.tolist()
        x = self.W.new_zeros(n, D)
        a = self.c.expand(n, -1).clone()
        for d in o:
            p = torch.sigmoid(torch.sigmoid(a) @ self.V[d] + self.b[d])
            x_d = torch.bernoulli(p, generator=generator)
            x[:, d] = x_d
            a += x_d[:, None] * self.W[:, d]
        return x


# -- check against scratchgen ------------------------------------------------------------------------
def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def check(n=100, hidden=500, seed=0, log=print):
    """Copy a scratchgen NADE's weights into TorchNADE; compare log p(x) per example and the
    gradients of the mean NLL (W, V, b, c) on n binarized-MNIST digits (or random bits, without
    the data), float32 and float64, in the natural and a random ordering. Returns the table."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if repo not in sys.path:
        sys.path.insert(0, repo)
    import scratchgen as sg
    from scratchgen.models.nade import NADE
    try:
        x = sg.data.load_binarized("valid", limit=n)
    except Exception as e:  # noqa: BLE001  (no data at all: random bits do for an equivalence check)
        log(f"(no binarized MNIST: {e}; random bits instead)")
        x = (np.random.default_rng(seed).random((n, 784)) < 0.3).astype(np.float32)
    rows = []
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-10)):
        for name, ordering in (("natural", None), ("random", np.random.default_rng(seed).permutation(784))):
            sg.manual_seed(seed)
            m = NADE(784, hidden, ordering=ordering, seed=seed, dtype=dtype)
            tm = TorchNADE(784, hidden, ordering=ordering, dtype=getattr(torch, np.dtype(dtype).name))
            tm.load_state_dict({k: torch.from_numpy(np.array(v.numpy() if hasattr(v, "numpy") else v, dtype))
                                for k, v in m.state_dict().items()}, strict=True)
            xs = sg.Tensor(x.astype(dtype))
            lp = m.log_prob(xs)
            loss = -lp.mean()
            m.zero_grad()
            loss.backward()
            tlp = tm.log_prob(torch.from_numpy(x.astype(dtype)))
            (-tlp.mean()).backward()
            diffs = {"log_p": _rel(tlp.detach().numpy(), lp.detach().numpy())}
            for k in ("W", "V", "b", "c"):
                diffs[f"d{k}"] = _rel(getattr(tm, k).grad.numpy(), getattr(m, k).grad.numpy())
            worst = max(diffs.values())
            ok = worst <= tol
            rows.append({"dtype": np.dtype(dtype).name, "ordering": name, **diffs, "tol": tol, "ok": ok,
                         "mean_log_p": float(lp.detach().numpy().mean())})
            log(f"{np.dtype(dtype).name:8s} {name:8s} mean log p {float(lp.detach().numpy().mean()):10.4f}  "
                + "  ".join(f"{k} {v:.2e}" for k, v in diffs.items()) + f"  (tol {tol:g}) {'ok' if ok else 'FAIL'}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="log p(x) and gradients against scratchgen's NADE, same weights")
    c.add_argument("--n", type=int, default=100, help="examples (default 100)")
    c.add_argument("--hidden", type=int, default=500)
    c.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = check(args.n, args.hidden, args.seed)
    print("relative L2 differences (torch vs scratchgen): " + ("all within tolerance" if all(r["ok"] for r in rows)
                                                             else "SOME OUT OF TOLERANCE"))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
