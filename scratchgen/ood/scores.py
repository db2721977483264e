"""Detection metrics computed by hand in NumPy, and the OOD scores built from a model's likelihood.

Every score follows one sign convention: a higher score means "more out-of-distribution", so the
held-out digit (the positive class) should rank first.

    aupr(scores, labels)          area under the precision-recall curve, as average precision
                                  sum_n (R_n - R_{n-1}) P_n over the distinct thresholds (what
                                  sklearn's average_precision_score computes; no interpolation)
    auroc(scores, labels)         area under the ROC curve (ties count one half)
    pr_curve(scores, labels)      (precision, recall, thresholds) at each distinct threshold

    likelihood_ratio(nll, nll_bg)         Ren et al. 2019: -LLR = -log p(x) + log p_bg(x), p_bg a
                                          background model (trained on perturbed inputs)
    complexity_corrected(nll, bits)       Serra et al. 2020: S(x) = -log2 p(x) - L(x), L(x) the
                                          length in bits of x under a generic lossless compressor
    typicality(nll, mean_nll)             Nalisnick et al. 2019: |-log p(x) - H|, H estimated by the
                                          mean NLL of the training data (a test of batch size 1)

Complexity estimates L(x) (bits per image): `png_bits` (PNG, the paper's choice; 1-bit PNG for
binary images), `zlib_bits` (deflate of the packed pixels) and `context_bits`, the ideal code length
of an adaptive binary context model (a 4-pixel causal template with Krichevsky-Trofimov counts,
started afresh for every image: JBIG's scheme, the standard lossless coder for bilevel images).
PNG's container and deflate's granularity give bilevel 28x28 images code lengths of 500-900 bits,
several times their NLL, so S(x) then mostly ranks by image complexity; the context coder's lengths
are on the NLL's scale (100-250 bits), so S(x) is a ratio of two comparable models.
"""
import io
import math
import zlib

import numpy as np

LN2 = math.log(2.0)


# -- metrics -------------------------------------------------------------------------------------------
def _ranked(scores, labels):
    """Counts of true and false positives at each distinct threshold, highest score first."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} and {y.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (in-distribution) or 1 (out-of-distribution)")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite (NaN or infinite)")
    y = y.astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"need both classes: {positives} positives and {negatives} negatives")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # last row of each group of tied scores
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1) - tp
    return tp, fp, s[last], positives, negatives


def pr_curve(scores, labels):
    """(precision, recall, thresholds), one entry per distinct score from the highest down:
    flagging every example scored >= threshold gives that precision and recall."""
    tp, fp, thresholds, positives, _ = _ranked(scores, labels)
    return tp / (tp + fp), tp / positives, thresholds


def aupr(scores, labels):
    """Average precision: sum over distinct thresholds of (R_n - R_{n-1}) P_n. A random score
    gets about the positive rate; a perfect one gets 1."""
    precision, recall, _ = pr_curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auroc(scores, labels):
    """Area under the ROC curve by the trapezoid rule over distinct thresholds (a tie between a
    positive and a negative counts one half): the probability that a positive outranks a negative."""
    tp, fp, _, positives, negatives = _ranked(scores, labels)
    tpr, fpr = np.r_[0.0, tp / positives], np.r_[0.0, fp / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


# -- corrected scores ----------------------------------------------------------------------------------
def likelihood_ratio(nll, nll_background):
    """-log p(x) + log p_bg(x) (nats): minus Ren et al.'s log-likelihood ratio. The background
    model explains the population-level statistics (the ink, the blank border), so what is left
    is the semantic part that p models and p_bg does not."""
    return np.asarray(nll, np.float64) - np.asarray(nll_background, np.float64)


def complexity_corrected(nll, bits):
    """S(x) = -log2 p(x) - L(x) (bits), `nll` in nats and `bits` = L(x) from a compressor: the
    likelihood ratio against the compressor's universal model 2^-L(x)."""
    return np.asarray(nll, np.float64) / LN2 - np.asarray(bits, np.float64)


def typicality(nll, mean_nll):
    """|-log p(x) - H| with H the mean training NLL: far from the typical set, in either direction
    (an input more likely than typical training data is as suspect as a less likely one)."""
    return np.abs(np.asarray(nll, np.float64) - float(mean_nll))


