"""Tests for scratchgen.nn (modules, layers, init, functional) and scratchgen.serialization."""
import json
import math
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn
from scratchgen.nn import functional as F
from scratchgen.nn import init
from scratchgen import serialization
from scratchgen.serialization import CheckpointError, load, save


def arr(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.BatchNorm1d(8)])
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(8, 2))
        self.scale = nn.Parameter(np.ones(2, dtype=np.float32))
        self.register_buffer("step", np.zeros(1, dtype=np.int64))
        self.note = "plain attribute"

    def forward(self, x):
        x = self.act(self.fc1(x))
        for b in self.blocks:
            x = b(x)
        return self.head(x) * self.scale


# -- Parameter and registration ---------------------------------------------------------------
def test_parameter_is_a_tensor_that_requires_grad():
    a = np.ones((2, 3), dtype=np.float32)
    p = nn.Parameter(a)
    assert isinstance(p, sg.Tensor) and p.requires_grad and p.is_leaf
    assert p.data is a  # shares the array, like torch.nn.Parameter
    assert nn.Parameter(sg.tensor([1.0, 2.0])).dtype == np.float32
    assert nn.Parameter([1.0, 2.0]).dtype == np.float32
    assert repr(nn.Parameter([1.0])).startswith("Parameter containing:\ntensor(")
    assert not nn.Parameter(a, requires_grad=False).requires_grad


def test_named_parameters_children_buffers():
    m = MLP()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias",
                     "blocks.1.weight", "blocks.1.bias", "head.1.weight", "head.1.bias"]
    assert len(list(m.parameters())) == 9
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "blocks", "head"]
    assert len(list(m.modules())) == 9
    assert [n for n, _ in m.named_buffers()] == ["step", "blocks.1.running_mean", "blocks.1.running_var",
                                                 "blocks.1.num_batches_tracked"]
    assert m.note == "plain attribute" and "note" not in m._parameters
    assert [n for n, _ in m.named_parameters(recurse=False)] == ["scale"]


def test_shared_parameters_and_modules_are_deduplicated():
    shared = nn.Linear(3, 3)
    m = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias"]
    other = nn.Linear(3, 3)
    other.weight = shared.weight  # tied weights
    both = nn.ModuleList([shared, other])
    assert [n for n, _ in both.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert len(list(nn.Sequential(shared, shared).children())) == 1


def test_setattr_rules():
    lin = nn.Linear(2, 3)
    with pytest.raises(TypeError, match="nn.Parameter"):
        lin.weight = sg.tensor(np.zeros((3, 2), np.float32))
    lin.bias = None
    assert lin.bias is None and [n for n, _ in lin.named_parameters()] == ["weight"]
    assert "bias" not in lin.state_dict()
    lin.extra = nn.Parameter(np.zeros(1, np.float32))
    assert "extra" in dict(lin.named_parameters())
    with pytest.raises(TypeError):
        lin.extra = 5  # a Parameter's name given a plain value: refused, like PyTorch
    del lin.extra
    assert "extra" not in dict(lin.named_parameters())

    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Broken()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lin.nope


def test_train_eval_propagate():
    m = MLP()
    assert all(x.training for x in m.modules())
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())


def test_repr_shows_tree_and_counts():
    m = nn.Sequential(OrderedDict(fc1=nn.Linear(784, 500), act=nn.ReLU(), fc2=nn.Linear(500, 10)))
    text = repr(m)
    assert "(fc1): Linear(in_features=784, out_features=500, bias=True)  # 392,500 params" in text
    assert "(act): ReLU()\n" in text
    assert text.endswith("Total: 397,510 params (397,510 trainable)")
    m.fc2.requires_grad_(False)
    assert repr(m).endswith("(392,500 trainable)")


def test_sequential_and_modulelist_containers():
    s = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    assert len(s) == 3 and isinstance(s[1], nn.Tanh) and isinstance(s[-1], nn.Linear)
    assert len(s[:2]) == 2 and s(sg.randn(5, 2)).shape == (5, 1)
    ml = nn.ModuleList([nn.Identity(), nn.Identity()])
    ml.insert(0, nn.Linear(1, 1))
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias"]
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(lambda x: x)


