"""Optimizer base class: parameter groups, per-parameter state, one fused update per parameter, state dicts.

Layout. The optimizer never replaces a parameter's array: after `opt = Adam(params)` and after every
`opt.step()`, `p.data` is the same object the user created, and the update lands in it. For each
parameter the optimizer keeps its step count and its state (m, v, ...) as 1-D arrays of the
parameter's size, dtype and device. A step runs ONE fused kernel per parameter
(scratchgen.kernels.optim_step: a single pass over the parameter, its gradient and its state) on
`p.data.reshape(-1)`, which for a C-contiguous array is a view of the user's array, and reads the
gradient where it lies (a gradient of another dtype or layout is converted first). A parameter
whose array has no 1-D view (a transposed or strided view) is updated in a contiguous copy that is
then written back into its array, so every layout gets the same arithmetic.

Why not one flat buffer per group, as earlier versions kept (every `p.data` rebound to a view of
it, so that all small parameters shared one kernel call): a kernel call per parameter adds a fixed
dispatch cost per tensor, which is lost in the training step of the models measured
(bench/step_time.py; bench/bench_optim.py times the optimizer step alone), while rebinding
broke the array the user held (writes into it no longer reached the parameter, and `p.data` was
no longer the object they created). No flat mode is offered: it did not pay.

Rules kept from PyTorch:
- a parameter whose `.grad` is None is skipped (neither it nor its state changes), and every parameter
  counts its own steps (Adam's bias correction uses that count).
- `p.data` may be reassigned between steps (e.g. a checkpoint load that assigns instead of copying):
  the next step updates the new array. A replacement with another shape, dtype or device is an
  error: make a new optimizer for that.
- `step()` stamps the parameters on the version clock (tensor.mark_written): a graph that saved
  them before the update refuses to backpropagate through the new values.
"""
import numpy as np

from .. import backend
from ..grad_mode import enable_grad
from ..tensor import Tensor, mark_written


class _Slot:
    """One parameter as its optimizer sees it: step count, state arrays, and a 1-D view of its array."""
    __slots__ = ("param", "shape", "dtype", "kind", "device", "xp", "data", "flat", "step", "state")

    def __init__(self, p):
        a = p.data
        self.param, self.shape, self.dtype, self.kind = p, a.shape, a.dtype, type(a)
        self.device, self.xp = backend.device_of(a), backend.array_module(a)
        self.data = self.flat = None     # the array last seen in p.data, and its 1-D view (None: no view)
        self.step = 0
        self.state = {}                  # name -> 1-D array, the parameter's size, dtype and device

    def bind(self):
        """The parameter's current array, checked against what the optimizer was built for; sets `flat`."""
        a = self.param.data
        if a is not self.data:
            if a.shape != self.shape or a.dtype != self.dtype or type(a) is not self.kind:
                raise RuntimeError(
                    f"an optimized parameter changed from {self.dtype}{list(self.shape)} on "
                    f"{self.device} to {a.dtype}{list(a.shape)} on {backend.device_of(a)}; "
                    f"create the optimizer after converting or moving the model")
            if not getattr(a.flags, "writeable", True):
                raise ValueError(f"a parameter's array ({a.dtype}{list(a.shape)}) is read-only: "
                                 f"the optimizer updates parameters in place")
            # reshape(-1) of a C-contiguous array is a view: updates through it land in `a`
            self.data, self.flat = a, (a.reshape(-1) if a.flags.c_contiguous else None)
        return a

    def buffer(self, name):
        """State array `name`, created as zeros on first use."""
        b = self.state.get(name)
        if b is None:
            b = self.state[name] = self.xp.zeros(int(np.prod(self.shape)), self.dtype)
        return b


