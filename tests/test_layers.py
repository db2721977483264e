"""The architecture of docs/design.md holds in the code: imports only run down the layers
engine -> ops -> nn -> models -> specs -> recipes -> cli (kernels beside ops; data, optim,
train, metrics and plots in between), never back up. Function-level imports count too."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "scratchgen"


def layer_of(module):
    """'scratchgen.ops.conv' -> 'ops'; 'scratchgen.tensor' -> 'engine'; kernels -> 'kernels'."""
    parts = module.split(".")
    if parts[0] == "kernels" or parts[:2] == ["scratchgen", "kernels"]:
        return "kernels"
    if parts[0] != "scratchgen" or len(parts) == 1:
        return None
    name = parts[1]
    if name in ("ops", "losses", "distributions", "linalg", "torch_names"):
        return "ops"
    if name == "ood":   # the `scratchgen ood` study: a command, on the command line's layer
        return "cli"
    if name in ("nn", "optim", "data", "models", "specs", "recipes", "cli", "train", "metrics", "plots"):
        return name
    return "engine"


# What each layer must never import (directly or inside a function).
FORBIDDEN = {
    "engine": {"nn", "optim", "data", "models", "specs", "recipes", "cli", "train", "metrics", "plots"},
    "ops": {"nn", "optim", "data", "models", "specs", "recipes", "cli", "train", "metrics", "plots"},
    "kernels": {"nn", "optim", "data", "models", "specs", "recipes", "cli", "train", "metrics", "plots"},
    "nn": {"optim", "data", "models", "specs", "recipes", "cli", "train", "metrics", "plots"},
    "optim": {"data", "models", "specs", "recipes", "cli", "train", "metrics", "plots"},
    "data": {"nn", "optim", "models", "specs", "recipes", "cli", "train", "metrics", "plots"},
    "models": {"optim", "data", "specs", "recipes", "cli", "train", "metrics", "plots"},
    "train": {"models", "specs", "recipes", "cli", "metrics", "plots"},
    "metrics": {"recipes", "cli"},
    "plots": {"models", "specs", "recipes", "cli", "train", "metrics"},
    "specs": {"recipes", "cli"},
    "recipes": {"engine", "ops", "kernels", "nn", "optim", "data", "models", "specs", "cli", "train", "metrics",
                "plots"},
}


def imports(path, module):
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if node.module is None or target.count(".") <= 1:   # `from .. import nn`: the names are modules
                for alias in node.names:
                    yield f"{target}.{alias.name}", node.lineno
            else:
                yield target, node.lineno


def modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        yield path, ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        yield path, ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def test_imports_only_run_down_the_layers():
    bad = []
    for path, module in modules():
        own = layer_of(module)
        for target, line in imports(path, module):
            other = layer_of(target)
            if other and other != own and other in FORBIDDEN.get(own, ()):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target} ({other})")
    assert not bad, "imports that run back up the layers:\n" + "\n".join(bad)


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from ..specs import create\n    from . import made\n")
    found = [(layer_of(t), line) for t, line in imports(fake, "scratchgen.models.fake")]
    assert ("specs", 2) in found and ("models", 3) in found
    assert "specs" in FORBIDDEN["models"]