def test_zero_grad_and_requires_grad_():
    lin = nn.Linear(3, 2)
    lin(sg.randn(4, 3)).sum().backward()
    assert lin.weight.grad is not None
    lin.zero_grad(set_to_none=False)
    assert np.all(lin.weight.grad.data == 0) and lin.weight.grad.shape == (2, 3)
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None
    lin.requires_grad_(False)
    assert not any(p.requires_grad for p in lin.parameters())


def test_to_and_double_keep_parameter_objects():
    m = MLP()
    w = m.fc1.weight
    assert m.to("cpu") is m and m.fc1.weight is w
    m.double()
    assert w.dtype == np.float64 and m.step.dtype == np.int64
    assert m(sg.tensor(arr((3, 4)))).dtype == np.float64
    m.to(sg.float32)
    assert w.dtype == np.float32
    with pytest.raises(ValueError, match="unknown device"):
        m.to("tpu")


def test_apply_visits_every_module():
    seen = []
    MLP().apply(lambda mod: seen.append(type(mod).__name__))
    assert seen[-1] == "MLP" and seen.count("Linear") == 3


# -- state_dict ---------------------------------------------------------------------------------
def test_state_dict_contents_are_copies():
    m = MLP()
    sd = m.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd)[:3] == ["scale", "step", "fc1.weight"]
    assert "blocks.1.running_var" in sd and "blocks.1.num_batches_tracked" in sd
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    before = sd["fc1.weight"].copy()
    m.fc1.weight.data += 1
    np.testing.assert_array_equal(sd["fc1.weight"], before)


def test_non_persistent_buffer_not_saved():
    m = nn.Identity()
    m.register_buffer("cache", np.zeros(2), persistent=False)
    m.register_buffer("kept", np.zeros(2))
    assert list(m.state_dict()) == ["kept"] and len(list(m.buffers())) == 2


def test_state_dict_round_trip_gives_same_outputs():
    sg.manual_seed(1)
    a, b = MLP().eval(), MLP().eval()
    x = sg.randn(5, 4)
    assert not np.allclose(a(x).data, b(x).data)
    assert b.load_state_dict(a.state_dict()) == ([], [])
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_is_in_place():
    m = nn.Linear(3, 2)
    w_obj, w_arr = m.weight, m.weight.data
    view = m.weight.data.reshape(-1)  # e.g. what an optimizer might hold
    new = {"weight": np.full((2, 3), 7.0), "bias": sg.tensor([1.0, 2.0])}
    m.load_state_dict(new)
    assert m.weight is w_obj and m.weight.data is w_arr and m.weight.dtype == np.float32
    assert np.all(view == 7.0)
    np.testing.assert_array_equal(m.bias.data, [1.0, 2.0])


def test_load_state_dict_errors_name_keys_and_shapes():
    m = nn.Linear(3, 2)
    sd = m.state_dict()
    bad = {"weight": np.zeros((3, 2)), "extra.thing": np.zeros(1)}
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(bad)
    msg = str(e.value)
    assert "missing key(s): bias" in msg and "unexpected key(s): extra.thing" in msg
    assert "size mismatch for weight: checkpoint has shape (3, 2), the model has shape (2, 3)" in msg
    np.testing.assert_array_equal(m.weight.data, sd["weight"])  # a failed load changes nothing

    missing, unexpected = m.load_state_dict({"weight": np.ones((2, 3)), "junk": 1}, strict=False)
    assert missing == ["bias"] and unexpected == ["junk"]
    assert np.all(m.weight.data == 1)
    with pytest.raises(RuntimeError, match="size mismatch for bias"):
        m.load_state_dict({"bias": np.zeros(5)}, strict=False)


