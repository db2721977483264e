"""PyTorch habits work: the snippets a PyTorch user types, and a docs table that cannot drift."""
import os

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn, torch_names


def test_dim_and_keepdim_beside_axis_and_keepdims():
    x = sg.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(x.sum(dim=1, keepdim=True).numpy(), x.sum(axis=1, keepdims=True).numpy())
    np.testing.assert_array_equal(sg.mean(x, dim=0).numpy(), [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(sg.cat([x, x], dim=0).numpy(), np.concatenate([x.numpy()] * 2))
    np.testing.assert_allclose(x.softmax(dim=0).numpy().sum(0), 1.0)
    with pytest.raises(TypeError, match="not both"):
        x.sum(dim=0, axis=0)


def test_max_with_dim_returns_values_and_indices_like_torch():
    x = sg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    values, indices = x.max(dim=1)
    np.testing.assert_array_equal(values.numpy(), [5.0, 7.0])
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    assert x.min(dim=0, keepdim=True).indices.shape == (1, 3)
    np.testing.assert_array_equal(x.max(axis=1).numpy(), [5.0, 7.0])  # NumPy's / torch.amax


def test_var_and_std_with_dim_use_torchs_unbiased_default():
    x = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 3.0]])
    t = sg.tensor(x)
    np.testing.assert_allclose(t.var(dim=1).numpy(), x.var(axis=1, ddof=1))
    np.testing.assert_allclose(t.std(dim=1, unbiased=False).numpy(), x.std(axis=1))
    np.testing.assert_allclose(t.var(axis=1).numpy(), x.var(axis=1))


def test_size_numel_to_and_constructors():
    t = sg.zeros(2, 3)
    assert t.size() == (2, 3) and t.size(1) == 3 and t.size == 6 and t.numel() == 6
    assert t.to(sg.float64).dtype == np.float64 and t.to("cpu") is t
    with pytest.raises(TypeError, match="device"):
        t.to("gpu0")
    assert sg.randn_like(t).shape == (2, 3) and sg.rand_like(t).dtype == np.float32
    assert sg.full_like(t, 7.0).numpy().tolist() == [[7.0] * 3] * 2
    a = np.ones(3)
    shared = sg.from_numpy(a)
    a[0] = 5
    assert shared.numpy()[0] == 5


def test_loss_modules_match_the_functions():
    rng = np.random.default_rng(0)
    logits = sg.tensor(rng.normal(size=(4, 3)))
    labels = np.array([0, 2, 1, 1])
    assert nn.CrossEntropyLoss()(logits, labels).item() == sg.cross_entropy(logits, labels).item()
    target = sg.tensor((rng.random((4, 3)) > 0.5).astype(np.float64))
    assert nn.BCEWithLogitsLoss(reduction="sum")(logits, target).item() == pytest.approx(
        sg.binary_cross_entropy_with_logits(logits, target, reduction="sum").item())
    assert nn.MSELoss()(logits, target).item() == pytest.approx(sg.mse_loss(logits, target).item())
    assert nn.BCELoss()(logits.sigmoid(), target).item() == pytest.approx(
        sg.binary_cross_entropy(logits.sigmoid(), target).item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


def test_tensor_dataset_and_a_dataloader_of_tuples():
    x, y = sg.tensor(np.arange(10.0).reshape(5, 2)), np.arange(5)
    batches = list(sg.data.DataLoader(sg.data.TensorDataset(x, y), batch_size=2))
    assert len(batches) == 3 and all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    (only,) = next(iter(sg.data.DataLoader(np.zeros((4, 2)), batch_size=4)))
    assert only.shape == (4, 2)


def test_the_docs_table_is_generated_from_the_code():
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "pytorch_names.md")
    with open(path) as f:
        assert f.read() == torch_names.markdown(), "run: python -m scratchgen.torch_names > docs/pytorch_names.md"


def test_every_scratchgen_name_in_the_table_exists():
    for _, ours, _ in torch_names.TABLE:
        for name in ours.replace("(", " ").replace(")", " ").replace("/", " ").split():
            if name.startswith("sg.") and "=" not in name:
                obj = sg
                for part in name.split(".")[1:]:
                    obj = getattr(obj, part)
            elif name.startswith("nn."):
                assert hasattr(nn, name[3:]), name
