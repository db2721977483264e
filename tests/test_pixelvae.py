"""PixelVAE: the decoder is autoregressive in x and conditioned on z (both conditionings), the
IWAE bound (k = 1 is the Monte Carlo ELBO, L_k rises with k towards the exact log p(x) of a
1-D latent model, a float64 log-mean-exp that neither overflows nor underflows, chunking changes
nothing), the KL warm-up schedule, the row-cached sampler with conditioning, and a tiny run of
`scratchgen train pixelvae`."""
import itertools
import json
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats as st
from hypothesis import given, settings, strategies as st_h

import scratchgen as sg
from scratchgen import cli
from scratchgen.models.pixelvae import LogMeanExp, PixelVAE, warmup_beta
from scratchgen.specs import create

from test_pixelcnn import assert_causal, order

Z = 5.0  # Monte Carlo tolerance, in standard errors


@pytest.fixture(autouse=True)
def bundled_data(monkeypatch):
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)


def tiny(conditioning="linear", shape=(4, 4), latent=2, layers=2, seed=0, **kwargs):
    sg.manual_seed(seed)
    kwargs = {**dict(hidden=8, channels=4, out_channels=4, maps=3, first_kernel=3), **kwargs}
    return PixelVAE(latent=latent, layers=layers, conditioning=conditioning, shape=shape, **kwargs).double()


def sharpen(model, scale=4.0):
    """Make p(x|z) depend strongly on z, so that the posterior is far from the untrained q(z|x)."""
    for m in list(model.v_cond) + list(model.h_cond):
        m.weight.data *= scale
    return model


@settings(max_examples=8)
@given(shape=st_h.sampled_from([(4, 4), (4, 8), (8, 4)]), conditioning=st_h.sampled_from(["upsample", "linear"]),
       seed=st_h.integers(0, 3))
def test_decoder_is_autoregressive_in_x_and_conditioned_on_z(shape, conditioning, seed):
    """d logit_i / d x_j = 0 for every pixel j at or after i in raster order, for both conditionings;
    every earlier pixel is seen (no blind spot: enough layers), and every logit depends on z."""
    h, w = shape
    model = tiny(conditioning, shape, latent=3, layers=max(h, w) + 1, seed=seed, channels=8, out_channels=8)
    rng = np.random.default_rng(seed)
    for p in model.parameters():   # off the initialization, where a tiny head's ReLUs can all be dead
        p.data[...] += 0.3 * rng.standard_normal(p.shape)
    x = sg.tensor(rng.standard_normal((1, 1, h, w)), requires_grad=True)
    z = sg.tensor(rng.standard_normal((1, 3)), requires_grad=True)
    logits = model.decoder_logits(x, z)
    features = model.decoder.features(x, cond=model.condition(z)).sum(axis=1)   # (1, H, W)
    dep = np.zeros((2, h, w, h, w))
    dz = np.zeros((2, h, w))
    for i, j in itertools.product(range(h), range(w)):
        for n, out in enumerate((logits[0, 0, i, j], features[0, i, j])):
            gx, gz = sg.grad(out, [x, z], retain_graph=True, allow_unused=True)
            dep[n, i, j] = 0 if gx is None else np.abs(gx.numpy()[0, 0])
            dz[n, i, j] = np.abs(gz.numpy()).sum()
    for d in dep:
        assert_causal(d[None, :, :, None], 1, h, w)
    pos = order(1, h, w)
    past = pos[:, :, :, None, None, None] > pos[None, None, None]
    assert np.all(dep[1][None, :, :, None][past] > 0), "an earlier pixel does not reach a later one"
    # z reaches every pixel's features (the stack the output head reads; a tiny head's ReLUs can be
    # dead at a pixel) and the logits
    assert np.all(dz[1] > 0), "some pixel does not depend on z"
    assert dep[0].sum() > 0 and dz[0].sum() > 0


def test_unknown_conditioning_and_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="upsample, linear"):
        PixelVAE(conditioning="concat")
    with pytest.raises(ValueError, match="multiples of 4"):
        PixelVAE(shape=(6, 8))
    with pytest.raises(ValueError, match=r"\(N, 1, 4, 4\)"):
        tiny().elbo(np.zeros((2, 15)))


# -- the bound ---------------------------------------------------------------------------------------
def all_images(shape):
    d = shape[0] * shape[1]
    return ((np.arange(2 ** d)[:, None] >> np.arange(d)[::-1]) & 1).astype(np.float64).reshape(-1, 1, *shape)