# -- Linear -------------------------------------------------------------------------------------
def test_linear_init_bounds_and_statistics():
    lin = nn.Linear(400, 300, generator=sg.Generator(0))
    bound = 1 / math.sqrt(400)
    w, b = lin.weight.data, lin.bias.data
    assert w.shape == (300, 400) and b.shape == (300,) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound and abs(w.mean()) < 0.01 * bound
    assert np.abs(w).max() > 0.99 * bound
    again = nn.Linear(400, 300, generator=sg.Generator(0))
    np.testing.assert_array_equal(again.weight.data, w)
    assert nn.Linear(2, 3, bias=False).bias is None
    assert nn.Linear(2, 3, dtype=np.float64).weight.dtype == np.float64


def test_linear_forward_matches_numpy_for_any_batch_shape():
    lin = nn.Linear(4, 3, dtype=np.float64)
    W, b = lin.weight.data, lin.bias.data
    for shape in [(4,), (5, 4), (2, 5, 4)]:
        x = arr(shape)
        np.testing.assert_allclose(lin(sg.tensor(x)).data, x @ W.T + b, rtol=1e-12)
    with pytest.raises(ValueError, match="in_features=4"):
        lin(sg.tensor(arr((5, 3))))


def test_linear_gradcheck_float64():
    x, w, b = arr((5, 4), 1), arr((3, 4), 2), arr(3, 3)
    assert sg.gradcheck(lambda x, w, b: F.linear(x, w, b), (x, w, b))
    assert sg.gradcheck(lambda x, w: F.linear(x, w), (arr((2, 5, 4)), w))
    assert sg.gradcheck(lambda x, w, b: F.linear(x, w, b).tanh(), (arr(4), w, b))
    assert sg.gradgradcheck(lambda x, w, b: F.linear(x, w, b).tanh(), (x, w, b))


def test_linear_weight_gradient_is_contiguous_and_right():
    lin = nn.Linear(4, 3, dtype=np.float64)
    x = arr((6, 4))
    lin(sg.tensor(x)).sum().backward()
    g = lin.weight.grad.data
    assert g.flags.c_contiguous  # fast optimizer updates
    np.testing.assert_allclose(g, np.ones((6, 3)).T @ x)
    np.testing.assert_allclose(lin.bias.grad.data, np.full(3, 6.0))


# -- MaskedLinear -------------------------------------------------------------------------------
def test_masked_linear_zero_gradient_and_state():
    mask = (np.random.default_rng(0).random((3, 5)) > 0.5).astype(np.float32)
    ml = nn.MaskedLinear(5, 3, mask)
    x = sg.randn(7, 5)
    np.testing.assert_allclose(ml(x).data, x.data @ (ml.weight.data * mask).T + ml.bias.data, rtol=1e-5)
    (ml(x) ** 2).sum().backward()
    g = ml.weight.grad.data
    assert np.all(g[mask == 0] == 0.0) and np.all(g[mask == 1] != 0)
    sd = ml.state_dict()
    assert list(sd) == ["weight", "bias", "mask"] and [n for n, _ in ml.named_parameters()] == ["weight", "bias"]
    np.testing.assert_array_equal(sd["mask"], mask)

    buf = ml.mask
    ml.set_mask(1 - mask)
    assert ml.mask is buf and np.array_equal(ml.mask.data, 1 - mask)
    other = nn.MaskedLinear(5, 3, np.ones((3, 5)))
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.mask.data, mask)
    with pytest.raises(ValueError, match="shape"):
        ml.set_mask(np.ones((5, 3)))
    with pytest.raises(ValueError, match="0s and 1s"):
        ml.set_mask(np.full((3, 5), 0.5))


def test_masked_linear_gradcheck():
    mask = np.tril(np.ones((4, 4)))
    assert sg.gradcheck(lambda x, w, b: F.linear(x, w * sg.tensor(mask), b), (arr((3, 4)), arr((4, 4), 1), arr(4, 2)))


# -- Dropout ------------------------------------------------------------------------------------
def test_dropout_train_scaling_and_eval_identity():
    d = nn.Dropout(0.25, generator=sg.Generator(0))
    x = sg.ones(200, 500)
    y = d(x).data
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01 and abs(y.mean() - 1) < 0.02
    xr = sg.randn(10, 10, requires_grad=True)
    out = d(xr)
    out.sum().backward()
    np.testing.assert_allclose(xr.grad.data, out.data / xr.data, rtol=1e-5)  # grad = mask / (1 - p)
    d.eval()
    assert d(x) is x
    np.testing.assert_array_equal(nn.Dropout(0.3, generator=sg.Generator(5))(x).data,
                                  F.dropout(x, 0.3, True, sg.Generator(5)).data)
    assert np.all(F.dropout(x, 1.0).data == 0) and F.dropout(x, 0.0) is x
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


