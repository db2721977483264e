"""sg.optim: update rules vs. their equations, Numba vs. NumPy kernels, convergence, state dicts,
schedulers, gradient clipping, zero_grad, param groups, and updates in place on the user's own
parameter arrays (never rebound), whatever their layout."""
import contextlib
import io
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.kernels import force_impl, optim_step
from scratchgen.optim import lr_scheduler as sched
from scratchgen.tensor import Tensor

# ---------------------------------------------------------------------------------------------------------
# (1) Each rule against its equations, on f(x) = 0.5 x^T A x - b^T x, gradients from the engine.
# ---------------------------------------------------------------------------------------------------------
_rng = np.random.default_rng(0)
_M = _rng.standard_normal((4, 4))
A = _M @ _M.T + 4 * np.eye(4)
B = _rng.standard_normal(4)
X0 = _rng.standard_normal(4)
STEPS = 5


def quad_grad(x):
    return A @ x - B


def engine_trajectory(make_opt, steps=STEPS, x0=X0):
    x = sg.tensor(x0.copy(), requires_grad=True)
    opt = make_opt([x])
    At, Bt = sg.tensor(A), sg.tensor(B)
    traj = []
    for _ in range(steps):
        f = 0.5 * (x * (At @ x)).sum() - (Bt * x).sum()
        opt.zero_grad()
        f.backward()
        opt.step()
        traj.append(x.data.copy())
    return np.array(traj)


def sgd_equations(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    x, b, traj = X0.copy(), None, []
    for t in range(1, STEPS + 1):
        g = quad_grad(x) + weight_decay * x
        if momentum:
            b = g if t == 1 else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        x = x - lr * g
        traj.append(x)
    return np.array(traj)


def rmsprop_equations(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                      momentum_from=1, steps=STEPS):
    x, v, gbar, b, traj = X0.copy(), np.zeros(4), np.zeros(4), np.zeros(4), []
    for t in range(1, steps + 1):
        g = quad_grad(x) + weight_decay * x
        v = alpha * v + (1 - alpha) * g ** 2
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
        denom = np.sqrt(v - gbar ** 2 if centered else v) + eps
        if momentum and t >= momentum_from:   # the buffer starts at zero when momentum is switched on
            b = momentum * b + g / denom
            x = x - lr * b
        else:
            x = x - lr * g / denom
        traj.append(x)
    return np.array(traj)


def adagrad_equations(lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    x, s, traj = X0.copy(), np.full(4, initial_accumulator_value), []
    for t in range(1, STEPS + 1):
        g = quad_grad(x) + weight_decay * x
        s = s + g ** 2
        x = x - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
        traj.append(x)
    return np.array(traj)


def adam_equations(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, bias_correction=True,
                   decoupled=False):
    (b1, b2), x, m, v, vmax, traj = betas, X0.copy(), np.zeros(4), np.zeros(4), np.zeros(4), []
    for t in range(1, STEPS + 1):
        g = quad_grad(x)
        if decoupled:
            x = x * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        vv = vmax if amsgrad else v
        if bias_correction:  # the paper's form: mhat / (sqrt(vhat) + eps)
            x = x - lr * (m / (1 - b1 ** t)) / (np.sqrt(vv / (1 - b2 ** t)) + eps)
        else:
            x = x - lr * m / (np.sqrt(vv) + eps)
        traj.append(x)
    return np.array(traj)


RULES = {
    "sgd": (lambda p: optim.SGD(p, lr=0.05), lambda: sgd_equations(0.05)),
    "sgd_momentum": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1),
                     lambda: sgd_equations(0.05, momentum=0.9, dampening=0.1)),
    "sgd_nesterov": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                     lambda: sgd_equations(0.05, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": (lambda p: optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1),
                         lambda: sgd_equations(0.05, momentum=0.5, weight_decay=0.1)),
    "rmsprop": (lambda p: optim.RMSProp(p, lr=0.01), lambda: rmsprop_equations(0.01)),
    "rmsprop_centered": (lambda p: optim.RMSprop(p, lr=0.01, centered=True, weight_decay=0.1),
                         lambda: rmsprop_equations(0.01, centered=True, weight_decay=0.1)),
    "rmsprop_momentum": (lambda p: optim.RMSProp(p, lr=0.01, alpha=0.9, momentum=0.8),
                         lambda: rmsprop_equations(0.01, alpha=0.9, momentum=0.8)),
    "rmsprop_centered_momentum": (lambda p: optim.RMSProp(p, lr=0.01, centered=True, momentum=0.8),
                                  lambda: rmsprop_equations(0.01, centered=True, momentum=0.8)),
    "adagrad": (lambda p: optim.Adagrad(p, lr=0.5), lambda: adagrad_equations(0.5)),
    "adagrad_decays": (lambda p: optim.Adagrad(p, lr=0.5, lr_decay=0.3, weight_decay=0.1, initial_accumulator_value=2.0),
                       lambda: adagrad_equations(0.5, lr_decay=0.3, weight_decay=0.1, initial_accumulator_value=2.0)),
    "adam": (lambda p: optim.Adam(p, lr=0.1), lambda: adam_equations(0.1)),
    "adam_no_bias_correction": (lambda p: optim.Adam(p, lr=0.1, bias_correction=False),
                                lambda: adam_equations(0.1, bias_correction=False)),
    "adam_weight_decay": (lambda p: optim.Adam(p, lr=0.1, betas=(0.8, 0.9), weight_decay=0.2),
                          lambda: adam_equations(0.1, betas=(0.8, 0.9), weight_decay=0.2)),
    "adam_amsgrad": (lambda p: optim.Adam(p, lr=0.1, betas=(0.5, 0.6), amsgrad=True),
                     lambda: adam_equations(0.1, betas=(0.5, 0.6), amsgrad=True)),
    "adamw": (lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.3),
              lambda: adam_equations(0.1, weight_decay=0.3, decoupled=True)),
    "adamw_amsgrad": (lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.3, amsgrad=True),
                      lambda: adam_equations(0.1, weight_decay=0.3, decoupled=True, amsgrad=True)),
}


