"""Samples that overflowed in a flow's inverse: counted and reported, never left as blank tiles
under a NumPy RuntimeWarning."""
import os
import sys

import numpy as np


def finite_samples(draw, path, advice="Train longer."):
    """Images from draw() (a flow's inverse, with NumPy's overflow warnings held back). Any image
    with an inf or NaN pixel is reported in one line on stderr, and those pixels become 0.5 (grey)
    in the returned copy, so the grid shows where they are."""
    with np.errstate(over="ignore", invalid="ignore"):
        images = np.asarray(draw())
    bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if bad.any():
        print(f"warning: {int(bad.sum())} of {len(images)} samples are not finite (the flow's inverse "
              f"overflowed); {os.path.basename(path)} draws their inf/NaN pixels grey. {advice}",
              file=sys.stderr, flush=True)
        images = np.where(np.isfinite(images), images, 0.5)
    return images
