"""Models that `scratchgen train NAME` can build. Every module in this package is imported here,
so a model registers itself (`@register("name")`) just by having a file in scratchgen/models/.

The model classes a module lists in `__all__` are exported here too, so
`scratchgen.models.MADE(...)` and `scratchgen.models.NICE(...)` work as in PyTorch's torchvision.models.

A module that fails to import does not take the others down: its error is kept and shown
when the model is asked for (`scratchgen.models.import_errors()`).
"""
import importlib
import pkgutil
import traceback

from .registry import (  # noqa: F401
    ModelSpec, UnknownModelError, available, create, defaults_of, get, import_errors, register,
)
from . import registry as _registry


def _import_all():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "registry":
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as e:  # noqa: BLE001 - keep the registry usable, report it on lookup
            last = traceback.extract_tb(e.__traceback__)[-1]
            _registry._IMPORT_ERRORS[info.name] = f"{type(e).__name__}: {e} ({last.filename}:{last.lineno})"
            continue
        for name in getattr(module, "__all__", ()):
            globals()[name] = getattr(module, name)


_import_all()