@pytest.mark.parametrize("impl", [None, "numpy"])
@pytest.mark.parametrize("name", list(RULES))
def test_rule_matches_equations(name, impl):
    make_opt, equations = RULES[name]
    with force_impl(impl, "optim") if impl else contextlib.nullcontext():
        got = engine_trajectory(make_opt)
    want = equations()
    assert not np.allclose(got[-1], X0)  # it moved
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


def test_rmsprop_momentum_switched_on_mid_run_starts_from_a_zero_buffer():
    """As the NICE authors' schedule (momentum 0, then 0.5): setting param_groups' momentum later works."""
    x = sg.tensor(X0.copy(), requires_grad=True)
    opt = optim.RMSprop([x], lr=0.01, alpha=0.95, eps=1e-2)
    At, Bt = sg.tensor(A), sg.tensor(B)
    traj = []
    for t in range(1, 9):
        if t == 4:
            opt.param_groups[0]["momentum"] = 0.5
        f = 0.5 * (x * (At @ x)).sum() - (Bt * x).sum()
        opt.zero_grad()
        f.backward()
        opt.step()
        traj.append(x.data.copy())
    want = rmsprop_equations(0.01, alpha=0.95, eps=1e-2, momentum=0.5, momentum_from=4, steps=8)
    np.testing.assert_allclose(np.array(traj), want, rtol=1e-11, atol=1e-13)
    assert not np.allclose(want, rmsprop_equations(0.01, alpha=0.95, eps=1e-2, steps=8))   # momentum mattered
    assert "momentum_buffer" in opt.state_dict()["state"]["0"]


# ---------------------------------------------------------------------------------------------------------
# (2) Numba kernels == NumPy reference kernels on random data (serial and parallel sizes, both dtypes).
# ---------------------------------------------------------------------------------------------------------
KERNEL_CASES = [
    ("adam", dict(lr=1e-2, weight_decay=0.1, step=3)),
    ("adam", dict(lr=1e-2, weight_decay=0.1, step=7, decoupled=True, amsgrad=True)),
    ("adam", dict(lr=1e-2, step=2, bias_correction=False)),
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, first=True)),
    ("rmsprop", dict(lr=1e-2, weight_decay=0.1)),
    ("rmsprop", dict(lr=1e-2, centered=True, momentum=0.9)),
    ("adagrad", dict(lr=1e-2, lr_decay=0.1, weight_decay=0.1, step=4)),
]


def _kernel_arrays(rule, n, dtype, rng):
    r = lambda: rng.standard_normal(n).astype(dtype)  # noqa: E731
    p, g = r(), r()
    if rule == "adam":  # m, v, vmax (v >= 0)
        return [p, g, r(), r() ** 2, r() ** 2]
    if rule == "sgd":
        return [p, g, r()]
    if rule == "adagrad":
        return [p, g, r() ** 2]
    gbar = r()
    return [p, g, gbar ** 2 + r() ** 2, gbar, r()]  # centered needs square_avg >= grad_avg^2


@pytest.mark.parametrize("n,dtype", [(1000, np.float64), (1000, np.float32),
                                     (optim_step.PARALLEL_MIN + 17, np.float32),
                                     (optim_step.PARALLEL_MIN + 17, np.float64)])
@pytest.mark.parametrize("rule,kw", KERNEL_CASES)
def test_numba_matches_numpy_reference(rule, kw, n, dtype):
    fn = getattr(optim_step, rule)
    a = _kernel_arrays(rule, n, dtype, np.random.default_rng(1))
    b = [x.copy() for x in a]
    fn(*a, **kw, impl="numba")
    fn(*b, **kw, impl="numpy")
    for x, y in zip(a, b):
        assert x.dtype == dtype
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make_opt", [lambda p: optim.Adam(p, lr=1e-2, amsgrad=True, weight_decay=0.1),
                                      lambda p: optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
                                      lambda p: optim.RMSProp(p, lr=1e-2, centered=True, momentum=0.5)])
