"""What `scratchgen train NAME` trains: for each registered name, a `ModelSpec` that builds a model
of scratchgen.models and gives its data, training objective, evaluation and pictures.

    from scratchgen.specs import create
    spec = create("vae", {"epochs": 5})    # the registered defaults, updated with these settings
    model = spec.build()

Every module in this package is imported here, so a spec registers itself (`@register("name")`)
just by having a file in scratchgen/specs/. A module that fails to import does not take the
others down: its error is kept and shown when the name is asked for (`import_errors()`).
"""
import importlib
import pkgutil
import traceback

from .registry import (  # noqa: F401
    ModelSpec, UnknownModelError, available, create, defaults_of, get, import_errors, register,
)
from . import registry as _registry

_NOT_SPECS = ("registry", "settings", "vae_pictures", "finite_samples")


def _import_all():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _NOT_SPECS:
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
        except Exception as e:  # noqa: BLE001 - keep the registry usable, report it on lookup
            last = traceback.extract_tb(e.__traceback__)[-1]
            _registry._IMPORT_ERRORS[info.name] = f"{type(e).__name__}: {e} ({last.filename}:{last.lineno})"


_import_all()