def exact_log_px(model, x, lim=10.0, n=2001):
    """log p(x) = log of the integral of p(x|z) N(z; 0, 1) dz for a 1-D latent, by a Riemann sum."""
    z = np.linspace(-lim, lim, n)
    with sg.no_grad():
        rows = []
        for xi in x:
            images = np.broadcast_to(xi, (n, *xi.shape))
            rows.append(model.log_px_z(images, sg.tensor(z[:, None])).numpy() + st.norm.logpdf(z))
    return scipy.special.logsumexp(np.array(rows), axis=1) + math.log(z[1] - z[0])


def test_the_decoder_is_normalized_given_z():
    """For fixed z, p(x|z) sums to 1 over all 2^(H W) images (here 2 x 4: 256 images)."""
    model = tiny("linear", shape=(4, 4), latent=2)
    x = all_images((2, 4))
    with sg.no_grad():
        z = sg.tensor(np.tile([[0.7, -1.3]], (len(x), 1)))
        logp = model.decoder.nll(x, cond=model.condition(z)).numpy()
    np.testing.assert_allclose(np.exp(-logp).sum(), 1.0, rtol=1e-12)


def test_single_sample_iwae_is_the_monte_carlo_elbo_for_the_same_noise():
    model = tiny("upsample", latent=2)
    x = all_images((4, 4))[::4099][:8]
    with sg.no_grad():
        iwae1 = model.log_likelihood(x, k=1, generator=sg.Generator(3))
        q = model.encode(x)
        eps = sg.Generator(3).rng.standard_normal((1, len(x), 2))[0]
        zs = q.loc + q.scale * sg.tensor(eps)
        mc = (model.log_px_z(x, zs) + model.prior().log_prob(zs).sum(axis=-1) - q.log_prob(zs).sum(axis=-1)).numpy()
    assert iwae1.dtype == np.float64
    np.testing.assert_allclose(iwae1, mc, rtol=1e-12)


def test_iwae_bound_rises_with_k_to_the_exact_likelihood_and_the_elbo_is_l1_in_expectation():
    """On a 1-D latent model (exact log p(x) by quadrature), with q(z|x) misplaced (wider than the
    posterior, so the weights stay bounded): E L_1 = ELBO (analytic KL) < E L_10 < E L_1000 ~ log p(x),
    each step beyond Monte Carlo error."""
    model = sharpen(tiny("linear", shape=(4, 4), latent=1, seed=2))
    model.encoder.mu.bias.data += 3.0
    model.encoder.logvar.bias.data += 1.4
    x = all_images((4, 4))[[5, 1234, 40000, 65000]]
    log_px = exact_log_px(model, x)
    S = {1: 400, 10: 100, 1000: 10}   # independent repetitions of each estimate, as copies of the batch
    with sg.no_grad():
        gap = {k: log_px - model.log_likelihood(np.tile(x, (s, 1, 1, 1)), k=k, generator=sg.Generator(k))
               .reshape(s, len(x)) for k, s in S.items()}
        elbo = model.elbo(np.tile(x, (2000, 1, 1, 1)), generator=sg.Generator(9)).numpy().reshape(2000, len(x))
    mean = {k: g.mean() for k, g in gap.items()}
    se = {k: g.mean(axis=1).std(ddof=1) / math.sqrt(S[k]) for k, g in gap.items()}
    assert mean[1] > 2.0 and mean[1] - mean[10] > 3 * math.hypot(se[1], se[10]), (mean, se)
    assert mean[10] - mean[1000] > 3 * math.hypot(se[10], se[1000]), (mean, se)
    assert abs(mean[1000]) < Z * se[1000] + 0.01, (mean, se)
    # L_1 (log q - log p at the sample) and the analytic-KL ELBO have the same expectation
    d = (log_px.mean() - elbo.mean()) - mean[1]
    assert abs(d) < Z * math.hypot(elbo.mean(axis=1).std() / math.sqrt(2000), se[1]), (d, se[1])


@pytest.mark.parametrize("k, batch", [(12, 5), (12, 1), (7, 7)])
def test_iwae_does_not_depend_on_the_chunk_size(k, batch):
    model = tiny("upsample")
    x = all_images((4, 4))[[3, 999, 30000]]
    one = model.log_likelihood(x, k=k, batch=k, generator=sg.Generator(5))
    chunked = model.log_likelihood(x, k=k, batch=batch, generator=sg.Generator(5))
    np.testing.assert_allclose(chunked, one, rtol=1e-12)