def test_optimizer_numba_matches_numpy_path(make_opt):
    shapes = [(300, 250), (200,), (7, 3, 5), (), (70000,)]
    rng = np.random.default_rng(2)
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    finals = []
    for impl in ("numba", "numpy"):
        with force_impl(impl, "optim"):
            ps = [sg.tensor(x, requires_grad=True) for x in init]
            opt = make_opt(ps)
            for gs in grads:
                for p, g in zip(ps, gs):
                    p.grad = Tensor(g)
                opt.step()
        finals.append([p.data.copy() for p in ps])
    for x, y in zip(*finals):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------
# (3) Convergence on the 2-D Rosenbrock function from (-1.5, 2) to (1, 1).
# ---------------------------------------------------------------------------------------------------------
CONVERGE = {
    "sgd": (lambda p: optim.SGD(p, lr=1.5e-3), 10000),
    "sgd_momentum": (lambda p: optim.SGD(p, lr=1e-3, momentum=0.9), 2000),
    "sgd_nesterov": (lambda p: optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True), 2000),
    "rmsprop": (lambda p: optim.RMSProp(p, lr=3e-3), 6000),
    "rmsprop_centered_momentum": (lambda p: optim.RMSProp(p, lr=1e-3, centered=True, momentum=0.9), 2000),
    "adagrad": (lambda p: optim.Adagrad(p, lr=1.0), 10000),   # the growing sum slows it down
    "adam": (lambda p: optim.Adam(p, lr=0.05), 2000),
    "adam_no_bias_correction": (lambda p: optim.Adam(p, lr=0.05, bias_correction=False), 2000),
    "adam_amsgrad": (lambda p: optim.Adam(p, lr=0.05, amsgrad=True), 2500),
    "adamw": (lambda p: optim.AdamW(p, lr=0.05, weight_decay=1e-3), 2500),
}


@pytest.mark.parametrize("name", list(CONVERGE))
def test_converges_on_rosenbrock(name):
    make_opt, budget = CONVERGE[name]
    x = sg.tensor(np.array([-1.5, 2.0]), requires_grad=True)
    opt = make_opt([x])
    for _ in range(budget):
        f = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        opt.zero_grad()
        f.backward()
        opt.step()
        if np.abs(x.data - 1).max() < 1e-2:
            break
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-2)


# ---------------------------------------------------------------------------------------------------------
# (4) state_dict: save mid-run through npz, load into a fresh optimizer over fresh parameters.
# ---------------------------------------------------------------------------------------------------------
def npz_roundtrip(tree):
    """Flatten a nested dict into 'a/b/c' keys, save with np.savez, load, unflatten (no pickle)."""
    flat = {}

    def walk(d, prefix):
        for k, v in d.items():
            assert isinstance(k, str)
            if isinstance(v, dict):
                walk(v, prefix + k + "/")
            else:
                assert isinstance(v, (np.ndarray, int, float, bool, str, np.generic)), (k, type(v))
                flat[prefix + k] = np.asarray(v)
    walk(tree, "")
    buf = io.BytesIO()
    np.savez(buf, **flat)
    buf.seek(0)
    out = {}
    with np.load(buf, allow_pickle=False) as z:
        for key in z.files:
            *path, leaf = key.split("/")
            d = out
            for k in path:
                d = d.setdefault(k, {})
            d[leaf] = z[key]
    return out


STATEFUL = [
    lambda ps: optim.Adam([{"params": ps[:2]}, {"params": ps[2:], "lr": 3e-3}], lr=1e-2, amsgrad=True),
    lambda ps: optim.AdamW(ps, lr=1e-2, betas=(0.8, 0.95)),
    lambda ps: optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda ps: optim.RMSProp(ps, lr=1e-3, centered=True, momentum=0.5),
    lambda ps: optim.Adagrad(ps, lr=1e-2, lr_decay=0.01, initial_accumulator_value=0.1),
]


