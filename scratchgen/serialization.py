"""Checkpoints: `save(obj, path)` / `load(path)`, an .npz file, never pickle.

`obj` is a (nested) dict / list / tuple of arrays, Tensors, numbers, strings, bools and
None, e.g. {'model': model.state_dict(), 'optim': opt.state_dict(), 'epoch': 3}.
Each array becomes one npz entry; the structure and the plain values go in one JSON
string entry. Loading gives the same structure back with dtypes and shapes unchanged,
except that Tensors come back as NumPy arrays (and CuPy arrays as NumPy arrays);
NumPy scalars (np.float32(1.5)) come back as NumPy scalars, OrderedDicts as OrderedDicts,
tuples as tuples. Dict keys may be str, int, float, bool or None.

The file is written to `path` exactly as given (no '.npz' is appended), atomically:
into a temporary file in the same directory, flushed and fsynced, then renamed over
`path`, so a crash mid-write never leaves a truncated checkpoint behind.
"""
import json
import os
import secrets
from collections import OrderedDict

import numpy as np

from . import backend
from .tensor import Tensor

_STRUCTURE = "__scratchgen_structure__"
_FORMAT = "scratchgen-checkpoint"
_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated, corrupt, or not a scratchgen checkpoint."""


def _encode(obj, arrays, where):
    """A JSON-able description of obj; arrays are appended to `arrays` and referred to by name."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    if isinstance(obj, Tensor):
        obj = obj.data
    if isinstance(obj, (np.ndarray, np.generic)) or type(obj).__module__.startswith("cupy"):
        arr = np.asarray(obj if isinstance(obj, np.generic) else backend.to_device(obj, "cpu"))
        if arr.dtype.hasobject:
            raise TypeError(f"{where}: cannot save an array of dtype object (it would need pickle)")
        name = f"a{len(arrays)}"
        arrays[name] = arr
        return {"a": name, "scalar": True} if isinstance(obj, np.generic) else {"a": name}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"{where}: dict key {k!r} of type {type(k).__name__} cannot be saved "
                                f"(use str, int, float, bool or None)")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"od" if isinstance(obj, OrderedDict) else "d": items}
    if isinstance(obj, (list, tuple)):
        seq = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"t" if isinstance(obj, tuple) else "l": seq}
    hint = " (save module.state_dict() instead)" if hasattr(obj, "state_dict") else ""
    raise TypeError(f"{where}: cannot save an object of type {type(obj).__name__}{hint}")


def _decode(node, arrays):
    if "v" in node:
        return node["v"]
    if "a" in node:
        arr = arrays[node["a"]]
        return arr[()] if node.get("scalar") else arr
    if "d" in node or "od" in node:
        pairs = ((k, _decode(v, arrays)) for k, v in node.get("d", node.get("od")))
        return OrderedDict(pairs) if "od" in node else dict(pairs)
    if "l" in node:
        return [_decode(v, arrays) for v in node["l"]]
    if "t" in node:
        return tuple(_decode(v, arrays) for v in node["t"])
    raise ValueError(f"unknown node {node!r}")


def save(obj, path):
    """Write obj to `path` atomically (temp file in the same directory, fsync, rename)."""
    arrays = {}
    structure = {"format": _FORMAT, "version": _VERSION, "root": _encode(obj, arrays, "obj")}
    arrays[_STRUCTURE] = np.array(json.dumps(structure))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never clobber another writer's temp file; mode 0o666 lets the umask decide, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load(path):
    """Read a checkpoint written by `save`. Arrays (and saved Tensors) come back as NumPy arrays.

    Pickled data is never loaded; a truncated, corrupt or foreign file raises CheckpointError
    naming the path.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _STRUCTURE not in z.files:
                raise ValueError("no structure entry: not written by scratchgen.save")
            structure = json.loads(str(z[_STRUCTURE]))
            if structure.get("format") != _FORMAT or structure.get("version") != _VERSION:
                raise ValueError(f"unknown format {structure.get('format')!r} version {structure.get('version')!r}")
            arrays = {name: z[name] for name in z.files if name != _STRUCTURE}
        return _decode(structure["root"], arrays)
    except Exception as e:
        if "pickle" in str(e).lower():
            raise CheckpointError(f"{path!r} contains pickled data, which scratchgen.load refuses to "
                                  f"read (it could run arbitrary code)") from e
        raise CheckpointError(f"cannot read checkpoint {path!r} (truncated, corrupt, or not written by "
                              f"scratchgen.save): {type(e).__name__}: {e}") from e
