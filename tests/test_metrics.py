"""sg.metrics: the math of IS, FID, Parzen windows, mode coverage and nearest neighbours on
inputs whose answers are known in closed form, and the MNIST classifier's cache."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import metrics
from scratchgen.data import eight_gaussians, mode_centers


def spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


# -- FID ------------------------------------------------------------------------------------------
def test_fid_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, s = rng.standard_normal(6), spd(rng, 6)
    assert metrics.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)
    f = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    assert metrics.fid_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fid_between_unit_gaussians_is_squared_mean_distance():
    mu = np.array([1.0, -2.0, 0.5, 3.0])
    eye = np.eye(4)
    assert metrics.frechet_distance(np.zeros(4), eye, mu, eye) == pytest.approx(mu @ mu, rel=1e-10)


def test_fid_matches_closed_forms_for_covariances():
    # Diagonal covariances: FID = ||mu1 - mu2||^2 + sum (sqrt a_i - sqrt b_i)^2.
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu = np.array([0.0, 1.0, 0.0])
    expected = mu @ mu + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert metrics.frechet_distance(np.zeros(3), np.diag(a), mu, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # General (non-commuting) covariances: Tr sqrtm(S1 S2) = Tr sqrtm(S1^1/2 S2 S1^1/2), a symmetric
    # PSD matrix whose eigenvalues give the trace independently of scipy's sqrtm.
    rng = np.random.default_rng(1)
    s1, s2 = spd(rng, 5), spd(rng, 5)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    expected = (m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * tr
    assert metrics.frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)
    assert metrics.frechet_distance(m2, s2, m1, s1) == pytest.approx(expected, rel=1e-8)


def test_fid_from_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    shift = np.array([2.0, 0.0, -1.0])
    f1 = rng.standard_normal((20000, 3))
    f2 = rng.standard_normal((20000, 3)) + shift
    assert metrics.fid_from_features(f1, f2) == pytest.approx(shift @ shift, abs=0.05)


def test_fid_survives_singular_covariances():
    f = np.zeros((50, 3))
    f[:, 0] = np.random.default_rng(3).standard_normal(50)  # rank-1 covariance
    assert metrics.fid_from_features(f, f + np.array([0.0, 1.0, 0.0])) == pytest.approx(1.0, abs=1e-4)


# -- Inception Score -------------------------------------------------------------------------------
def test_inception_score_of_uniform_predictions_is_one():
    mean, std = metrics.inception_score(np.full((100, 10), 0.1), splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_predictions_spread_evenly_is_the_number_of_classes():
    probs = np.eye(10)[np.arange(1000) % 10]
    mean, std = metrics.inception_score(probs, splits=10)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-9)
    assert metrics.inception_score(np.eye(10)[np.zeros(100, int)], splits=1)[0] == pytest.approx(1.0)  # one class


def test_inception_score_matches_the_kl_formula():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((64, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    py = p.mean(0)
    expected = math.exp(np.mean([(q * np.log(q / py)).sum() for q in p]))
    assert metrics.inception_score(p, splits=1)[0] == pytest.approx(expected, rel=1e-10)
    assert 1.0 < expected < 5.0
    with pytest.raises(ValueError, match="softmax"):
        metrics.inception_score(logits, splits=1)


# -- Parzen windows ---------------------------------------------------------------------------------
def gaussian_logpdf(x, mean, var):
    d = x.shape[1]
    return -0.5 * (((x - mean) ** 2).sum(1) / var + d * math.log(2 * math.pi * var))


def test_parzen_with_one_sample_is_that_gaussian():
    rng = np.random.default_rng(5)
    s = rng.standard_normal((1, 7))
    x = rng.standard_normal((30, 7))
    got = metrics.parzen_log_likelihood(x, s, 0.7)
    np.testing.assert_allclose(got, gaussian_logpdf(x, s, 0.49), rtol=1e-12)


def test_parzen_is_a_log_mean_of_kernels_and_batch_independent():
    rng = np.random.default_rng(6)
    s, x = rng.standard_normal((40, 3)), rng.standard_normal((25, 3))
    sig = 0.5
    per_kernel = np.stack([gaussian_logpdf(x, si, sig ** 2) for si in s], axis=1)
    expected = np.log(np.exp(per_kernel).mean(1))
    np.testing.assert_allclose(metrics.parzen_log_likelihood(x, s, sig, batch_size=7), expected, rtol=1e-10)
    both = metrics.parzen_log_likelihood(x, s, [sig, 2 * sig], batch_size=1000)
    assert both.shape == (2, 25)
    np.testing.assert_allclose(both[0], expected, rtol=1e-10)


def test_parzen_on_a_known_gaussian_recovers_the_smoothed_density():
    # Samples of N(0, I_2) smoothed by the kernel are N(0, (1 + sigma^2) I): the mean test
    # log-likelihood is that Gaussian's, -log(2 pi v) - 1/v in 2-D.
    rng = np.random.default_rng(7)
    samples, test = rng.standard_normal((20000, 2)), rng.standard_normal((4000, 2))
    sig = 0.3
    v = 1 + sig ** 2
    ll = metrics.parzen_log_likelihood(test, samples, sig)
    assert ll.mean() == pytest.approx(np.mean(gaussian_logpdf(test, 0.0, v)), abs=0.03)


def test_parzen_window_picks_sigma_on_the_validation_set():
    rng = np.random.default_rng(8)
    samples, valid, test = (rng.standard_normal((n, 2)) for n in (3000, 1000, 1000))
    out = metrics.parzen_window(samples, valid, test, sigmas=[0.01, 0.2, 5.0])
    assert out["sigma"] == 0.2 and int(np.argmax(out["valid_means"])) == 1
    ll = metrics.parzen_log_likelihood(test, samples, 0.2)
    assert out["mean"] == pytest.approx(ll.mean()) and out["sem"] == pytest.approx(ll.std(ddof=1) / math.sqrt(1000))


def test_log_mean_exp_is_stable():
    a = np.array([[1000.0, 1000.0], [-1000.0, -1000.0 + math.log(3)]])
    np.testing.assert_allclose(metrics.log_mean_exp(a, axis=1), [1000.0, -1000.0 + math.log(2)])


# -- mode coverage --------------------------------------------------------------------------------
def test_mode_coverage_on_constructed_samples():
    centers, std = mode_centers("eight_gaussians")
    at_modes = np.repeat(centers[:5], 10, axis=0)                 # 5 modes hit exactly
    far = np.zeros((50, 2))                                        # the origin: 2 from every mode
    out = metrics.mode_coverage(np.concatenate([at_modes, far]), centers, std)
    assert out["modes_covered"] == 5 and out["num_modes"] == 8
    assert out["high_quality"] == pytest.approx(0.5)
    assert out["counts"].tolist() == [10] * 5 + [0] * 3


def test_mode_coverage_threshold_is_three_standard_deviations():
    centers, std = np.array([[0.0, 0.0], [10.0, 0.0]]), 0.1
    x = np.array([[0.29, 0.0], [0.0, -0.31], [10.0, 0.2]])
    out = metrics.mode_coverage(x, centers, std)
    assert out["counts"].tolist() == [1, 1] and out["high_quality"] == pytest.approx(2 / 3)
    assert metrics.mode_coverage(x, centers, std, min_count=2)["modes_covered"] == 0
    assert metrics.mode_coverage(x, centers, std, n_std=4)["high_quality"] == 1.0


def test_data_itself_covers_every_mode_with_high_quality():
    x, _ = eight_gaussians(5000, seed=0)
    out = metrics.toy_mode_coverage(x, "eight_gaussians")
    assert out["modes_covered"] == 8
    assert out["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)  # mass within 3 std in 2-D
    with pytest.raises(ValueError, match="no modes"):
        metrics.toy_mode_coverage(x, "swiss_roll")


# -- nearest neighbours -------------------------------------------------------------------------------
def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(9)
    q, ref = rng.random((37, 20)).astype(np.float32), rng.random((101, 20)).astype(np.float32)
    idx, dist = metrics.nearest_neighbours(q, ref, k=4, batch_size=8)
    brute = np.sqrt(((q[:, None, :].astype(np.float64) - ref[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(idx, np.argsort(brute, axis=1)[:, :4])
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :4], rtol=1e-4, atol=1e-4)
    idx1, dist1 = metrics.nearest_neighbours(ref[[3, 50]], ref, k=1)
    assert idx1[:, 0].tolist() == [3, 50] and np.all(dist1 < 1e-3)


def test_nearest_neighbour_grid_writes_a_picture(tmp_path):
    rng = np.random.default_rng(10)
    path = metrics.nearest_neighbour_grid(rng.random((3, 784)), rng.random((40, 784)), tmp_path / "nn.png", k=4)
    assert open(path, "rb").read(4) == b"\x89PNG"


# -- the MNIST classifier -----------------------------------------------------------------------------
@pytest.fixture
def tiny_classifier(tmp_path, monkeypatch):
    """A classifier trained in seconds on 300 bundled digits into a temporary cache."""
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)
    monkeypatch.setattr(metrics.classifier, "_LOADED", {})
    recipe = dict(epochs=1, limit_train=300, augment=False)
    clf = metrics.mnist_classifier(cache_dir=tmp_path, log=lambda *a: None, **recipe)
    return clf, tmp_path, recipe


def test_classifier_is_cached_and_reloaded_without_training(tiny_classifier, monkeypatch):
    clf, cache, recipe = tiny_classifier
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[0].startswith("mnist_mlp_bundled_") and files[1].endswith(".npz")
    meta = json.loads((cache / files[0]).read_text())
    assert meta["recipe"]["epochs"] == 1 and 0 <= meta["test_acc"] <= 1 and "bundled" in meta["data"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(metrics.classifier, "_LOADED", {})
    monkeypatch.setattr(metrics.classifier, "train_classifier", no_training)
    again = metrics.mnist_classifier(cache_dir=cache, log=lambda *a: None, **recipe)
    x = sg.data.load_mnist("test")[0][:50]
    f1, p1 = clf.embed(x)
    f2, p2 = again.embed(x)
    assert f1.shape == (50, 256) and p1.shape == (50, 10)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_allclose(p1.sum(1), 1.0, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="python -m scratchgen.metrics"):
        metrics.mnist_classifier(cache_dir=cache / "empty", train_if_missing=False, **recipe)


def test_loading_or_training_the_classifier_leaves_the_random_streams_alone(tiny_classifier, monkeypatch):
    """A GAN run that asks for its first FID must draw the same noise afterwards as without it."""
    import random
    _, cache, recipe = tiny_classifier

    def draws():
        return sg.randn(3).numpy().tolist(), np.random.rand(), random.random()

    for reset in ({}, None):          # load from the cache; then train (rebuild) from scratch
        sg.manual_seed(5), np.random.seed(5), random.seed(5)
        expected = draws()
        sg.manual_seed(5), np.random.seed(5), random.seed(5)
        monkeypatch.setattr(metrics.classifier, "_LOADED", {})
        metrics.mnist_classifier(cache_dir=cache, rebuild=reset is None, log=lambda *a: None, **recipe)
        assert draws() == expected


def test_fork_rng_restores_every_global_stream():
    import random
    from scratchgen.random import fork_rng
    sg.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = sg.randn(2).numpy().tolist(), np.random.rand(), random.random()
    sg.manual_seed(1), np.random.seed(1), random.seed(1)
    with pytest.raises(RuntimeError):
        with fork_rng():
            sg.manual_seed(99), np.random.seed(99), random.seed(99)
            sg.randn(5), np.random.rand(4), random.random()
            raise RuntimeError("restored on errors too")
    assert (sg.randn(2).numpy().tolist(), np.random.rand(), random.random()) == expected


def test_mnist_scores_through_the_classifier(tiny_classifier):
    clf = tiny_classifier[0]
    images = sg.data.load_mnist("test")[0]
    assert metrics.mnist_fid(images, "test", classifier=clf) == pytest.approx(0.0, abs=1e-6)
    unit = images.astype(np.float32) / 255
    assert metrics.mnist_fid(unit, images, classifier=clf) == pytest.approx(0.0, abs=1e-3)  # uint8 = /255
    assert metrics.mnist_fid(np.zeros_like(unit), "test", classifier=clf) > 1.0
    mean, _ = metrics.mnist_inception_score(images, classifier=clf, splits=2)
    assert 1.0 < mean <= 10.0
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        clf.embed(unit * 2 - 1)


def test_the_classifier_trains_when_first_asked_for_inside_no_grad(tmp_path, monkeypatch):
    """A GAN's first FID comes from its no_grad validation pass; on a fresh install (empty cache)
    that is where the classifier gets trained, so training must turn the graph back on."""
    monkeypatch.setattr(metrics.classifier, "_LOADED", {})
    with sg.no_grad():
        clf = metrics.mnist_classifier(cache_dir=tmp_path, log=lambda *a: None,
                                       epochs=1, limit_train=200, augment=False)
    assert clf.embed(sg.data.load_mnist("test")[0][:5])[1].shape == (5, 10)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), s=st.integers(1, 40), scale=st.sampled_from([1e-3, 1.0, 50.0, 1e4]), seed=st.integers(0, 99))
def test_parzen_kernel_equals_the_plain_log_mean_exp(n, s, scale, seed):
    """kernels/parzen.py skips exponentials below exp(-50) relative to the nearest sample's; the
    result must equal the reference log-mean-exp over every term, at every bandwidth."""
    from scratchgen.kernels.parzen import log_mean_exp_of_distances
    from scratchgen.metrics.parzen import log_mean_exp
    rng = np.random.default_rng(seed)
    d2 = rng.random((n, s)) * scale
    d2[:, rng.integers(s)] = d2.min()   # ties at the minimum
    sigmas = np.logspace(-1, 0, 10)
    want = np.stack([log_mean_exp(-d2 / (2 * sg_ * sg_), axis=1) for sg_ in sigmas])
    np.testing.assert_allclose(log_mean_exp_of_distances(d2, sigmas), want, rtol=1e-12, atol=1e-12)