@pytest.mark.parametrize("make_opt", STATEFUL)
def test_state_dict_resume_gives_identical_trajectory(make_opt):
    rng = np.random.default_rng(3)
    shapes = [(5, 3), (3,), (800, 700), (2, 2)]  # 560000 > PARALLEL_MIN: the parallel kernel too
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(8)]

    def run(ps, opt, scheduler, gs):
        for step_grads in gs:
            for p, g in zip(ps, step_grads):
                p.grad = Tensor(g.copy())
            opt.step()
            scheduler.step()

    ps = [sg.tensor(x, requires_grad=True) for x in init]
    opt = make_opt(ps)
    scheduler = sched.CosineAnnealingLR(opt, T_max=10)
    run(ps, opt, scheduler, grads[:4])
    saved = npz_roundtrip({"params": {str(i): p.data.copy() for i, p in enumerate(ps)},
                           "optim": opt.state_dict(), "sched": scheduler.state_dict()})
    run(ps, opt, scheduler, grads[4:])
    straight = [p.data.copy() for p in ps]

    ps2 = [sg.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
    opt2 = make_opt(ps2)
    scheduler2 = sched.CosineAnnealingLR(opt2, T_max=10)
    for i, p in enumerate(ps2):
        p.data[...] = saved["params"][str(i)]
    opt2.load_state_dict(saved["optim"])
    scheduler2.load_state_dict(saved["sched"])
    assert scheduler2.last_epoch == 4 and opt2.param_groups[0]["lr"] == saved["optim"]["param_groups"]["0"]["lr"]
    run(ps2, opt2, scheduler2, grads[4:])
    for x, y in zip(straight, [p.data for p in ps2]):
        np.testing.assert_array_equal(x, y)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_state_dict_format_and_snapshot():
    p = sg.tensor(np.ones(3), requires_grad=True)
    q = sg.tensor(np.ones(2), requires_grad=True)
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = Tensor(np.ones(3))
    opt.step()
    sd = opt.state_dict()
    assert set(sd["state"]) == {"0"}  # q never stepped
    assert sd["state"]["0"]["step"] == 1 and sd["state"]["0"]["exp_avg"].shape == (3,)
    np.testing.assert_array_equal(sd["param_groups"]["0"]["params"], [0, 1])
    np.testing.assert_array_equal(sd["param_groups"]["0"]["betas"], [0.9, 0.999])
    before = sd["state"]["0"]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"]["0"]["exp_avg"], before)  # a copy, not a live view
    assert opt.state[p]["step"] == 2
    opt.load_state_dict(sd)
    assert opt.state[p]["step"] == 1 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError):
        optim.Adam([p], lr=0.1).load_state_dict(sd)  # 1 parameter vs 2 saved


