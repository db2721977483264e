"""Every registered model trains, samples and evaluates from the CLI as on a fresh install:
offline, with an empty cache (XDG_CACHE_HOME) and an empty data folder (SCRATCHGEN_DATA), so
MNIST comes from the bundled subset and binarized MNIST from its announced fallback. Tiny sizes
keep it in budget."""
import json

import pytest

from scratchgen import cli
from scratchgen.specs import available, create
from scratchgen.specs.settings import settings_of

TINY_SETTINGS = {
    "hidden": None, "g_hidden": [16], "d_hidden": [16], "channels": 4, "blocks": 1, "layers": 2,
    "out_channels": 4, "couplings": 2, "hidden_layers": 1, "latent": 2, "latent_dim": 12,
    "eval_samples": 64, "parzen_samples": 64, "n_train": 256, "iwae_k": 0, "eval_k": 100,
}


def _tiny(model):
    known = settings_of(create(model))
    flags = []
    for key, value in TINY_SETTINGS.items():
        if key not in known:
            continue
        if key == "hidden":  # a list for most models, a width for NICE
            value = 16 if isinstance(known[key], int) else [16] * max(1, len(known[key]))
        flags += ["--set", f"{key}={json.dumps(value)}"]
    if "metric" in known:  # FID/IS need a classifier trained on first use (test_metrics covers that path)
        flags += ["--set", "metric=none"]
    return flags


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    (root / "cache").mkdir()
    (root / "data").mkdir()
    return root


@pytest.mark.parametrize("model", available())
def test_train_sample_evaluate_on_a_fresh_install(model, fresh, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(fresh / "cache"))
    monkeypatch.setenv("SCRATCHGEN_DATA", str(fresh / "data"))
    out = fresh / model
    argv = ["train", model, "--epochs", "1", "--limit-train", "128", "--limit-eval", "64", "--batch-size", "32",
            "--no-progress", "--out", str(out)] + _tiny(model)
    assert cli.main(argv) == 0, capsys.readouterr().err
    said = capsys.readouterr()
    assert "Traceback" not in said.err
    results = json.loads((out / "results.json").read_text())
    assert results["data_source"]  # recorded in the run: which data it really used
    assert cli.main(["sample", str(out), "--n", "4", "--out", str(out / "again.png")]) == 0
    assert (out / "again.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["evaluate", str(out), "--limit-eval", "64", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics and all(k.startswith("test_") for k in metrics)


@pytest.mark.parametrize("model", available())
def test_resume_after_a_crash_is_bit_exact_for_every_model(model, fresh, tmp_path, monkeypatch, crash_while_saving):
    """Killed while saving epoch 2, then resumed: the same metrics, to the last bit, as a run that
    was never interrupted (RNG streams, data order, mask schedules, schedulers, averages)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(fresh / "cache"))
    monkeypatch.setenv("SCRATCHGEN_DATA", str(fresh / "data"))
    flags = ["--limit-train", "96", "--limit-eval", "32", "--batch-size", "32", "--no-progress"] + _tiny(model)
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert cli.main(["train", model, "--epochs", "2", "--out", str(straight)] + flags) == 0
    with crash_while_saving(2):
        assert cli.main(["train", model, "--epochs", "2", "--out", str(crashed)] + flags) == 130
    assert cli.main(["train", model, "--out", str(crashed), "--resume", "--no-progress"]) == 0

    def lines(run):
        with open(run / "metrics.jsonl") as f:
            return [{k: v for k, v in json.loads(line).items() if k not in ("time_s", "examples_per_s")}
                    for line in f]
    assert lines(straight) == lines(crashed)
