"""Every script in examples/ is a short API tour that runs in seconds and asserts what it shows.

Each runs in a fresh interpreter, from an empty folder, without $SCRATCHGEN_DATA and with a
non-interactive matplotlib backend, as a user would run it after `pip install scratchgen`.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# The line each tour prints once its assertions have passed (any one of them, where the outcome
# depends on the machine).
KEY_LINES = {
    "backprop_by_hand.py": ["backprop by hand == autograd: OK"],
    "coupling_inverse.py": ["coupling flows invert exactly, and their log-det is the Jacobian's: OK"],
    "gradient_penalty.py": ["double backward through the gradient penalty matches finite differences: OK"],
    "made_mask_jacobian.py": ["Jacobian strictly lower-triangular in the autoregressive order: OK"],
    "masked_conv_receptive_field.py": ["PixelCNN has a blind spot, Gated PixelCNN has none: OK"],
    "reparameterization.py": ["both unbiased, the pathwise estimator has the lower variance: OK"],
    "same_model_on_cuda.py": ["same model, same losses on CPU and CUDA: OK", "no CUDA device"],
}
# Modules being reorganised, or meant for the command line: the tours teach the library API.
NOT_FOR_TOURS = ("scratchgen.train", "scratchgen.cli", "scratchgen.specs", "scratchgen.recipes",
                 "scratchgen.models.registry")


def test_every_example_has_a_key_line():
    assert sorted(p.name for p in EXAMPLES) == sorted(KEY_LINES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", TMPDIR=str(tmp_path))   # a temp dir a tour makes lands here
    env.pop("SCRATCHGEN_DATA", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert any(line in done.stdout for line in KEY_LINES[path.name]), done.stdout[-2000:]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_short_tour(path):
    source = path.read_text()
    assert len(source.splitlines()) < 100, f"{path.name}: a tour stays under 100 lines"
    tree = ast.parse(source)
    assert ast.get_docstring(tree), f"{path.name}: the module docstring says what the tour teaches"
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for a in node.names}     # `from scratchgen import train` reads as scratchgen.train
    assert not {m for m in imported if m.startswith(NOT_FOR_TOURS)}, f"{path.name} imports {imported}"