# ---------------------------------------------------------------------------------------------------------
# (5) Schedulers vs. their formulas.
# ---------------------------------------------------------------------------------------------------------
SCHEDULES = {
    "step": (lambda o: sched.StepLR(o, step_size=3, gamma=0.5), lambda lr0, e: lr0 * 0.5 ** (e // 3)),
    "exponential": (lambda o: sched.ExponentialLR(o, gamma=0.9), lambda lr0, e: lr0 * 0.9 ** e),
    "linear": (lambda o: sched.LinearLR(o, total_iters=8),
               lambda lr0, e: lr0 * (1.0 - min(e, 8) / 8)),
    "linear_warmup": (lambda o: sched.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4),
                      lambda lr0, e: lr0 * (0.25 + 0.75 * min(e, 4) / 4)),
    "lambda": (lambda o: sched.LambdaLR(o, lambda e: max(0.8 ** e, 0.3)),  # decay with a floor: a NICE schedule
               lambda lr0, e: lr0 * max(0.8 ** e, 0.3)),
    "cosine": (lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=1e-3),
               lambda lr0, e: 1e-3 + (lr0 - 1e-3) * (1 + math.cos(math.pi * e / 10)) / 2),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_scheduler_matches_formula(name):
    make, formula = SCHEDULES[name]
    p, q = sg.tensor(np.ones(2), requires_grad=True), sg.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    s = make(opt)
    for e in range(15):
        want = [formula(0.1, e), formula(0.5, e)]
        np.testing.assert_allclose(s.get_last_lr(), want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose([g["lr"] for g in opt.param_groups], want, rtol=1e-12, atol=1e-15)
        opt.step()
        s.step()
    # resume from a state dict into a fresh scheduler
    s2 = make(optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1))
    s2.load_state_dict(npz_roundtrip(s.state_dict()))
    s.step()
    s2.step()
    assert s2.get_last_lr() == s.get_last_lr() and s2.last_epoch == 16


def test_lambda_lr_needs_a_function():
    opt = optim.SGD([sg.tensor(np.ones(2), requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match="lr_lambda"):
        sched.LambdaLR(opt, 0.5)


# ---------------------------------------------------------------------------------------------------------
# (6) clip_grad_norm_
# ---------------------------------------------------------------------------------------------------------
def test_clip_grad_norm():
    p, q, r = (sg.tensor(np.zeros(s), requires_grad=True) for s in [(2,), (2, 2), (3,)])
    p.grad, q.grad = Tensor(np.array([3.0, 0.0])), Tensor(np.array([[0.0, 4.0], [0.0, 0.0]]))
    total = optim.clip_grad_norm_([p, q, r], max_norm=1.0)  # r has no grad: ignored
    assert isinstance(total, float) and total == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.data, [3 / (5 + 1e-6), 0.0])
    np.testing.assert_allclose(q.grad.data, [[0.0, 4 / (5 + 1e-6)], [0.0, 0.0]])
    assert optim.clip_grad_norm_([p, q], max_norm=1.0) == pytest.approx(1.0, abs=1e-5)
    # under the limit: unchanged; inf norm
    g = p.grad.data.copy()
    assert optim.clip_grad_norm_(p, max_norm=10.0) == pytest.approx(0.6, rel=1e-5)
    np.testing.assert_array_equal(p.grad.data, g)
    p.grad = Tensor(np.array([-6.0, 2.0]))
    assert optim.clip_grad_norm_([p], max_norm=3.0, norm_type=math.inf) == 6.0
    np.testing.assert_allclose(p.grad.data, [-6.0 * 3 / (6 + 1e-6), 2.0 * 3 / (6 + 1e-6)])
    # one grad tensor shared by two parameters is scaled once; total norm counts both parameters
    shared = Tensor(np.array([3.0, 4.0]))
    a, b = sg.tensor(np.zeros(2), requires_grad=True), sg.tensor(np.zeros(2), requires_grad=True)
    a.grad = b.grad = shared
    assert optim.clip_grad_norm_([a, b], max_norm=1.0) == pytest.approx(math.sqrt(50))
    np.testing.assert_allclose(shared.data, np.array([3.0, 4.0]) / (math.sqrt(50) + 1e-6))
    with pytest.raises(RuntimeError):
        a.grad = Tensor(np.array([np.nan, 1.0]))
        optim.clip_grad_norm_([a], 1.0, error_if_nonfinite=True)


# ---------------------------------------------------------------------------------------------------------
# (7) zero_grad, (8) param groups, (9) re-linking, skipping params without grad
# ---------------------------------------------------------------------------------------------------------
def test_zero_grad_both_modes():
    p = sg.tensor(np.ones(3), requires_grad=True)
    q = sg.tensor(np.ones((2, 3)), requires_grad=True)
    ((p * q).sum()).backward()
    opt = optim.SGD([p, q], lr=0.1)
    gp = p.grad
    q.grad = Tensor(np.broadcast_to(np.ones(3), (2, 3)))  # read-only view, as backward rules may make
    opt.zero_grad(set_to_none=False)
    assert p.grad is gp and q.grad is not None
    np.testing.assert_array_equal(p.grad.data, 0)
    np.testing.assert_array_equal(q.grad.data, np.zeros((2, 3)))
    opt.zero_grad()
    assert p.grad is None and q.grad is None
    opt.zero_grad(set_to_none=False)  # no grads: nothing to do


def test_param_groups_lr_and_defaults():
    p, q = sg.tensor(np.ones(2), requires_grad=True), sg.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.01}], lr=0.1, momentum=0.0)
    assert opt.param_groups[1]["momentum"] == 0.0 and opt.param_groups[0]["lr"] == 0.1
    p.grad, q.grad = Tensor(np.ones(2)), Tensor(np.ones(2))
    opt.step()
    np.testing.assert_allclose(p.data, 0.9)
    np.testing.assert_allclose(q.data, 0.99)
    opt.param_groups[1]["lr"] = 1.0  # mutable, as schedulers need
    opt.step()
    np.testing.assert_allclose(q.data, -0.01)
    r = sg.tensor(np.ones(2), requires_grad=True)
    opt.add_param_group({"params": [r], "lr": 0.25})
    r.grad = Tensor(np.ones(2))
    opt.step()
    np.testing.assert_allclose(r.data, 0.75)
    assert opt.state_dict()["param_groups"]["2"]["params"].tolist() == [2]
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [p]})  # already optimized
    with pytest.raises(ValueError):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD(p, lr=0.1)


def test_params_without_grad_are_skipped_with_their_own_step_count():
    p = sg.tensor(np.ones(3), requires_grad=True)
    q = sg.tensor(np.ones(2), requires_grad=True)
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = Tensor(np.full(3, 0.5))
    opt.step()
    opt.step()  # q has no grad: untouched, its state too
    np.testing.assert_array_equal(q.data, 1.0)
    assert q not in opt.state and opt.state[p]["step"] == 2
    q.grad = Tensor(np.full(2, 0.5))
    opt.step()
    # q's first step uses t = 1 bias correction: it moves by exactly lr (up to eps), like a fresh Adam
    np.testing.assert_allclose(q.data, 1.0 - 0.1, rtol=1e-6)
    assert opt.state[q]["step"] == 1 and opt.state[p]["step"] == 3
    ref = sg.tensor(np.ones(3), requires_grad=True)
    ref_opt = optim.Adam([ref], lr=0.1)
    for _ in range(3):
        ref.grad = Tensor(np.full(3, 0.5))
        ref_opt.step()
    np.testing.assert_array_equal(p.data, ref.data)


