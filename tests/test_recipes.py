"""Every recipe runs end to end at its smoke budget, writes the metric it reproduces, and only
uses settings its model has; `scratchgen reproduce` compares against the tolerance."""
import json
import math
import os

import pytest

from scratchgen import cli, recipes
from scratchgen.specs import available, create
from scratchgen.specs.settings import check_settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = recipes.available()


def test_every_recipe_names_a_model_its_settings_and_its_numbers():
    assert {"made_mnist", "nice_mnist", "vae_iwae", "gan_sn", "wgan_gp_toy", "pixelcnn_small"} <= set(NAMES)
    for name in NAMES:
        r = recipes.get(name)
        assert r.model in available(), name
        check_settings(r.model, create(r.model), r.config(smoke=True))   # raises on a key the model lacks
        assert r.tolerance > 0 and r.budget and r.measured and r.data, name
        assert os.path.exists(os.path.join(ROOT, r.docs)), (name, r.docs)
        assert r.command().startswith(f"scratchgen train {r.model}")


@pytest.mark.parametrize("name", NAMES)
def test_recipe_smoke_run_writes_its_metric(name, tmp_path, capsys):
    r = recipes.get(name)
    out = tmp_path / name
    assert cli.main(["reproduce", name, "--smoke", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results[r.metric])
    said = capsys.readouterr().out
    assert f"ours {r.metric}" in said and "not compared" in said


def test_reproduce_fails_clearly_outside_the_tolerance(tmp_path, capsys, monkeypatch):
    # A recipe whose expected number its (tiny) run cannot reach: the command says so and exits 1.
    import dataclasses
    r = recipes.get("mlp_mnist")
    fake = dataclasses.replace(r, settings=r.smoke, expected=2.0, tolerance=0.1)
    monkeypatch.setitem(recipes._load(), "mlp_mnist", fake)
    assert cli.main(["reproduce", "mlp_mnist", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "did not reproduce" in capsys.readouterr().err


def test_reproduce_list_and_unknown_names(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in NAMES) and "CPU" in listed
    assert cli.main(["reproduce", "made_mnst"]) == 1
    assert "did you mean 'made_mnist'" in capsys.readouterr().err