# -- BatchNorm1d --------------------------------------------------------------------------------
def test_batchnorm_train_output_and_running_stats_match_numpy():
    bn = nn.BatchNorm1d(3, momentum=0.1)
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, -1.0, 3.0]
    rm, rv = np.zeros(3), np.ones(3)
    for seed in range(3):
        x = arr((16, 3), seed) * 3 + 1
        y = bn(sg.tensor(x.astype(np.float32))).data
        mu, var = x.mean(0), x.var(0)
        ref = (x - mu) / np.sqrt(var + 1e-5) * bn.weight.data + bn.bias.data
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
        rm = 0.9 * rm + 0.1 * mu
        rv = 0.9 * rv + 0.1 * x.var(0, ddof=1)  # unbiased, like PyTorch
    np.testing.assert_allclose(bn.running_mean.data, rm, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.data, rv, rtol=1e-5)
    assert int(bn.num_batches_tracked.data) == 3

    bn.eval()
    x = arr((4, 3), 9).astype(np.float32)
    ref = (x - rm) / np.sqrt(rv + 1e-5) * bn.weight.data + bn.bias.data
    np.testing.assert_allclose(bn(sg.tensor(x)).data, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.data, rm, rtol=1e-5)  # eval leaves stats alone
    assert {"running_mean", "running_var", "num_batches_tracked"} <= set(bn.state_dict())


def test_batchnorm_3d_input_cumulative_momentum_and_errors():
    bn = nn.BatchNorm1d(2, momentum=None, affine=False)
    xs = [arr((4, 2, 5), s) for s in range(2)]
    for x in xs:
        y = bn(sg.tensor(x)).data
        ref = (x - x.mean((0, 2), keepdims=True)) / np.sqrt(x.var((0, 2), keepdims=True) + 1e-5)
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bn.running_mean.data, np.mean([x.mean((0, 2)) for x in xs], 0), rtol=1e-5)
    assert list(bn.parameters()) == []
    with pytest.raises(ValueError, match="more than 1 value"):
        bn(sg.randn(1, 2))
    with pytest.raises(ValueError, match="BatchNorm1d"):
        bn(sg.randn(4, 3))
    free = nn.BatchNorm1d(2, track_running_stats=False).eval()
    y = free(sg.tensor(xs[0][:, :, 0])).data  # no running stats: batch statistics even in eval
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-6)
    assert "running_mean" not in free.state_dict()


def test_batchnorm_gradcheck_float64():
    x, w, b = arr((6, 3)), arr(3, 1), arr(3, 2)
    assert sg.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (x, w, b))
    assert sg.gradcheck(lambda x: F.batch_norm(x, None, None, training=True), (arr((4, 2, 3)),))
    rm, rv = np.zeros(3), np.ones(3) * 2
    assert sg.gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), (x, w, b))


# -- LayerNorm ----------------------------------------------------------------------------------
def test_layernorm_matches_numpy_and_gradcheck():
    ln = nn.LayerNorm(5, dtype=np.float64)
    ln.weight.data[...] = arr(5, 1)
    ln.bias.data[...] = arr(5, 2)
    x = arr((3, 4, 5))
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * ln.weight.data + ln.bias.data
    np.testing.assert_allclose(ln(sg.tensor(x)).data, ref, rtol=1e-10)
    assert sg.gradcheck(lambda x, w, b: F.layer_norm(x, 5, w, b), (arr((3, 5)), arr(5, 1), arr(5, 2)))
    assert sg.gradcheck(lambda x: F.layer_norm(x, (2, 3)), (arr((2, 2, 3)),))
    assert nn.LayerNorm((2, 3), elementwise_affine=False)(sg.randn(4, 2, 3)).shape == (4, 2, 3)
    with pytest.raises(ValueError, match="normalized_shape"):
        ln(sg.randn(3, 4))


