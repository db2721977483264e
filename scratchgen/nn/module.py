"""Modules: containers of parameters, buffers and sub-modules, in PyTorch's style.

Assigning a Parameter or a Module to an attribute registers it (`__setattr__`), so
`parameters()`, `state_dict()`, `train()` and `to()` find everything without lists
kept by hand. Buffers are non-learnable arrays that belong to the model's state
(BatchNorm's running statistics, MaskedLinear's mask).
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..tensor import Tensor, _to_array, mark_written

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable; it requires grad by default.

    Made from an array or a Tensor it shares that array (no copy), as torch.nn.Parameter
    does; lists and numbers are converted with the usual dtype rules (floats -> float32).
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        elif isinstance(data, Tensor):
            data = data.data
        elif isinstance(data, (list, tuple, int, float, bool)):
            data = _to_array(data, None)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _as_buffer(value):
    if value is None or isinstance(value, Tensor) and not value.requires_grad:
        return value
    if isinstance(value, Tensor):
        return Tensor(value.data)  # a buffer is state, never a leaf of the graph
    if isinstance(value, (list, tuple, int, float, bool)):
        return Tensor(_to_array(value, None))
    return Tensor(value)


class Module:
    """Base class of every layer and model: subclass it, assign layers in `__init__`, write `forward`."""

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dicts to exist already.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- attribute registration -----------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if isinstance(value, (Parameter, Module)):
            if "_parameters" not in d:
                raise AttributeError(f"cannot assign {type(value).__name__} '{name}' before "
                                     f"Module.__init__() call: call super().__init__() first")
            self._forget(name)
            (d["_parameters"] if isinstance(value, Parameter) else d["_modules"])[name] = value
        elif name in d.get("_parameters", ()):
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}': "
                                f"wrap it in nn.Parameter (or assign None)")
            d["_parameters"][name] = None
        elif name in d.get("_modules", ()):
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' "
                                f"(a Module or None is expected)")
            d["_modules"][name] = None
        elif name in d.get("_buffers", ()):
            d["_buffers"][name] = _as_buffer(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            store = d.get(key)
            if store is not None and name in store:
                return store[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d.get(key, ()):
                del d[key][name]
                d["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    def _forget(self, name):
        d = self.__dict__
        d.pop(name, None)
        for key in ("_parameters", "_buffers", "_modules"):
            d[key].pop(name, None)
        d["_non_persistent"].discard(name)

    def _check_name(self, name, kind):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{kind} name must be a non-empty string without '.', got {name!r}")

    def register_parameter(self, name, param):
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter '{name}': wrap it in nn.Parameter")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, value, persistent=True):
        """A non-learnable array kept with the model (saved in state_dict unless persistent=False)."""
        self._check_name(name, "buffer")
        self._forget(name)
        self._buffers[name] = _as_buffer(value)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module (child '{name}')")
        self._forget(name)
        self._modules[name] = module

    # -- traversal --------------------------------------------------------------------------
    def named_modules(self, prefix="", remove_duplicate=True, _memo=None):
        """(dotted name, module) for this module and every descendant, pre-order."""
        memo = set() if _memo is None else _memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(_join(prefix, name), remove_duplicate, memo)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, registry, prefix, recurse, remove_duplicate):
        # ids, not `in`: Tensor's == is elementwise.
        seen = set()
        mods = self.named_modules(prefix, remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, t in getattr(m, registry).items():
                if t is None or remove_duplicate and id(t) in seen:
                    continue
                seen.add(id(t))
                yield _join(mod_prefix, name), t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) pairs; a parameter shared by two layers appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    def apply(self, fn):
        """Call fn(m) on every sub-module and then self (e.g. a custom initialisation)."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes and gradients ----------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze every parameter, e.g. a GAN's critic during the generator step."""
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                # A fresh array, not grad.data[...] = 0: a .grad may be a read-only broadcast
                # view or shared with another parameter's .grad.
                p.grad = Tensor(p.xp.zeros_like(p.data))
        return self

    # -- device and dtype -------------------------------------------------------------------
    def _apply_arrays(self, fn):
        """Replace every parameter, gradient and buffer array by fn(array), keeping the Tensor objects."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = fn(p.data)
                    if p.grad is not None:
                        p.grad = Tensor(fn(p.grad.data))
            for b in m._buffers.values():
                if b is not None:
                    b.data = fn(b.data)
        return self

    def to(self, device=None, dtype=None):
        """Move to a device ('cpu', 'cuda') and/or cast floating arrays to a dtype: m.to('cuda'),
        m.to(sg.float64). Create the optimizer after moving: moving replaces the arrays."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        if device is not None:
            self._apply_arrays(lambda a: backend.to_device(a, device))
        if dtype is not None:
            self._apply_arrays(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    # -- state ------------------------------------------------------------------------------
    def _state_items(self):
        # Like PyTorch: each module's parameters, then its buffers, then its children;
        # a shared parameter is listed under every name it has.
        for mod_prefix, m in self.named_modules(remove_duplicate=False):
            for name, p in m._parameters.items():
                if p is not None:
                    yield _join(mod_prefix, name), p
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    yield _join(mod_prefix, name), b

    def state_dict(self):
        """OrderedDict of name -> NumPy array copy for every parameter and persistent buffer."""
        return OrderedDict((k, np.array(backend.to_device(t.data, "cpu"))) for k, t in self._state_items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the existing arrays, in place, so anyone holding the arrays sees the values.

        Missing or unexpected keys raise with strict=True (and are returned with strict=False);
        shape mismatches always raise. Nothing is modified unless the whole load can succeed.
        """
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        shapes = {k: tuple(_plain(state_dict[k]).shape) for k in own if k in state_dict}
        mismatched = [(k, s, own[k].shape) for k, s in shapes.items() if s != own[k].shape]
        problems = []
        if strict and missing:
            problems.append("missing key(s): " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected key(s): " + ", ".join(unexpected))
        problems += [f"size mismatch for {k}: checkpoint has shape {s}, the model has shape {m}"
                     for k, s, m in mismatched]
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        for k, t in own.items():
            if k in state_dict:
                t.data[...] = backend.to_device(_plain(state_dict[k]), t.device)
        mark_written([t for k, t in own.items() if k in state_dict])
        return IncompatibleKeys(missing, unexpected)

    # -- printing ---------------------------------------------------------------------------
    def extra_repr(self):
        """One-line description of the layer's settings, shown inside its parentheses."""
        return ""

    def _tree_repr(self, top):
        n = _count(self.parameters())
        head = f"{type(self).__name__}({self.extra_repr()}"
        children = [(name, m) for name, m in self._modules.items() if m is not None]
        if not children:
            return head + ")" + (f"  # {n:,} params" if n and not top else "")
        lines = [head]
        for name, m in children:
            lines.append(f"  ({name}): " + m._tree_repr(top=False).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)" + (f"  # {n:,} params" if n and not top else "")

    def __repr__(self):
        params = list(self.parameters())
        total, trainable = _count(params), _count(p for p in params if p.requires_grad)
        return self._tree_repr(top=True) + f"\nTotal: {total:,} params ({trainable:,} trainable)"


def _plain(value):
    """A state_dict value (array, Tensor, number or list) as an array."""
    if isinstance(value, Tensor):
        return value.data
    return value if hasattr(value, "shape") else np.asarray(value)


def _count(params):
    return sum(int(p.size) for p in params)


class Sequential(Module):
    """Modules applied in order. Sequential(a, b, c) or Sequential(OrderedDict(name=module, ...))."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = modules[0].items()
        else:
            items = ((str(i), m) for i, m in enumerate(modules))
        for name, m in items:
            self.add_module(name, m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters are registered (a plain list would hide them)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _renumber(self, modules):
        self._modules.clear()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return list(self._modules.values())[index]

    def __setitem__(self, index, module):
        modules = list(self._modules.values())
        modules[index] = module
        self._renumber(modules)

    def __delitem__(self, index):
        modules = list(self._modules.values())
        del modules[index]
        self._renumber(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._renumber(modules)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(): iterate over it in your own forward()")