def test_step_closure_and_repr():
    x = sg.tensor(np.array([2.0]), requires_grad=True)
    opt = optim.SGD([x], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss

    with sg.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 4.0 and x.data[0] == 1.0
    assert "lr: 0.25" in repr(opt)


# ---------------------------------------------------------------------------------------------------------
# (10) The optimizer updates the user's own arrays: it never rebinds p.data (issue #24, item 7).
# ---------------------------------------------------------------------------------------------------------
EVERY_RULE = {  # each rule with all of its state switched on
    "sgd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "rmsprop": lambda ps: optim.RMSProp(ps, lr=0.01, centered=True, momentum=0.5, weight_decay=0.01),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
    "adam": lambda ps: optim.Adam(ps, lr=0.1, amsgrad=True, weight_decay=0.01),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.1),
}


def _grads(shapes, steps, dtype=np.float64, seed=4):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]


@pytest.mark.parametrize("name", list(EVERY_RULE))
def test_construction_and_step_keep_the_users_arrays(name):
    arrays = [np.arange(6.0).reshape(2, 3), np.arange(3.0), np.array(2.0), np.arange(2, dtype=np.float32)]
    ps = [sg.nn.Parameter(a) for a in arrays]
    assert all(p.data is a for p, a in zip(ps, arrays))
    opt = EVERY_RULE[name](ps)
    assert all(p.data is a for p, a in zip(ps, arrays))      # construction rebinds nothing ...
    np.testing.assert_array_equal(arrays[0], np.arange(6.0).reshape(2, 3))   # ... nor changes values
    before = [a.copy() for a in arrays]
    for gs in _grads([a.shape for a in arrays], 3):
        for p, g in zip(ps, gs):
            p.grad = Tensor(g.astype(p.dtype))
        opt.step()
        assert all(p.data is a for p, a in zip(ps, arrays))  # nor does a step: it writes into them
    assert all(not np.array_equal(a, b) for a, b in zip(arrays, before))
    assert arrays[3].dtype == np.float32 and arrays[2].shape == ()
    for p in ps:                                              # state lives beside, shaped like each parameter
        assert all(v.shape == p.shape and not np.shares_memory(v, p.data)
                   for k, v in opt.state[p].items() if k != "step")


def test_a_write_into_the_users_array_is_seen_by_the_next_step():
    a = np.zeros(4)
    p = sg.nn.Parameter(a)
    opt = optim.SGD([p], lr=0.5)
    a[...] = 10.0                    # after the optimizer was built, through the user's own reference
    p.grad = Tensor(np.ones(4))
    opt.step()
    np.testing.assert_array_equal(a, 9.5)
    a[:2] = 0.0                      # and between steps
    opt.step()
    np.testing.assert_array_equal(a, [-0.5, -0.5, 9.0, 9.0])
    assert p.data is a


def test_step_stamps_the_version_clock():
    p = sg.nn.Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1)
    y = (p * p).sum()                # saves p for backward
    p.grad = Tensor(np.ones(3))
    opt.step()
    with pytest.raises(RuntimeError):
        y.backward()                 # p changed in place after the graph saved it


def test_data_replaced_between_steps_is_updated_where_it_now_is():
    p = sg.nn.Parameter(np.zeros(4))
    q = sg.nn.Parameter(np.zeros((2, 2)))
    opt = optim.SGD([p, q], lr=0.5, momentum=0.5)
    for x in (p, q):
        x.grad = Tensor(np.ones(x.shape))
    opt.step()
    new = np.full(4, 10.0)
    p.data = new                     # e.g. a checkpoint load that assigns instead of copying
    opt.step()
    assert p.data is new             # updated where it is, momentum carried over
    np.testing.assert_array_equal(new, 10.0 - 0.5 * 1.5)
    np.testing.assert_array_equal(q.data, -0.5 - 0.5 * 1.5)
    for bad in (np.zeros(5), np.zeros(4, np.float32)):
        p.data = bad
        with pytest.raises(RuntimeError, match="changed"):
            opt.step()
    p.data = np.broadcast_to(np.zeros(1), (4,))
    with pytest.raises(ValueError, match="read-only"):
        opt.step()


LAYOUTS = {  # parameter arrays whose reshape(-1) is not a view, and a 0-d one
    "transposed": lambda x: x.copy().T,
    "strided": lambda x: x.copy()[:, ::2],
    "0-d": lambda x: np.array(x[0, 0]),
    "size-0": lambda x: x[:0].copy(),
}