# -- complexity estimates L(x) --------------------------------------------------------------------------
def _as_uint8(images):
    """Images (N, ...) of 28x28 pixels in {0,1}, [0,1] or [-1,1] -> (uint8 (N, 28, 28), binary?)."""
    x = np.asarray(images, np.float64)
    x = x.reshape(len(x), -1)
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"complexity: expected square single-channel images, got {x.shape[1]} pixels")
    x = x.reshape(len(x), side, side)
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    if x.min(initial=0) < 0:               # [-1, 1]
        x = (x + 1) / 2
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), binary


def png_bits(images):
    """Bits of each image saved as PNG (Pillow, optimize=True): 1-bit for binary images, 8-bit
    grayscale otherwise. Includes PNG's fixed container, which shifts every image alike."""
    from PIL import Image
    pixels, binary = _as_uint8(images)
    out = np.empty(len(pixels))
    for i, img in enumerate(pixels):
        buf = io.BytesIO()
        Image.fromarray(img > 127 if binary else img).save(buf, format="PNG", optimize=True)
        out[i] = 8 * buf.tell()
    return out


def zlib_bits(images):
    """Bits of each image's pixels deflated (zlib level 9): packed 1 bit a pixel for binary images,
    a byte a pixel otherwise."""
    pixels, binary = _as_uint8(images)
    out = np.empty(len(pixels))
    for i, img in enumerate(pixels):
        raw = np.packbits(img > 127, axis=1).tobytes() if binary else img.tobytes()
        out[i] = 8 * len(zlib.compress(raw, 9))
    return out


def context_bits(images):
    """The ideal code length in bits of each binary image under an adaptive context model (what
    an arithmetic coder achieves within 2 bits): pixels in raster order, each predicted from its
    W, NW, N and NE neighbours (16 contexts) by Krichevsky-Trofimov counts that start at 1/2 for
    every image. Vectorized over images; non-binary images are thresholded at 1/2."""
    pixels, _ = _as_uint8(images)
    x = (pixels > 127).astype(np.int64)
    n, h, w = x.shape
    pad = np.zeros((n, h + 1, w + 2), np.int64)   # one blank row above, one blank column each side
    pad[:, 1:, 1:-1] = x
    counts = np.full((n, 16, 2), 0.5)
    bits = np.zeros(n)
    rows = np.arange(n)
    for i in range(h):
        for j in range(w):
            r, c = i + 1, j + 1
            ctx = pad[:, r, c - 1] | pad[:, r - 1, c - 1] << 1 | pad[:, r - 1, c] << 2 | pad[:, r - 1, c + 1] << 3
            bit = pad[:, r, c]
            seen = counts[rows, ctx]                  # (n, 2)
            bits -= np.log2(seen[rows, bit] / seen.sum(axis=1))
            counts[rows, ctx, bit] += 1.0
    return bits


COMPRESSORS = {"png": png_bits, "zlib": zlib_bits, "context": context_bits}


def complexity(images, method):
    """L(x) in bits for each image with compressor `method` (png, zlib or context)."""
    if method not in COMPRESSORS:
        raise ValueError(f"unknown compressor {method!r}; choose one of {', '.join(COMPRESSORS)}")
    return COMPRESSORS[method](images)


# -- the scores of one held-out digit --------------------------------------------------------------------
def derive(kind, main, background=None):
    """{score name: per-image scores (higher = more OOD)} from a task's stored arrays.

    kind 'likelihood': `main` has 'nll' (nats), 'train_nll_mean' and 'bits_<compressor>' arrays;
    gives nll, typicality, complexity_<compressor> and, with a background task's arrays,
    likelihood_ratio. kind 'discriminator': `main` has 'logit' (D's pre-sigmoid output, high for
    real digits); gives disc = -logit."""
    if kind == "discriminator":
        return {"disc": -np.asarray(main["logit"], np.float64)}
    nll = np.asarray(main["nll"], np.float64)
    out = {"nll": nll}
    if background is not None:
        out["likelihood_ratio"] = likelihood_ratio(nll, background["nll"])
    for key in sorted(k for k in main if k.startswith("bits_")):
        out[f"complexity_{key[5:]}"] = complexity_corrected(nll, main[key])
    out["typicality"] = typicality(nll, float(np.asarray(main["train_nll_mean"])))
    return out