# -- activations and F --------------------------------------------------------------------------
def test_activation_modules_and_functional_exports():
    x = sg.tensor(np.linspace(-3, 3, 13))
    d = x.data
    np.testing.assert_allclose(nn.ReLU()(x).data, np.maximum(d, 0))
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(x).data, np.where(d > 0, d, 0.2 * d))
    np.testing.assert_allclose(nn.ELU(0.5)(x).data, np.where(d > 0, d, 0.5 * np.expm1(d)))
    np.testing.assert_allclose(nn.Tanh()(x).data, np.tanh(d))
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp(-d)))
    np.testing.assert_allclose(nn.Softplus()(x).data, np.log1p(np.exp(d)))
    np.testing.assert_allclose(nn.Softplus(beta=2)(x).data, np.log1p(np.exp(2 * d)) / 2)
    assert nn.Flatten()(sg.randn(2, 3, 4)).shape == (2, 12) and nn.Identity()(x) is x
    for name in ["relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus", "logsigmoid", "softmax",
                 "log_softmax", "mse_loss", "cross_entropy", "binary_cross_entropy",
                 "binary_cross_entropy_with_logits", "gaussian_nll", "linear", "dropout", "batch_norm",
                 "layer_norm"]:
        assert callable(getattr(F, name))


# -- init ---------------------------------------------------------------------------------------
def test_init_statistics_and_in_place():
    g = sg.Generator(0)
    t = nn.Parameter(np.empty((300, 200), dtype=np.float32))
    a = t.data
    assert init.uniform_(t, -2, 3, generator=g) is t and t.data is a
    assert t.data.min() >= -2 and t.data.max() <= 3 and abs(t.data.mean() - 0.5) < 0.02
    init.normal_(t, 1.0, 2.0, generator=g)
    assert abs(t.data.mean() - 1) < 0.02 and abs(t.data.std() - 2) < 0.02
    init.xavier_uniform_(t, generator=g)
    bound = math.sqrt(6 / 500)
    assert np.abs(t.data).max() <= bound and abs(t.data.std() - bound / math.sqrt(3)) < 0.01 * bound
    init.xavier_normal_(t, gain=2.0, generator=g)
    assert abs(t.data.std() - 2 * math.sqrt(2 / 500)) < 0.02 * 2 * math.sqrt(2 / 500)
    init.kaiming_normal_(t, nonlinearity="relu", generator=g)
    assert abs(t.data.std() - math.sqrt(2 / 200)) < 0.02 * math.sqrt(2 / 200)
    init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g)
    assert abs(t.data.std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    init.kaiming_uniform_(t, a=0, generator=g)  # leaky_relu with slope 0 = relu: bound sqrt(6/fan_in)
    assert np.abs(t.data).max() <= math.sqrt(6 / 200) and np.abs(t.data).max() > 0.99 * math.sqrt(6 / 200)
    init.zeros_(t)
    assert np.all(t.data == 0)
    init.ones_(t)
    assert np.all(t.data == 1)
    init.constant_(t, 0.5)
    assert np.all(t.data == 0.5) and t.data is a and t.dtype == np.float32
    assert np.array_equal(init.normal_(np.empty(4), generator=sg.Generator(3)),
                          init.normal_(np.empty(4), generator=sg.Generator(3)))


@pytest.mark.parametrize("shape", [(30, 20), (20, 30), (8, 3, 5, 5), (1, 1)])
def test_orthogonal_init(shape):
    t = nn.Parameter(np.empty(shape, dtype=np.float64))
    assert init.orthogonal_(t, gain=2.0, generator=sg.Generator(1)) is t
    m = t.data.reshape(shape[0], -1)
    small = min(m.shape)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m     # orthonormal rows, or columns
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-10)
    again = init.orthogonal_(np.empty(shape), gain=2.0, generator=sg.Generator(1))
    np.testing.assert_array_equal(again, t.data)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.orthogonal_(np.empty(3))