@settings(max_examples=30)
@given(k=st_h.integers(1, 40), n=st_h.integers(1, 3), scale=st_h.sampled_from([1.0, 1e3, 1e6]),
       offset=st_h.sampled_from([0.0, 1e4, -1e5, 7e300]), cuts=st_h.lists(st_h.integers(1, 39), max_size=4),
       seed=st_h.integers(0, 2 ** 16))
def test_log_mean_exp_is_stable_and_does_not_depend_on_the_chunks(k, n, scale, offset, cuts, seed):
    a = offset + scale * np.random.default_rng(seed).standard_normal((k, n))
    acc = LogMeanExp()
    bounds = [0] + sorted({c for c in cuts if c < k}) + [k]
    for lo, hi in zip(bounds, bounds[1:]):
        acc.add(a[lo:hi])
    got = acc.result()
    assert np.all(np.isfinite(got))
    m = a.max(axis=0)   # the reference: log-mean-exp shifted by the max, in one piece
    want = m + np.log(np.exp(a - m).mean(axis=0))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-9 * max(1.0, scale))
    assert np.all(got <= a.max(axis=0) + 1e-9) and np.all(got >= a.max(axis=0) - math.log(k) - 1e-9)


def test_log_mean_exp_edge_cases():
    big = LogMeanExp().add(np.full((3, 1), 1000.0)).add(np.full((2, 1), 1000.0)).result()
    assert big[0] == 1000.0   # exp(1000) overflows; the running shift does not
    tiny_w = LogMeanExp().add(np.array([[-1e4, -1e4]])).result()
    np.testing.assert_array_equal(tiny_w, [-1e4, -1e4])
    late = LogMeanExp().add(np.array([[-np.inf]])).add(np.array([[-2000.0]])).result()
    np.testing.assert_allclose(late, [-2000.0 - math.log(2)], rtol=1e-15)
    assert LogMeanExp().add(np.array([[-np.inf], [-np.inf]])).result()[0] == -np.inf
    with pytest.raises(ValueError, match="nothing added"):
        LogMeanExp().result()


# -- KL warm-up --------------------------------------------------------------------------------------
def test_warmup_beta_rises_linearly_from_0_to_1():
    assert [warmup_beta(t, 4) for t in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_beta(0, 0) == 1.0 and warmup_beta(5, -1) == 1.0
    assert warmup_beta(3, 6, beta=0.5) == 0.25


def test_training_uses_the_warmup_weight_and_evaluation_the_full_elbo():
    spec = create("pixelvae", dict(warmup=3, latent=2, hidden=8, channels=4, layers=2, out_channels=4, maps=2,
                                   limit_train=8, limit_eval=6, eval_k=0, lr=1e-3))
    model = spec.build().double()
    opt = spec.make_optimizer(model)
    x = sg.tensor(spec.train_dataset()[0][:8].astype(np.float64))
    betas = []
    for step in range(5):
        out = spec.loss(model, (x,))
        betas.append(out["beta"])
        with sg.no_grad():   # the loss is -(rec - beta KL), beta from the schedule, for the same noise
            _, rec, kl = model.elbo(x, generator=sg.Generator(step), return_terms=True)
            again = model.training_loss(x, generator=sg.Generator(step))
        np.testing.assert_allclose(again["loss"].item(), -(rec - out["beta"] * kl).mean().item(), rtol=1e-12)
        spec.training_step(model, (x,), opt)
    assert betas == [0.0, 1 / 3, 2 / 3, 1.0, 1.0]
    assert int(model.state_dict()["steps"]) == 5   # the clock is saved with the model (resume)
    model.steps.data[...] = 0                      # at beta = 0, validation still scores the ELBO
    metrics = spec.evaluate(model, "valid")
    assert metrics["valid_elbo"] == pytest.approx(metrics["valid_rec"] - metrics["valid_kl"], rel=1e-9)
    assert metrics["valid_kl"] > 0 and "test_nll_iwae" not in metrics


@pytest.mark.parametrize("floor", [0.0, "between", 1e6])
def test_free_bits_charge_each_dimensions_mean_kl_only_above_the_floor(floor):
    model = sharpen(tiny(latent=3))
    x = sg.tensor(np.random.default_rng(0).integers(0, 2, (5, 1, 4, 4)).astype(np.float64))
    if floor == "between":   # a floor between the dimensions' mean KLs: some are charged, some not
        with sg.no_grad():
            kls = np.sort(model.reconstruction_and_kl(x, sg.Generator(1))[1].numpy().mean(axis=0))
        floor = float(kls[0] + kls[1]) / 2
    model.free_bits = floor

    def encoder_grads(loss):
        model.zero_grad()
        loss.backward()
        return {n: p.grad.numpy().copy() for n, p in model.named_parameters() if n.startswith("encoder")}

    out = model.training_loss(x, generator=sg.Generator(1))
    got = encoder_grads(out["loss"])
    rec, kl = model.reconstruction_and_kl(x, sg.Generator(1))
    kl_mean = kl.mean(axis=0)
    above = kl_mean.detach().numpy() > floor
    assert above.sum() == {0.0: 3, 1e6: 0}.get(floor, 2)
    np.testing.assert_allclose(out["loss"].item(), -rec.mean().item() + np.maximum(kl_mean.detach().numpy(), floor).sum(),
                               rtol=1e-12)
    np.testing.assert_allclose(out["elbo"].item(), (rec - kl.sum(axis=1)).mean().item(), rtol=1e-12)
    # a dimension below the floor sends the encoder no KL gradient; one above it its whole KL gradient
    want = encoder_grads(-rec.mean() + (kl_mean * sg.tensor(above.astype(np.float64))).sum())
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12)


