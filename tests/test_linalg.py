"""sg.linalg: NumPy's values, and first- and second-order gradient checks in float64 on
Hypothesis-drawn well-conditioned matrices (symmetric positive definite where the op needs it)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scratchgen as sg
from scratchgen import linalg
from scratchgen.testing import check_gradients

sizes = st.integers(1, 4)
seeds = st.integers(0, 10_000)


def well_conditioned(n, seed, batch=()):
    rng = np.random.default_rng(seed)
    return rng.normal(size=batch + (n, n)) + 3 * np.eye(n)


def spd_of(x):
    """An SPD matrix from any square x, through differentiable ops (so checks see every entry)."""
    n = x.shape[-1]
    return x @ x.mT + sg.tensor(np.eye(n) * n)


@settings(max_examples=20, deadline=None)
@given(n=sizes, seed=seeds)
def test_inv_solve_det_slogdet(n, seed):
    a = well_conditioned(n, seed)
    b = np.random.default_rng(seed + 1).normal(size=(n, 2))
    np.testing.assert_allclose(linalg.inv(sg.tensor(a)).numpy(), np.linalg.inv(a), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(linalg.solve(sg.tensor(a), sg.tensor(b)).numpy(), np.linalg.solve(a, b), atol=1e-10)
    sign, logabs = linalg.slogdet(sg.tensor(a))
    np.testing.assert_allclose((sign.numpy(), logabs.numpy()), np.linalg.slogdet(a), atol=1e-10)
    check_gradients(linalg.inv, a)
    check_gradients(linalg.solve, a, b)
    check_gradients(lambda m, v: linalg.solve(m, v[:, 0]), a, b)
    check_gradients(lambda m: linalg.slogdet(m)[1], a)
    check_gradients(linalg.det, a)


def test_batched_and_singular_cases():
    a = well_conditioned(3, 1, batch=(2,))
    check_gradients(lambda m: linalg.slogdet(m)[1], a)
    with pytest.raises(np.linalg.LinAlgError):
        linalg.inv(sg.tensor(np.ones((2, 2))))


@settings(max_examples=20, deadline=None)
@given(n=sizes, seed=seeds)
def test_cholesky(n, seed):
    x = np.random.default_rng(seed).normal(size=(n, n))
    spd = x @ x.T + n * np.eye(n)
    np.testing.assert_allclose(linalg.cholesky(sg.tensor(spd)).numpy(), np.linalg.cholesky(spd), atol=1e-10)
    check_gradients(lambda m: linalg.cholesky(spd_of(m)), x)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 4), seed=seeds)
def test_eigh_with_distinct_eigenvalues(n, seed):
    x = np.random.default_rng(seed).normal(size=(n, n))
    sym = x + x.T + np.diag(np.arange(n) * 3.0)
    w = np.linalg.eigvalsh(sym)
    if np.min(np.diff(w)) < 0.3:
        return  # near-degenerate: eigh's gradient is documented to blow up there
    ws, vs = linalg.eigh(sg.tensor(sym))
    np.testing.assert_allclose(ws.numpy(), w, atol=1e-10)

    def sym_of(m):
        return (m + m.mT) * 0.5 + sg.tensor(np.diag(np.arange(n) * 3.0))
    check_gradients(lambda m: linalg.eigh(sym_of(m))[0], x)
    # eigenvectors are defined up to sign: check a sign-invariant function of them
    check_gradients(lambda m: (linalg.eigh(sym_of(m))[1] ** 2) * linalg.eigh(sym_of(m))[0], x)


def test_norm_and_the_jacobian_and_hessian_helpers():
    v = np.array([3.0, 4.0])
    assert linalg.norm(sg.tensor(v)).item() == 5.0 and linalg.norm(sg.tensor(v), ord=1).item() == 7.0
    x = sg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    jac = linalg.jacobian(lambda t: sg.stack([t[0] * t[1], t[0] ** 2]), x)
    np.testing.assert_allclose(jac.numpy(), [[2.0, 1.0], [2.0, 0.0]])
    hess = linalg.hessian(lambda t: (t[0] ** 2) * t[1], x)
    np.testing.assert_allclose(hess.numpy(), [[4.0, 2.0], [2.0, 0.0]])
    with pytest.raises(NotImplementedError):
        linalg.norm(sg.tensor(np.eye(2)), ord="nuc")


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 4), n=st.integers(1, 4), seed=seeds)
def test_svd_with_distinct_singular_values(m, n, seed):
    x = np.random.default_rng(seed).normal(size=(m, n))
    s = np.linalg.svd(x, compute_uv=False)
    if s.min() < 0.2 or (len(s) > 1 and np.min(-np.diff(s)) < 0.2):
        return  # near-degenerate: documented to blow up there
    u, sv, vh = linalg.svd(sg.tensor(x))
    np.testing.assert_allclose((u.numpy() * sv.numpy()) @ vh.numpy(), x, atol=1e-10)
    np.testing.assert_allclose(sv.numpy(), s, atol=1e-10)
    check_gradients(lambda t: linalg.svd(t)[1], x)
    # singular vectors are defined up to a shared sign: check sign-invariant functions
    check_gradients(lambda t: linalg.svd(t)[0] * linalg.svd(t)[0], x)
    check_gradients(lambda t: linalg.svd(t)[2] ** 2 * 3, x)
    np.testing.assert_allclose(linalg.pinv(sg.tensor(x)).numpy(), np.linalg.pinv(x), atol=1e-9)


def test_qr_and_lu_reconstruct():
    a = well_conditioned(3, 4)
    q, r = linalg.qr(sg.tensor(a))
    np.testing.assert_allclose(q.numpy() @ r.numpy(), a, atol=1e-12)
    p, l_, u = linalg.lu(sg.tensor(a))
    np.testing.assert_allclose(p.numpy() @ l_.numpy() @ u.numpy(), a, atol=1e-12)