def test_orthogonal_init_is_not_biased_to_positive_diagonals():
    """Without the sign correction QR returns R with a positive diagonal, and Q's distribution is skewed."""
    g = sg.Generator(2)
    diag = np.array([np.diag(init.orthogonal_(np.empty((3, 3)), generator=g)) for _ in range(2000)])
    assert np.abs(diag.mean(0)).max() < 0.05


def test_gain_and_fans():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / 1.0001))
    assert init.calculate_gain("sigmoid") == 1 and init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError):
        init.calculate_gain("swish")
    assert init._calculate_fan_in_and_fan_out(sg.zeros(8, 3, 5, 5)) == (75, 200)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init._calculate_fan_in_and_fan_out(sg.zeros(4))


# -- save / load --------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    model = MLP()
    obj = {
        "model": model.state_dict(),
        "optim": {"state": {0: {"m": np.arange(3, dtype=np.float64)}}, "lr": 1e-3, "betas": (0.9, 0.999)},
        "epoch": 3, "name": "vae", "done": False, "nothing": None, "nan": float("nan"),
        "list": [np.int8(-3), np.float16(1.5), sg.tensor([1.0, 2.0]), [np.zeros((0, 2), np.uint8)]],
        "bools": np.array([True, False]), "text": np.array(["a", "bc"]),
    }
    path = tmp_path / "ckpt.npz"
    save(obj, path)
    back = load(path)
    assert list(back) == list(obj) and isinstance(back["model"], OrderedDict)
    for k, v in obj["model"].items():
        assert back["model"][k].dtype == v.dtype and np.array_equal(back["model"][k], v)
    assert back["optim"]["state"][0]["m"].dtype == np.float64 and 0 in back["optim"]["state"]
    assert back["optim"]["lr"] == 1e-3 and back["optim"]["betas"] == (0.9, 0.999)
    assert (back["epoch"], back["name"], back["done"], back["nothing"]) == (3, "vae", False, None)
    assert math.isnan(back["nan"])
    i8, f16, t, (empty,) = back["list"]
    assert type(i8) is np.int8 and i8 == -3 and type(f16) is np.float16 and f16 == 1.5
    assert isinstance(t, np.ndarray) and t.dtype == np.float32  # Tensors come back as arrays
    assert empty.shape == (0, 2) and empty.dtype == np.uint8
    assert back["bools"].dtype == np.bool_ and list(back["text"]) == ["a", "bc"]
    fresh = MLP()
    fresh.load_state_dict(back["model"])
    np.testing.assert_array_equal(fresh.fc1.weight.data, model.fc1.weight.data)
    assert load(str(path))["epoch"] == 3  # str paths too
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temp file left behind


