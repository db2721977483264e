"""Compiled kernels, installed as `scratchgen.kernels` (see setup.py `package_dir`).

Submodules are imported on demand (`from scratchgen.kernels import optim_step`), so importing
this package compiles nothing. `force_impl(name)` (from dispatch.py, which owns the choice of
implementation) runs every kernel call of a block with one implementation, for tests and
benchmarks: `with scratchgen.kernels.force_impl("reference"): ...`.
"""
from .dispatch import force_impl  # noqa: F401