@pytest.mark.parametrize("name", list(EVERY_RULE))
def test_non_contiguous_and_0d_parameters(name):
    rng = np.random.default_rng(5)
    arrays = [make(rng.standard_normal((6, 8))) for make in LAYOUTS.values()]
    parents = [a.base.copy() if a.base is not None else None for a in arrays]
    ps = [sg.nn.Parameter(a) for a in arrays]
    refs = [sg.nn.Parameter(a.copy(order="C")) for a in arrays]   # the same values, C-contiguous
    opt, ref_opt = EVERY_RULE[name](ps), EVERY_RULE[name](refs)
    for gs in _grads([a.shape for a in arrays], 3):
        for p, r, g in zip(ps, refs, gs):
            p.grad, r.grad = Tensor(g), Tensor(g.copy())
        opt.step()
        ref_opt.step()
    for a, p, r, parent in zip(arrays, ps, refs, parents):
        assert p.data is a
        np.testing.assert_array_equal(a, r.data)               # the same arithmetic, every layout
        assert opt.state[p]["step"] == 3
    assert not np.array_equal(arrays[0], parents[0].T)         # it moved
    strided_parent = arrays[1].base                             # the columns the view skips are untouched
    np.testing.assert_array_equal(strided_parent[:, 1::2], parents[1][:, 1::2])
    sd = npz_roundtrip(opt.state_dict())
    for k, a in enumerate(arrays):
        assert all(np.shape(v) == a.shape for n, v in sd["state"][str(k)].items() if n != "step")


def test_gradients_of_any_layout_and_dtype_are_read_not_written():
    w = sg.nn.Parameter(np.ones((3, 4), np.float32))
    big = sg.nn.Parameter(np.ones(optim_step.PARALLEL_MIN + 3, np.float32))   # the parallel kernel
    opt = optim.Adam([w, big], lr=0.5, weight_decay=0.1)
    gw = np.ones((4, 3)).T                                      # float64 and transposed: converted on the way in
    gb = np.full(big.shape, 2.0, np.float32)                    # read where it lies
    for _ in range(2):
        w.grad, big.grad = Tensor(gw), Tensor(gb)
        opt.step()
    np.testing.assert_array_equal(gw, 1.0)                      # weight decay did not write into them
    np.testing.assert_array_equal(gb, 2.0)
    ref = sg.nn.Parameter(np.ones(12, np.float32))
    ref_opt = optim.Adam([ref], lr=0.5, weight_decay=0.1)
    for _ in range(2):
        ref.grad = Tensor(np.ones(12, np.float32))
        ref_opt.step()
    np.testing.assert_array_equal(w.data.reshape(-1), ref.data)
    assert w.data.dtype == np.float32 and opt.state[w]["exp_avg"].dtype == np.float32
    with pytest.raises(ValueError, match="gradient of shape"):
        w.grad = Tensor(np.ones((4, 3), np.float32))
        opt.step()


@pytest.mark.parametrize("name", list(EVERY_RULE))
def test_every_rule_numba_matches_numpy_reference_on_mixed_layouts(name):
    rng = np.random.default_rng(6)
    init = [rng.standard_normal((30, 20)).astype(np.float32).T, rng.standard_normal(7).astype(np.float32),
            np.array(0.5, np.float32), rng.standard_normal((70000,)).astype(np.float32)]
    grads = _grads([a.shape for a in init], 4, np.float32)
    finals = []
    for impl in ("numba", "numpy"):
        with force_impl(impl, "optim"):
            arrays = [a.copy(order="K") for a in init]
            ps = [sg.nn.Parameter(a) for a in arrays]
            opt = EVERY_RULE[name](ps)
            for gs in grads:
                for p, g in zip(ps, gs):
                    p.grad = Tensor(g)
                opt.step()
            assert all(p.data is a for p, a in zip(ps, arrays))
        finals.append(arrays)
    for x, y in zip(*finals):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_state_is_live_and_state_dict_round_trips():
    p, q = sg.nn.Parameter(np.ones((2, 3))), sg.nn.Parameter(np.ones(()))
    opt = optim.Adam([{"params": [p]}, {"params": [q], "lr": 0.01}], lr=0.1)
    for x in (p, q):
        x.grad = Tensor(np.full(x.shape, 0.5))
    opt.step()
    m = opt.state[p]["exp_avg"]
    assert m.shape == (2, 3) and opt.state[q]["exp_avg"].shape == ()
    opt.step()
    np.testing.assert_allclose(m, 0.5 * (1 - 0.9 ** 2))       # a live view of the state
    sd = npz_roundtrip(opt.state_dict())
    p2, q2 = sg.nn.Parameter(p.data.copy()), sg.nn.Parameter(q.data.copy())
    arrays = (p2.data, q2.data)
    opt2 = optim.Adam([{"params": [p2]}, {"params": [q2]}], lr=0.1)
    opt2.load_state_dict(sd)
    assert p2.data is arrays[0] and q2.data is arrays[1]
    assert opt2.param_groups[1]["lr"] == 0.01 and opt2.state[q2]["step"] == 2
    sd["state"]["0"]["exp_avg"][...] = 7.0                      # loaded as a copy
    assert not np.any(opt2.state[p2]["exp_avg"] == 7.0)
    for x, y in ((p, p2), (q, q2)):
        x.grad, y.grad = Tensor(np.full(x.shape, -0.25)), Tensor(np.full(x.shape, -0.25))
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(p.data, p2.data)
    np.testing.assert_array_equal(q.data, q2.data)
    assert p2.data is arrays[0] and q2.data is arrays[1]