class Optimizer:
    """Base class. Subclasses set `defaults`, and define `_state_names(group)` (the state arrays the rule
    needs) and `_update(group, p, g, state, step)` (one in-place update of 1-D C-contiguous arrays of
    one dtype: the parameter, its gradient and {name: state array})."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._slots = []  # one list of _Slot per param group, in the group's order
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts, not a Tensor")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, group):
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.data.dtype.kind != "f":
                raise TypeError(f"can only optimize real floating-point Tensors, got {p.data.dtype}")
            if id(p) in seen:
                raise ValueError("a parameter appears twice (in this group or another)")
            seen.add(id(p))
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        group["params"] = params
        self._check(group)
        self._slots.append([_Slot(p) for p in params])
        self.param_groups.append(group)

    def _check(self, group):
        if group["lr"] < 0:
            raise ValueError(f"invalid learning rate {group['lr']}")

    # -- stepping ----------------------------------------------------------------------------------------
    def step(self, closure=None):
        """One update of every parameter that has a gradient. `closure` re-evaluates the loss (returned)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group, slots in zip(self.param_groups, self._slots):
            names = self._state_names(group)
            for s in slots:
                if s.param.grad is not None:
                    self._step_one(group, s, names)
        mark_written([p for group in self.param_groups for p in group["params"]])
        return loss

    def _step_one(self, group, s, names):
        a = s.bind()
        g = s.param.grad.data
        if g.shape != s.shape:
            raise ValueError(f"gradient of shape {g.shape} for a parameter of shape {s.shape}")
        g = s.xp.ascontiguousarray(g.reshape(-1), dtype=s.dtype)  # no copy when already so
        state = {name: s.buffer(name) for name in names}
        s.step += 1
        if s.flat is not None:
            self._update(group, s.flat, g, state, s.step)
        else:  # no 1-D view of this layout: update a contiguous copy, write it back
            p = s.xp.ascontiguousarray(a).reshape(-1)
            self._update(group, p, g, state, s.step)
            a[...] = p.reshape(s.shape)

    def _state_names(self, group):
        return ()

    def _update(self, group, p, g, state, step):
        raise NotImplementedError

    def zero_grad(self, set_to_none=True):
        """Drop every gradient (set_to_none=True), or zero the gradient arrays in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data
                if set_to_none:
                    p.grad = None
                elif isinstance(g, np.ndarray) and not g.flags.writeable:  # e.g. a broadcast view from backward
                    p.grad.data = np.zeros(g.shape, g.dtype)
                else:
                    g[...] = 0

    # -- state -------------------------------------------------------------------------------------------
    def _indexed(self):
        """(global index, slot) for every parameter, numbered across groups in param_groups order."""
        return list(enumerate(s for slots in self._slots for s in slots))

    @property
    def state(self):
        """{param: {'step': int, name: live view of its state array, shaped like it}} (as torch's opt.state)."""
        return {s.param: {"step": s.step, **{k: v.reshape(s.shape) for k, v in s.state.items()}}
                for _, s in self._indexed() if s.step > 0}

    def state_dict(self):
        """A snapshot of plain values: nested dicts with string keys, holding arrays, numbers and strings.

        {'type': class name, 'state': {'<k>': {'step': int, '<buffer>': array}}, 'param_groups': {'<j>':
        {hyperparameters..., 'params': int array of parameter indices}}}, parameters numbered across groups
        in order, as in PyTorch. Arrays are copies (saving mid-run is safe) shaped like the parameters;
        tuples (betas) become arrays. Parameters that never stepped have no entry.
        """
        state = {str(k): {"step": s.step, **{name: v.reshape(s.shape).copy() for name, v in s.state.items()}}
                 for k, s in self._indexed() if s.step > 0}
        groups, k = {}, 0
        for j, group in enumerate(self.param_groups):
            n = len(group["params"])
            groups[str(j)] = {**{key: np.asarray(v) if isinstance(v, tuple) else v
                                 for key, v in group.items() if key != "params"},
                              "params": np.arange(k, k + n)}
            k += n
        return {"type": type(self).__name__, "state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore a `state_dict()` (also after an npz round trip: 0-d arrays are read back as numbers).
        Everything is checked before anything changes."""
        kind = state_dict.get("type")
        if kind is not None and str(kind) != type(self).__name__:
            raise ValueError(f"the state_dict is {kind}'s, this optimizer is {type(self).__name__}: "
                             f"build the same optimizer the state was saved from")
        saved_groups = state_dict["param_groups"]
        if isinstance(saved_groups, dict):
            saved_groups = [saved_groups[k] for k in sorted(saved_groups, key=int)]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, optimizer has "
                             f"{len(self.param_groups)}")
        for j, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if np.size(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {j} has a different number of parameters than the state_dict")
        for j, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            alien = sorted(set(saved) - set(group) - {"params", "initial_lr"})  # initial_lr: a scheduler's
            if alien:
                raise ValueError(f"param group {j} of the state_dict has settings {alien} that "
                                 f"{type(self).__name__} does not have: it was saved from another optimizer")
        saved_state = {str(k): v for k, v in state_dict["state"].items()}
        for k, s in self._indexed():
            for name, arr in saved_state.get(str(k), {}).items():
                if name != "step" and tuple(np.shape(arr)) != s.shape:
                    raise ValueError(f"state '{name}' of parameter {k} has shape {tuple(np.shape(arr))}, "
                                     f"the parameter has {s.shape}")

        for saved, group in zip(saved_groups, self.param_groups):
            for key, v in saved.items():
                if key != "params":
                    v = _plain(v)
                    group[key] = tuple(float(x) for x in v) if isinstance(group.get(key), tuple) else v
        for k, s in self._indexed():
            entry = saved_state.get(str(k), {})
            s.step = int(_plain(entry.get("step", 0)))
            # copies in the parameter's dtype; a state the entry lacks starts again from zeros on first use
            s.state = {name: s.xp.array(v, dtype=s.dtype).reshape(-1) for name, v in entry.items() if name != "step"}

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for j, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {j}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


def _plain(v):
    """0-d arrays (what an npz round trip gives back for numbers and strings) -> Python values."""
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v
    if isinstance(v, np.generic):
        return v.item()
    return v
