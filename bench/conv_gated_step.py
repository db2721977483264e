#!/usr/bin/env python
"""Gated PixelCNN training step (CLI defaults: 32 channels, 8 layers, batch 64) with its fused
gate, shift and one-sided conv padding, against the same model run through the plain composition
those replace (tanh/sigmoid of channel slices, pad-then-slice shifts, a padded copy before each
causal conv). Both in one process, samples interleaved round-robin (bench/common.py:compare), so
machine load hits both alike; default threads.

    python bench/conv_gated_step.py [--repeat 9]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def composed(gp):
    """The replaced versions of the model's helpers, as {name: function} on the gated module."""
    from scratchgen.ops.conv import conv2d
    from scratchgen.ops.shape import pad

    def shift_down(x):
        return pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1, :]

    def shift_right(x):
        return pad(x, ((0, 0), (0, 0), (0, 0), (1, 0)))[:, :, :, :-1]

    def vertical(self, x):
        r = self.k // 2
        return conv2d(pad(x, ((0, 0), (0, 0), (r, 0), (r, r))), self.weight, self.bias)

    def horizontal(self, x):
        return conv2d(pad(x, ((0, 0), (0, 0), (0, 0), (self.k // 2, 0))), self.weight, self.bias)

    return dict(gate=gp._composed_gate, shift_down=shift_down, shift_right=shift_right,
                vertical=vertical, horizontal=horizontal)


def install(gp, fns):
    gp.gate, gp.shift_down, gp.shift_right = fns["gate"], fns["shift_down"], fns["shift_right"]
    gp.VerticalConv.forward, gp.HorizontalConv.forward = fns["vertical"], fns["horizontal"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args(argv)
    import numpy as np
    import scratchgen as sg
    import scratchgen.models.gated_pixelcnn as gp
    from scratchgen.specs import create
    spec = create("gated_pixelcnn", {})
    sg.manual_seed(0)
    model = spec.build()
    opt = spec.make_optimizer(model)
    batch = ((np.random.default_rng(0).random((spec.config["batch_size"], 1, 28, 28)) < 0.3).astype(np.float32),)
    fused = dict(gate=gp.gate, shift_down=gp.shift_down, shift_right=gp.shift_right,
                 vertical=gp.VerticalConv.forward, horizontal=gp.HorizontalConv.forward)
    plain = composed(gp)

    def step(fns):
        install(gp, fns)
        opt.zero_grad()
        loss = spec.loss(model, batch)
        loss.backward()
        opt.step()
        return float(loss.item())

    timings = common.compare({"fused": lambda: step(fused), "composed": lambda: step(plain)},
                             warmup=2, repeat=args.repeat)
    install(gp, fused)
    f, c = (np.median(timings[k].samples) * 1e3 for k in ("fused", "composed"))
    print(f"gated_pixelcnn step, batch {spec.config['batch_size']}: fused {f:.1f} ms, composed {c:.1f} ms, "
          f"ratio {f / c:.2f} (load {common.loadavg()})")


if __name__ == "__main__":
    main()
