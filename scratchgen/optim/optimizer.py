"""Optimizer base class: parameter groups, flat buffers, one fused update per buffer, state dicts.

Layout. At construction every parameter of a group is re-homed into ONE flat buffer per (device, dtype):
`p.data` becomes a view `flat[o:o+n].reshape(shape)`, and the optimizer state (m, v, ...) lives in flat
buffers of the same layout. Small parameters (< DIRECT_MIN elements) come first: a step gathers their
gradients into one flat grad buffer and runs ONE fused kernel (scratchgen.kernels.optim_step) over
that whole region; each large parameter gets one more kernel call on its slice that reads its gradient
where it lies. So an MLP costs a handful of kernel calls, and no large gradient is copied: the copy
would add 8 bytes of memory traffic per float32 element to the 20 (SGD) or 28 (Adam) of the update.

Rules kept from PyTorch:
- a parameter whose `.grad` is None is skipped (neither it nor its state changes), and every parameter
  counts its own steps (Adam's bias correction uses that count). When every gradient is present and
  all step counts agree (the usual case) the fused path above runs; otherwise the same kernel runs once
  per parameter that has a gradient, on its slices of the flat buffers.
- if `p.data` was replaced by a new array (e.g. a checkpoint load that assigned instead of copying),
  the step notices (`p.data is not` our view), copies the new values into the flat buffer and re-views.
  A replacement with another shape, dtype or device is an error: make a new optimizer for that.
"""
import numpy as np

from .. import backend
from ..grad_mode import enable_grad
from ..tensor import Tensor, mark_written

DIRECT_MIN = 1 << 16  # elements; a gradient this large is read in place rather than gathered (see above)


class _Bucket:
    """The parameters of one group that share a device and dtype, as views of one flat buffer."""

    def __init__(self, params):
        first = params[0].data
        self.xp = backend.array_module(first)
        small = [p for p in params if p.data.size < DIRECT_MIN]
        self.params = small + [p for p in params if p.data.size >= DIRECT_MIN]
        self.n_small = len(small)
        params = self.params
        sizes = [p.data.size for p in params]
        self.offsets = [0] + np.cumsum(sizes).tolist()
        self.flat = self.xp.empty(self.offsets[-1], dtype=first.dtype)
        self.views = [None] * len(params)
        for i, p in enumerate(params):
            self._rehome(i, p.data)
        self.grad = self.xp.empty(self.offsets[self.n_small], first.dtype)  # gathered small gradients
        self.state = {}                  # name -> flat buffer of the same layout
        self.steps = np.zeros(len(params), dtype=np.int64)  # per-parameter step counts
        self.in_sync = True              # all step counts equal (cached: the check costs a few us)

    def slice(self, i):
        return slice(self.offsets[i], self.offsets[i + 1])

    def _rehome(self, i, arr):
        flat_part = self.flat[self.slice(i)]
        flat_part[...] = arr.reshape(-1)
        self.views[i] = flat_part.reshape(arr.shape)
        self.params[i].data = self.views[i]

    def relink(self):
        """Bring back into the flat buffer any parameter whose `.data` was replaced."""
        for i, (p, view) in enumerate(zip(self.params, self.views)):
            if p.data is not view:
                arr = p.data
                if arr.shape != view.shape or arr.dtype != view.dtype or type(arr) is not type(view):
                    raise RuntimeError(
                        f"an optimized parameter changed from {view.dtype}{list(view.shape)} on "
                        f"{backend.device_of(view)} to {arr.dtype}{list(arr.shape)} on {backend.device_of(arr)}; "
                        f"create the optimizer after converting or moving the model")
                self._rehome(i, arr)

    def buffer(self, name):
        """The flat state buffer `name`, created as zeros on first use."""
        if name not in self.state:
            self.state[name] = self.xp.zeros_like(self.flat)
        return self.state[name]


