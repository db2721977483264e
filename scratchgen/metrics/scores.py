"""Inception Score (Salimans et al., 2016) and Frechet Inception Distance (Heusel et al., 2017),
as functions of a classifier's outputs, so that any classifier can provide them
(scratchgen.metrics.classifier uses an MNIST MLP in place of Inception-v3).

    IS  = exp( E_x KL(p(y|x) || p(y)) ),  p(y) = E_x p(y|x)                    (1 <= IS <= #classes)
    FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))   of Gaussians fitted to features

Both depend on the number of samples (FID is biased upwards for finite N: fewer samples give a
larger FID), so compare only numbers computed with the same sample sizes and the same network.
"""
import warnings

import numpy as np


def inception_score(probs, splits=10, eps=1e-12):
    """(mean, std) over `splits` equal parts of the IS of class probabilities (N, C) (rows sum to 1),
    as in Salimans et al.'s code. splits=1 gives the score of the whole set (std 0)."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) < splits:
        raise ValueError(f"inception_score: need probabilities of shape (N, C) with N >= splits={splits}, "
                         f"got {p.shape}")
    if np.abs(p.sum(axis=1) - 1).max() > 1e-3 or p.min() < 0:
        raise ValueError("inception_score: rows must be probability vectors (apply softmax to logits first)")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        # KL(p(y|x) || p(y)) with 0 log 0 = 0
        kl = np.where(part > 0, part * (np.log(np.maximum(part, eps)) - np.log(np.maximum(py, eps))), 0.0).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def gaussian_stats(features):
    """(mean (D,), covariance (D, D)) of features (N, D), in float64 (unbiased covariance)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"gaussian_stats: need features of shape (N >= 2, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):
    ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2)), with scipy.linalg.sqrtm.
    A singular product (scipy warns) is recomputed with eps * I added to both covariances, as in
    the reference FID code (here in the traces too, so identical inputs still give 0)."""
    from scipy import linalg
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"frechet_distance: shapes {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape} do not match")
    diff = mu1 - mu2
    with warnings.catch_warnings(record=True) as caught:  # scipy warns about singular products
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if caught or not np.isfinite(covmean).all():
        # e.g. features that are always 0 (dead ReLUs): regularise, as the reference code does
        # The distance between the regularised Gaussians (traces included, so it stays >= 0).
        s1, s2 = s1 + np.eye(len(s1)) * eps, s2 + np.eye(len(s2)) * eps
        covmean = linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        # Numerical noise gives tiny imaginary parts; large ones mean the result is wrong.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * max(1.0, np.abs(covmean).max())):
            raise ValueError(f"frechet_distance: sqrtm has imaginary part {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_from_features(features1, features2):
    """Frechet distance between Gaussians fitted to two sets of features (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))