def test_save_refuses_unsupported_objects(tmp_path):
    with pytest.raises(TypeError, match=r"obj\['model'\].*state_dict"):
        save({"model": nn.Linear(1, 1)}, tmp_path / "x")
    with pytest.raises(TypeError, match="dtype object"):
        save([np.array([{}, 1], dtype=object)], tmp_path / "x")
    with pytest.raises(TypeError, match="key"):
        save({(1, 2): 3}, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"epoch": 1}, path)

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")  # some bytes, then the disk "fails"
        raise OSError("disk full")

    monkeypatch.setattr(serialization.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save({"epoch": 2}, path)
    monkeypatch.undo()
    assert load(path) == {"epoch": 1}  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(serialization.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        save({"epoch": 3}, tmp_path / "new.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_load_corrupt_or_truncated_file_names_the_path(tmp_path):
    path = tmp_path / "ckpt.npz"
    save({"w": np.arange(1000.0)}, path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.npz"):
        load(truncated)
    flipped = bytearray(data)
    flipped[200:210] = b"\xff" * 10  # inside the array payload: a CRC error
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt.npz"):
        load(corrupt)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(2))
    with pytest.raises(CheckpointError, match="not written by scratchgen.save"):
        load(plain)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load(tmp_path / "missing.npz")


_unpickled = []


class _Exploit:
    def __reduce__(self):
        return (_unpickled.append, ("code ran",))


def test_load_refuses_pickle(tmp_path):
    path = tmp_path / "evil.npz"
    with open(path, "wb") as f:
        pickle.dump({"model": _Exploit()}, f)
    with pytest.raises(CheckpointError, match="pickle"):
        load(path)
    obj_npz = tmp_path / "obj.npz"
    structure = json.dumps({"format": "scratchgen-checkpoint", "version": 1, "root": {"a": "a0"}})
    np.savez(obj_npz, __scratchgen_structure__=np.array(structure), a0=np.array([_Exploit()], dtype=object))
    with pytest.raises(CheckpointError, match="pickle"):
        load(obj_npz)
    assert _unpickled == []
    assert os.path.exists(path)


def test_matches_pytorch_when_available():
    torch = pytest.importorskip("torch")
    x = arr((8, 3, 4))
    w, b = arr(3, 1), arr(3, 2)
    # BatchNorm1d: outputs, input/weight gradients and running statistics
    bn, tbn = nn.BatchNorm1d(3, dtype=np.float64), torch.nn.BatchNorm1d(3, dtype=torch.float64)
    bn.load_state_dict({k: v.numpy() for k, v in tbn.state_dict().items()})
    bn.weight.data[...] = w
    with torch.no_grad():
        tbn.weight[...] = torch.tensor(w)
    xs, xt = sg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    for _ in range(2):
        (bn(xs) ** 3).sum().backward()
        (tbn(xt) ** 3).sum().backward()
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bn.weight.grad.data, tbn.weight.grad.numpy(), rtol=1e-8)
    for k, v in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[k], v.numpy(), rtol=1e-10)
    bn.eval(), tbn.eval()
    np.testing.assert_allclose(bn(sg.tensor(x)).data, tbn(torch.tensor(x)).detach().numpy(), rtol=1e-10)
    # LayerNorm and Linear
    tw = torch.tensor(arr((5, 4), 3))
    got = F.layer_norm(F.linear(sg.tensor(x), sg.tensor(tw.numpy()), sg.tensor(arr(5, 4))), 5)
    ref = torch.nn.functional.layer_norm(torch.nn.functional.linear(torch.tensor(x), tw, torch.tensor(arr(5, 4))), (5,))
    np.testing.assert_allclose(got.data, ref.numpy(), rtol=1e-10, atol=1e-12)
    for nl, p in [("relu", None), ("leaky_relu", 0.3), ("tanh", None), ("selu", None)]:
        assert init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))


def test_more_activations_and_losses_match_their_definitions():
    from scipy.special import expit
    from scratchgen.nn import functional as F
    from scratchgen.testing import check_gradients
    x = np.array([[-2.0, -0.3, 0.4, 1.7]])
    np.testing.assert_allclose(nn.SELU()(sg.tensor(x)).numpy(),
                               1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)))
    np.testing.assert_allclose(nn.Hardtanh(-0.5, 0.5)(sg.tensor(x)).numpy(), np.clip(x, -0.5, 0.5))
    np.testing.assert_allclose(nn.Softsign()(sg.tensor(x)).numpy(), x / (1 + np.abs(x)))
    np.testing.assert_allclose(nn.GLU()(sg.tensor(x)).numpy(), x[:, :2] * expit(x[:, 2:]))
    for fn in (F.selu, F.softsign, F.glu):
        check_gradients(fn, x)
    logp = sg.log_softmax(sg.tensor(x), axis=1)
    labels = np.array([2])
    assert nn.NLLLoss()(logp, labels).item() == pytest.approx(sg.cross_entropy(sg.tensor(x), labels).item())
    a, b = sg.tensor(np.array([1.0, 0.2])), sg.tensor(np.array([0.5, 0.4]))
    np.testing.assert_allclose(F.margin_ranking_loss(a, b, np.array([1.0, 1.0]), margin=0.3,
                                                     reduction="none").numpy(), [0.0, 0.5])
    np.testing.assert_allclose(F.hinge_embedding_loss(a, np.array([1.0, -1.0]), reduction="none").numpy(),
                               [1.0, 0.8])