def test_negative_free_bits_are_an_error():
    with pytest.raises(ValueError, match="free_bits"):
        tiny(free_bits=-1)


# -- sampling ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("conditioning", ["upsample", "linear"])
def test_cached_sampler_with_conditioning_draws_what_the_naive_sampler_draws(conditioning):
    from scratchgen.models.pixelcnn import autoregressive_sample
    model = tiny(conditioning, shape=(8, 4), latent=3, layers=3)
    rng = np.random.default_rng(1)
    for p in model.decoder.parameters():
        p.data[...] += 0.3 * rng.standard_normal(p.shape)
    with sg.no_grad():
        cond = model.condition(sg.tensor(rng.standard_normal((5, 3))))
    fast = model.decoder.sample(5, (8, 4), seed=4, cond=cond).numpy()
    slow = autoregressive_sample(lambda x: model.decoder(x, cond=cond), 5, (1, 8, 4), seed=4,
                                 dtype=np.float64, device="cpu").numpy()
    assert 0 < fast.mean() < 1
    np.testing.assert_array_equal(fast, slow)
    # different codes give different images (z reaches the sampler)
    draws = model.sample(5, seed=0).numpy()
    assert draws.shape == (5, 1, 8, 4) and set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_array_equal(draws, model.sample(5, seed=0).numpy())


# -- the command line --------------------------------------------------------------------------------
TINY = ["--epochs", "1", "--limit-train", "200", "--limit-eval", "100", "--batch-size", "50", "--no-progress",
        "--seed", "0", "--set", "latent=4", "--set", "hidden=32", "--set", "channels=4", "--set", "layers=2",
        "--set", "out_channels=8", "--set", "maps=4", "--set", "eval_k=4", "--set", "warmup=3"]


@pytest.mark.parametrize("conditioning", ["upsample", "linear"])
def test_train_pixelvae_end_to_end(tmp_path, conditioning):
    out = tmp_path / conditioning
    assert cli.main(["train", "pixelvae", "--out", str(out), "--set", f"conditioning={conditioning}"] + TINY) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["test_eval_k"] == 4 and "fallback" in results["data_source"]   # the bundled subset, said so
    assert 0 < -results["test_elbo"] < 784 * math.log(2) + 50 and results["test_kl"] >= 0
    # the k = 4 bound is a number of the same size as -ELBO (different noise: not an exact order)
    assert abs(results["test_nll_iwae"] + results["test_elbo"]) < 0.1 * -results["test_elbo"]
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_beta"] == pytest.approx(0.5) and "valid_elbo" in record   # mean of 0, 1/3, 2/3, 1


def test_models_lists_the_pixelvae_settings_with_their_meaning(capsys):
    assert cli.main(["models", "pixelvae"]) == 0
    out = capsys.readouterr().out
    for key, words in [("conditioning", "upsample"), ("warmup", "KL warm-up"), ("eval_k", "importance samples"),
                       ("maps", "feature maps"), ("latent", "latent")]:
        line = next(l for l in out.splitlines() if l.strip().startswith(key + " "))
        assert words in line, line
