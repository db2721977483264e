"""PixelCNN and Gated PixelCNN: causality (the defining property of an autoregressive model),
no blind spot for the gated model, exact likelihood bookkeeping and sampling."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen.models.gated_pixelcnn import GatedPixelCNN
from scratchgen.models.pixelcnn import PixelCNN


def jacobian_support(model, c, h, w, seed=0, features=False, **kwargs):
    """dep[k, i, j, k', i', j'] = |d out[k, i, j] / d x[k', i', j']| for one random image, in float64.

    With features=True, `out` is the sum over channels of model.features (the stack the 1x1 output
    layers read): a ReLU unit of the output head that happens to be dead at one pixel would hide
    a dependence, while the stack shows the network's connectivity."""
    model.double()
    rng = np.random.default_rng(seed)
    x = sg.tensor(rng.standard_normal((1, c, h, w)), requires_grad=True)
    if features:
        f = model.features(x, **kwargs)
        out = f.reshape(1, c, -1, h, w).sum(axis=2)  # channel groups, one per data channel
    else:
        out = model(x, **kwargs)
    dep = np.zeros((c, h, w, c, h, w))
    for k, i, j in itertools.product(range(c), range(h), range(w)):
        g, = sg.grad(out[0, k, i, j], [x], retain_graph=True, allow_unused=True)
        dep[k, i, j] = 0 if g is None else np.abs(g.numpy()[0])
    return dep


def order(c, h, w):
    """Position of (channel, row, column) in the autoregressive order: raster, then channel."""
    k, i, j = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    return (i * w + j) * c + k


def assert_causal(dep, c, h, w):
    pos = order(c, h, w)
    future = pos[:, :, :, None, None, None] <= pos[None, None, None]  # inputs at or after the output
    leaked = dep[future]
    assert np.all(leaked == 0), f"{int(np.sum(leaked != 0))} output/input pairs see the present or the future"


@settings(max_examples=8)
@given(h=st.integers(1, 5), w=st.integers(1, 5), blocks=st.integers(0, 2), first=st.sampled_from([1, 3, 5, 7]),
       data_channels=st.sampled_from([1, 3]))
def test_pixelcnn_is_causal(h, w, blocks, first, data_channels):
    sg.manual_seed(0)
    model = PixelCNN(data_channels, channels=4 * data_channels, blocks=blocks,
                     first_kernel=first, out_channels=3 * data_channels)
    assert_causal(jacobian_support(model, data_channels, h, w), data_channels, h, w)
    dep = jacobian_support(model, data_channels, h, w, features=True)
    assert_causal(dep, data_channels, h, w)
    # ... and not trivially: the pixel just before a position is seen, when there is one.
    if first > 1 and w > 1:
        assert dep[0, 0, 1, 0, 0, 0] > 0


@settings(max_examples=8)
@given(h=st.integers(1, 5), w=st.integers(1, 5), first=st.sampled_from([3, 5, 7]),
       conditional=st.booleans())
def test_gated_pixelcnn_is_causal_and_has_no_blind_spot(h, w, first, conditional):
    sg.manual_seed(1)
    layers = max(h, w) + 1  # deep enough for the receptive field to cover the whole image
    model = GatedPixelCNN(channels=4, layers=layers, kernel_size=3, first_kernel=first, out_channels=4,
                          num_classes=3 if conditional else 0)
    kwargs = {"y": np.array([2])} if conditional else {}
    assert_causal(jacobian_support(model, 1, h, w, **kwargs), 1, h, w)
    dep = jacobian_support(model, 1, h, w, features=True, **kwargs)
    assert_causal(dep, 1, h, w)
    pos = order(1, h, w)
    past = pos[:, :, :, None, None, None] > pos[None, None, None]
    assert np.all(dep[past] > 0), "some pixel above or to the left does not influence the output: a blind spot"


def test_pixelcnn_has_the_blind_spot_the_gated_model_removes():
    # Stacked masked 3x3 convolutions never move right within a row, so however deep the stack,
    # output (2, 2) cannot see (1, 4), two columns right on the row above. (The gated model's
    # test above shows it sees every such pixel.)
    sg.manual_seed(0)
    model = PixelCNN(1, channels=8, blocks=4, first_kernel=3, out_channels=4)
    dep = jacobian_support(model, 1, 4, 6, features=True)
    assert dep[0, 2, 2, 0, 1, 4] == 0
    assert dep[0, 2, 2, 0, 1, 3] > 0 and dep[0, 2, 2, 0, 0, 4] > 0


@pytest.mark.parametrize("make", [lambda: PixelCNN(1, channels=8, blocks=1, out_channels=4),
                                  lambda: GatedPixelCNN(channels=4, layers=2, out_channels=4)])
def test_nll_is_exact_sum_of_bernoulli_terms_and_normalised(make):
    """On 2x2 images the model is a distribution over 16 binary images: probabilities sum to 1."""
    sg.manual_seed(0)
    model = make().double()
    images = np.array(list(itertools.product([0.0, 1.0], repeat=4))).reshape(16, 1, 2, 2)
    with sg.no_grad():
        nll = model.nll(images).numpy()
    assert nll.shape == (16,) and np.all(nll > 0)
    assert np.exp(-nll).sum() == pytest.approx(1.0, abs=1e-12)


