"""Evaluation metrics for generative models (NumPy in, NumPy or floats out).

    toy sets     mode_coverage, toy_mode_coverage        modes covered, fraction of high-quality samples
    likelihood   parzen_window, parzen_log_likelihood    Gaussian Parzen-window estimate (Goodfellow et al. 2014)
    memorization nearest_neighbours, nearest_neighbour_grid   samples next to their closest training images
    sample scores inception_score, frechet_distance, gaussian_stats, fid_from_features
    MNIST        mnist_classifier (a scratchgen MLP, cached under ~/.cache/scratchgen/classifier/),
                 mnist_inception_score, mnist_fid

Rebuild the MNIST classifier with one command: `python -m scratchgen.metrics [--data DIR] [--rebuild]`.
"""
from .toy import mode_coverage, toy_mode_coverage
from .parzen import log_mean_exp, parzen_log_likelihood, parzen_window
from .neighbours import nearest_neighbour_grid, nearest_neighbours, squared_distances
from .scores import fid_from_features, frechet_distance, gaussian_stats, inception_score
from .classifier import (MNISTClassifier, classifier_cache_dir, mnist_classifier, mnist_fid,
                         mnist_inception_score, train_classifier)

__all__ = [
    "mode_coverage", "toy_mode_coverage",
    "log_mean_exp", "parzen_log_likelihood", "parzen_window",
    "squared_distances", "nearest_neighbours", "nearest_neighbour_grid",
    "inception_score", "frechet_distance", "gaussian_stats", "fid_from_features",
    "MNISTClassifier", "classifier_cache_dir", "mnist_classifier", "train_classifier",
    "mnist_inception_score", "mnist_fid",
]
