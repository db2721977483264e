"""Compiled kernels, installed as `scratchgen.kernels` (see setup.py `package_dir`).

Submodules are imported on demand (`from scratchgen.kernels import optim_step`), so importing
this package compiles nothing.
"""