def test_samples_follow_the_model_distribution():
    sg.manual_seed(0)
    model = GatedPixelCNN(channels=4, layers=2, out_channels=4).double()
    images = np.array(list(itertools.product([0.0, 1.0], repeat=4))).reshape(16, 1, 2, 2)
    with sg.no_grad():
        p = np.exp(-model.nll(images).numpy())
    draws = model.sample(4000, shape=(2, 2), seed=0).numpy().reshape(4000, 4)
    index = draws @ (2 ** np.arange(3, -1, -1))
    freq = np.bincount(index.astype(int), minlength=16) / 4000
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / 4000) + 1e-3


def test_nll_rejects_wrong_image_shapes():
    model = PixelCNN(1, channels=4, blocks=0, out_channels=2)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model.nll(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="square"):
        model.nll(np.zeros((2, 10)))


def test_conditional_model_needs_labels():
    model = GatedPixelCNN(channels=4, layers=1, out_channels=4, num_classes=10)
    with pytest.raises(ValueError, match="needs labels"):
        model(sg.zeros((1, 1, 3, 3)))


def _perturbed(model, scale=0.3, seed=1):
    """Weights moved off their init (the gated model's class embeddings start at zero)."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] += (scale * rng.standard_normal(p.shape)).astype(p.dtype)
    return model


@pytest.mark.parametrize("make, shape", [
    (lambda: PixelCNN(1, channels=8, blocks=2, out_channels=4), (6, 5)),
    (lambda: PixelCNN(3, channels=12, blocks=1, first_kernel=5, out_channels=6), (4, 4)),
    (lambda: PixelCNN(1, channels=4, blocks=1, out_channels=4), (2, 3)),       # kernel taller than the image
    (lambda: GatedPixelCNN(channels=4, layers=3, out_channels=4), (6, 5)),
    (lambda: GatedPixelCNN(channels=4, layers=2, out_channels=4, num_classes=3), (5, 4)),
])
def test_cached_sampler_draws_what_the_naive_sampler_draws(make, shape):
    """The row-cached sampler against one full forward pass per pixel, same seed: identical images."""
    from scratchgen.models.gated_pixelcnn import naive_sample
    from scratchgen.models.pixelcnn import autoregressive_sample
    sg.manual_seed(0)
    model = _perturbed(make())
    fast = model.sample(6, shape=shape, seed=4).numpy()
    if isinstance(model, GatedPixelCNN):
        slow = naive_sample(model, 6, shape, seed=4).numpy()
    else:
        slow = autoregressive_sample(model, 6, (model.data_channels, *shape), seed=4).numpy()
    assert fast.shape == slow.shape and 0 < fast.mean() < 1
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("make", [lambda: PixelCNN(1, channels=4, blocks=1, out_channels=4),
                                  lambda: GatedPixelCNN(channels=4, layers=2, out_channels=4)])
def test_sampling_builds_no_graph(make, monkeypatch):
    """The cached sampler runs on plain arrays: no module forward, hence no graph, even with grad on;
    the naive reference sampler's forwards run under no_grad."""
    from scratchgen.grad_mode import _GradMode
    from scratchgen.models.pixelcnn import autoregressive_sample
    model = make()
    seen = []
    forward = model.logits.forward
    model.logits.forward = lambda x: (seen.append(_GradMode.enabled), forward(x))[1]
    with sg.enable_grad():
        autoregressive_sample(model, 2, (1, 3, 3), seed=0)
    assert seen and not any(seen)

    def no_forward(self, *args, **kwargs):
        raise AssertionError(f"the cached sampler ran {type(self).__name__}.forward")
    monkeypatch.setattr(sg.nn.Module, "__call__", no_forward)
    with sg.enable_grad():
        out = model.sample(2, shape=(3, 3), seed=0)
    assert not out.requires_grad


def test_gate_op_matches_its_composition_to_second_order():
    """The fused gate against tanh(f) * sigmoid(g) built from engine ops: values, gradients, and
    gradients of gradients (finite differences in float64)."""
    from scratchgen.models.gated_pixelcnn import _composed_gate, gate
    rng = np.random.default_rng(0)
    a = sg.tensor(rng.standard_normal((2, 6, 3, 2)) * 2, requires_grad=True)
    np.testing.assert_allclose(gate(a).detach().numpy(), _composed_gate(a).detach().numpy(), rtol=1e-12)
    g = sg.tensor(rng.standard_normal((2, 3, 3, 2)))
    fused, = sg.grad(gate(a), [a], grad_outputs=g)
    composed, = sg.grad(_composed_gate(a), [a], grad_outputs=g)
    np.testing.assert_allclose(fused.numpy(), composed.numpy(), rtol=1e-10, atol=1e-12)
    assert sg.gradcheck(gate, (a,))
    assert sg.gradgradcheck(gate, (a,))


@pytest.mark.parametrize("axis, k", [(2, 1), (3, 1), (3, -2)])
def test_shift_is_pad_then_slice_and_differentiable(axis, k):
    from scratchgen.models.gated_pixelcnn import shift
    rng = np.random.default_rng(0)
    x = sg.tensor(rng.standard_normal((2, 3, 4, 5)), requires_grad=True)
    expected = np.zeros(x.shape)
    moved = np.roll(x.detach().numpy(), k, axis=axis)
    index = [slice(None)] * 4
    index[axis] = slice(k, None) if k > 0 else slice(0, k)
    expected[tuple(index)] = moved[tuple(index)]
    np.testing.assert_array_equal(shift(x, axis, k).detach().numpy(), expected)
    assert sg.gradcheck(lambda t: shift(t, axis, k), (x,))
    assert sg.gradgradcheck(lambda t: shift(t, axis, k), (x,))
