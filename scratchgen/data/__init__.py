"""scratchgen.data: datasets, pixel transforms and mini-batch loading (NumPy only).

    from scratchgen.data import load_mnist, DataLoader
    x, y = load_mnist("train")             # full MNIST under $SCRATCHGEN_DATA, else a bundled subset
    for xb, yb in DataLoader((x, y), batch_size=128, shuffle=True, seed=0): ...

Data root: the `root` argument, else $SCRATCHGEN_DATA, else $XDG_CACHE_HOME/scratchgen (~/.cache/scratchgen).
"""
from .paths import DATA_ENV, data_root
from .mnist import describe_mnist_source, first_rows, load_bundled_mnist, load_mnist, read_idx
from .binarized import (binarize_dynamic, describe_binarized_mnist_source, has_binarized_mnist, load_binarized,
                        load_binarized_mnist, parse_amat)
from .transforms import (dequantize, dynamic_binarize, logit_inverse, logit_transform, random_affine,
                         to_symmetric, to_unit)
from .toy import (TOY_DATASETS, checkerboard, eight_gaussians, mode_centers, swiss_roll,
                  twentyfive_gaussians, two_moons)
from .loader import ArrayDataset, DataLoader, TensorDataset
from .download import download, list_datasets

__all__ = [
    "DATA_ENV", "data_root",
    "load_mnist", "first_rows", "load_bundled_mnist", "describe_mnist_source", "read_idx",
    "load_binarized_mnist", "binarize_dynamic", "parse_amat",
    "to_unit", "to_symmetric", "dequantize", "dynamic_binarize", "logit_transform", "logit_inverse", "random_affine",
    "TOY_DATASETS", "eight_gaussians", "twentyfive_gaussians", "swiss_roll", "two_moons",
    "checkerboard", "mode_centers",
    "ArrayDataset", "DataLoader", "TensorDataset", "load_binarized", "has_binarized_mnist",
    "describe_binarized_mnist_source",
    "download", "list_datasets",
]