def test_loads_the_state_dict_layout_that_checkpoints_hold():
    """The layout written by every version so far (flat-buffer versions included), as an npz checkpoint
    gives it back: 0-d arrays for numbers, betas as an array, string keys."""
    x = sg.nn.Parameter(X0.copy())
    opt = optim.Adam([x], lr=0.1)
    At, Bt = sg.tensor(A), sg.tensor(B)
    xx, m, v = X0.copy(), np.zeros(4), np.zeros(4)
    for t in (1, 2):                                           # two Adam steps by hand
        g = quad_grad(xx)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
        xx = xx - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    saved = {"type": np.array("Adam"),
             "state": {"0": {"step": np.array(2), "exp_avg": m, "exp_avg_sq": v}},
             "param_groups": {"0": {"lr": np.array(0.1), "betas": np.array([0.9, 0.999]), "eps": np.array(1e-8),
                                    "weight_decay": np.array(0), "amsgrad": np.array(False),
                                    "bias_correction": np.array(True), "params": np.array([0])}}}
    x.data[...] = xx
    opt.load_state_dict(saved)
    for _ in range(STEPS - 2):
        f = 0.5 * (x * (At @ x)).sum() - (Bt * x).sum()
        opt.zero_grad()
        f.backward()
        opt.step()
    np.testing.assert_allclose(x.data, adam_equations(0.1)[-1], rtol=1e-11, atol=1e-13)
    assert opt.state[x]["step"] == STEPS and opt.param_groups[0]["betas"] == (0.9, 0.999)


# -- EMA of parameters ---------------------------------------------------------------------------
def test_ema_follows_its_recursion_and_swaps_weights_in_and_out():
    w = sg.nn.Parameter(np.array([1.0, 2.0]))
    opt = sg.optim.SGD([w], lr=0.5)
    ema = sg.optim.EMA([w], decay=0.9)
    expected = np.array([1.0, 2.0])
    for step in range(3):
        opt.zero_grad()
        (w * w).sum().backward()          # grad 2w: w <- w - 0.5 * 2w = 0
        opt.step()
        ema.update()
        expected = 0.9 * expected + 0.1 * w.data
    np.testing.assert_allclose(ema.shadow[0], expected)
    live = w.data.copy()
    view = w.data
    with ema.average_parameters():
        np.testing.assert_allclose(w.data, expected)
        assert w.data is view             # written in place: the array the user holds stays the parameter's
    np.testing.assert_array_equal(w.data, live)
    assert ema.num_updates == 3


def test_ema_state_dict_round_trip_and_errors():
    a, b = sg.nn.Parameter(np.ones((2, 3), np.float32)), sg.nn.Parameter(np.zeros(3, np.float32))
    ema = sg.optim.EMA([a, b], decay=0.5)
    a.data[...] = 3.0
    ema.update()
    other = sg.optim.EMA([a, b], decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and other.num_updates == 1
    np.testing.assert_array_equal(other.shadow[0], np.full((2, 3), 2.0, np.float32))
    assert other.shadow[0].dtype == np.float32
    with pytest.raises(ValueError, match="decay must be in"):
        sg.optim.EMA([a], decay=1.0)
    with pytest.raises(ValueError, match="2 averages for 1 parameters"):
        sg.optim.EMA([a]).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match=r"average 0 has shape \(2, 3\)"):
        sg.optim.EMA([b, a]).load_state_dict(ema.state_dict())


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_flushes_subnormal_moments_and_parameters_to_zero(impl, dtype):
    """Subnormal m, v and p become 0 (they are slow on x86 and carry no information); normal
    values take the usual step, and a nan is never flushed away."""
    tiny = np.finfo(dtype).tiny
    p = np.array([tiny / 4, 0.5, 0.5, 0.5, np.nan], dtype)
    g = np.array([0, 0, 0.25, 0, 0], dtype)
    m = np.array([tiny / 2, tiny * 4, 0.1, -tiny / 3, 0], dtype)
    v = np.array([tiny / 2, 1, 0.01, tiny / 5, 0], dtype)
    with force_impl(impl, "optim"):
        optim_step.adam(p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=10)
    assert m[0] == 0 and v[0] == 0 and p[0] == 0        # each fell below tiny: flushed
    assert m[3] == 0 and v[3] == 0 and p[3] == 0.5
    assert m[1] == dtype(0.9) * dtype(tiny * 4) > 0     # small but normal: kept
    assert np.isnan(p[4])                               # a nan is never flushed away
    mm, vv = 0.9 * 0.1 + 0.1 * 0.25, 0.999 * 0.01 + 0.001 * 0.25 ** 2
    expected = 0.5 - 1e-3 / (1 - 0.9 ** 10) * mm / (np.sqrt(vv) / np.sqrt(1 - 0.999 ** 10) + 1e-8)
    np.testing.assert_allclose([m[2], v[2], p[2]], [mm, vv, expected], rtol=1e-6)