class Optimizer:
    """Base class. Subclasses set `defaults`, and define `_state_names(group)` (the flat state buffers the
    rule needs) and `_update(group, p, g, state, step)` (one in-place update of flat arrays)."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._buckets = []  # one list of _Bucket per param group
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
        by_kind = {}
        for p in params:
            by_kind.setdefault((backend.device_of(p.data), p.data.dtype), []).append(p)
        self._buckets.append([_Bucket(ps) for ps in by_kind.values()])
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
        for group, buckets in zip(self.param_groups, self._buckets):
            for b in buckets:
                self._step_bucket(group, b)
        mark_written([p for group in self.param_groups for p in group["params"]])
        return loss

    def _step_bucket(self, group, b):
        b.relink()
        grads = [None if p.grad is None else p.grad.data for p in b.params]
        for g, v in zip(grads, b.views):
            if g is not None and g.shape != v.shape:
                raise ValueError(f"gradient of shape {g.shape} for a parameter of shape {v.shape}")
        state = {name: b.buffer(name) for name in self._state_names(group)}
        if not b.in_sync:
            b.in_sync = bool((b.steps == b.steps[0]).all())
        if b.in_sync and all(g is not None for g in grads):
            # The fast path: one kernel over all small parameters, one per large parameter.
            b.steps += 1
            step, k = int(b.steps[0]), b.n_small
            if k:
                s = slice(0, b.offsets[k])
                b.xp.concatenate([g.reshape(-1) for g in grads[:k]], out=b.grad)
                self._update(group, b.flat[s], b.grad, {n: v[s] for n, v in state.items()}, step)
            for i in range(k, len(grads)):
                self._update_one(group, b, i, grads[i], state, step)
            return
        b.in_sync = False
        for i, g in enumerate(grads):  # some grads missing or step counts differ: one call per parameter
            if g is not None:
                b.steps[i] += 1
                self._update_one(group, b, i, g, state, int(b.steps[i]))

    def _update_one(self, group, b, i, g, state, step):
        s = b.slice(i)
        g = b.xp.ascontiguousarray(g.reshape(-1), dtype=b.flat.dtype)  # no copy when already so
        self._update(group, b.flat[s], g, {n: v[s] for n, v in state.items()}, step)

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
        """(global index, bucket, position in bucket) for every parameter, in param_groups order."""
        index = {}
        for buckets in self._buckets:
            for b in buckets:
                for i, p in enumerate(b.params):
                    index[id(p)] = (b, i)
        out, k = [], 0
        for group in self.param_groups:
            for p in group["params"]:
                out.append((k, *index[id(p)]))
                k += 1
        return out

    @property
    def state(self):
        """{param: {'step': int, name: live view of its slice of each state buffer}} (as torch's opt.state)."""
        out = {}
        for _, b, i in self._indexed():
            if b.steps[i] > 0:
                s, shape = b.slice(i), b.views[i].shape
                out[b.params[i]] = {"step": int(b.steps[i]),
                                    **{k: v[s].reshape(shape) for k, v in b.state.items()}}
        return out

    def state_dict(self):
        """A snapshot of plain values: nested dicts with string keys, holding arrays, numbers and strings.

        {'state': {'<k>': {'step': int, '<buffer>': array}}, 'param_groups': {'<j>': {hyperparameters...,
        'params': int array of parameter indices}}}, parameters numbered across groups in order, as in
        PyTorch. Arrays are copies (saving mid-run is safe) shaped like the parameters; tuples (betas)
        become arrays. Parameters that never stepped have no entry.
        """
        state = {}
        for k, b, i in self._indexed():
            if b.steps[i] > 0:
                s, shape = b.slice(i), b.views[i].shape
                state[str(k)] = {"step": int(b.steps[i]),
                                 **{name: v[s].reshape(shape).copy() for name, v in b.state.items()}}
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
        for k, b, i in self._indexed():
            for name, arr in saved_state.get(str(k), {}).items():
                if name != "step" and tuple(np.shape(arr)) != b.views[i].shape:
                    raise ValueError(f"state '{name}' of parameter {k} has shape {tuple(np.shape(arr))}, "
                                     f"the parameter has {b.views[i].shape}")

        for saved, group in zip(saved_groups, self.param_groups):
            for key, v in saved.items():
                if key != "params":
                    v = _plain(v)
                    group[key] = tuple(float(x) for x in v) if isinstance(group.get(key), tuple) else v
        for k, b, i in self._indexed():
            s, entry = b.slice(i), saved_state.get(str(k), {})
            b.steps[i] = int(_plain(entry.get("step", 0)))
            b.in_sync = False
            for name in set(b.state) | set(entry) - {"step"}:
                b.buffer(name)[s] = b.xp.asarray(entry[name]).reshape(-1) if name in entry else 0

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
