"""The `scratchgen` command line, run in-process through cli.main() on tiny slices of MNIST
(the bundled subset: SCRATCHGEN_DATA is unset here)."""
import json
import os

import numpy as np
import pytest

from scratchgen import checkpoint, cli
from scratchgen.specs import ModelSpec, available, create, register, registry

TINY = ["--limit-train", "256", "--limit-eval", "200", "--batch-size", "64", "--no-progress", "--seed", "0"]
RUN_FILES = ["config.json", "metrics.jsonl", "checkpoint.npz", "best.npz", "results.json",
             "samples.png", "curves.png"]


@pytest.fixture(autouse=True)
def bundled_data(monkeypatch):
    monkeypatch.delenv("SCRATCHGEN_DATA", raising=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny `scratchgen train mlp` run, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "mlp-tiny"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SCRATCHGEN_DATA", raising=False)
        assert cli.main(["train", "mlp", "--epochs", "1", "--out", str(out)] + TINY) == 0
    return out


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_train_writes_every_file(run_dir):
    for name in RUN_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "mlp" and config["epochs"] == 1 and config["limit_train"] == 256
    assert config["batch_size"] == 64 and config["lr"] == 2e-3 and "bundled" in config["data_source"]
    records = jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1]
    assert {"train_loss", "valid_loss", "valid_acc", "time_s", "examples_per_s"} <= set(records[0])
    results = json.loads((run_dir / "results.json").read_text())
    assert 0.0 <= results["test_acc"] <= 1.0 and results["best_epoch"] == 1
    assert (run_dir / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_train_prints_which_data(tmp_path, capsys):
    assert cli.main(["train", "mlp", "--epochs", "1", "--out", str(tmp_path / "r")] + TINY) == 0
    out = capsys.readouterr().out
    assert "data:" in out and "test_acc" in out


def test_sample_and_evaluate(run_dir, tmp_path, capsys):
    png = tmp_path / "s.png"
    assert cli.main(["sample", str(run_dir), "--n", "12", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["evaluate", str(run_dir), "--split", "test", "--json", "--limit-eval", "200"]) == 0
    out = capsys.readouterr().out
    assert "data:" in out
    metrics = json.loads(out.strip().splitlines()[-1])
    results = json.loads((run_dir / "results.json").read_text())
    assert metrics["test_acc"] == pytest.approx(results["test_acc"])  # same weights, same split
    assert cli.main(["evaluate", str(run_dir), "--split", "valid", "--checkpoint", "last"]) == 0


def test_evaluate_takes_evaluation_settings_and_refuses_what_does_not_fit(tmp_path, capsys):
    run = tmp_path / "vae"
    assert cli.main(["train", "vae", "--epochs", "1", "--limit-train", "128", "--limit-eval", "64",
                     "--set", "hidden=[16]", "--set", "latent=2", "--set", "iwae_k=2", "--no-progress",
                     "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--limit-eval", "32", "--set", "iwae_k=7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["iwae_k"] == 7
    assert cli.main(["evaluate", str(run), "--set", "no_such_key=1"]) == 1
    assert "no_such_key" in capsys.readouterr().err
    assert cli.main(["evaluate", str(run), "--limit-eval", "32", "--set", "hidden=[8]"]) == 1
    err = capsys.readouterr().err
    assert "hidden changed the model" in err and "Traceback" not in err


@pytest.mark.parametrize("averaging", [[], ["--set", "ema=0.9"]], ids=["live", "ema"])
def test_resume_after_a_crash_continues_exactly(tmp_path, monkeypatch, capsys, averaging, crash_while_saving):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    flags = TINY + averaging
    assert cli.main(["train", "mlp", "--epochs", "2", "--out", str(straight)] + flags) == 0

    # Kill the second run while it saves epoch 2: its checkpoint stays at epoch 1.
    with crash_while_saving(2):
        assert cli.main(["train", "mlp", "--epochs", "2", "--out", str(crashed)] + flags) == 130
    assert "--resume" in capsys.readouterr().err
    # the crash came while saving epoch 2 (best.npz, then its line, then checkpoint.npz): at most
    # that line is there, and the resume cuts it off and writes it again
    assert [r["epoch"] for r in jsonl(crashed / "metrics.jsonl")] in ([1], [1, 2])

    assert cli.main(["train", "mlp", "--out", str(crashed), "--resume", "--no-progress"]) == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().out
    a, b = jsonl(straight / "metrics.jsonl"), jsonl(crashed / "metrics.jsonl")
    assert [r["epoch"] for r in b] == [1, 2]
    for key in ("train_loss", "valid_loss", "valid_acc", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b], key  # exact equality
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (straight, crashed))
    assert ra["test_acc"] == rb["test_acc"] and ra["test_loss"] == rb["test_loss"]
    saved = checkpoint.load_checkpoint(crashed / "checkpoint.npz", restore_rng=False)
    assert ("ema" in saved["extra"]) == bool(averaging)


def test_gan_spec_averages_only_the_generator():
    spec = create("gan", {"ema": 0.99, "metric": "none"})
    model = spec.build()
    ema = spec.make_ema(model)
    assert ema.decay == 0.99
    assert [id(p) for p in ema.params] == [id(p) for p in model.generator.parameters()]
    assert create("gan", {"metric": "none"}).make_ema(model) is None


def test_gan_spec_puts_spectral_norm_in_the_discriminator_only_when_asked():
    from scratchgen.nn import SpectralNorm
    count = lambda m: sum(isinstance(x, SpectralNorm) for x in m.modules())  # noqa: E731
    model = create("gan", {"d_spectral_norm": True, "metric": "none"}).build()
    assert count(model.discriminator) == 3 and count(model.generator) == 0
    assert count(create("gan", {"metric": "none"}).build()) == 0


def test_gan_spec_plays_the_hinge_game_when_asked():
    from scratchgen.models.gan import GAN, HingeGAN
    assert isinstance(create("gan", {"loss": "hinge", "metric": "none"}).build(), HingeGAN)
    assert type(create("gan", {"metric": "none"}).build()) is GAN
    with pytest.raises(ValueError, match="label_smoothing"):
        create("gan", {"loss": "hinge", "label_smoothing": 0.1, "metric": "none"}).build()
    with pytest.raises(ValueError, match="'bce'"):
        create("gan", {"loss": "wasserstein", "metric": "none"}).build()


def test_data_list(capsys):
    assert cli.main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out.lower() and "data root" in out


def test_models_lists_mlp(capsys):
    assert cli.main(["models"]) == 0
    assert "mlp" in capsys.readouterr().out


def test_unknown_model_lists_available(capsys):
    assert cli.main(["train", "no-such-model", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "no-such-model" in err and "mlp" in err


def test_missing_run_dir_is_named(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli.main(["evaluate", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err
    assert cli.main(["sample", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err


def test_refuses_to_overwrite_a_run_and_checks_resume(run_dir, tmp_path, capsys):
    assert cli.main(["train", "mlp", "--epochs", "1", "--out", str(run_dir)] + TINY) == 1
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["train", "mlp", "--resume"]) == 1
    assert "--out" in capsys.readouterr().err
    assert cli.main(["train", "mlp", "--resume", "--out", str(tmp_path / "empty")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bad_data_dir(tmp_path, capsys):
    assert cli.main(["train", "mlp", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_data_flag_does_not_leak(tmp_path):
    empty = tmp_path / "emptyroot"
    empty.mkdir()
    cli.main(["data", "list", "--data", str(empty)])
    assert "SCRATCHGEN_DATA" not in os.environ


def test_registry_accepts_factories():
    class Toy(ModelSpec):
        description = "toy"
        defaults = {"epochs": 3}

    @register("toy-factory-for-test", defaults={"lr": 0.5})
    def make(config):
        return Toy(config)

    try:
        spec = create("toy-factory-for-test", {"epochs": 7})
        assert "toy-factory-for-test" in available()
        assert spec.config["epochs"] == 7 and spec.config["lr"] == 0.5
        assert spec.name == "toy-factory-for-test"
    finally:
        registry._REGISTRY.pop("toy-factory-for-test", None)


BAD_INPUT = [  # (argv, words the one-line error must contain)
    (["train", "mlp", "--epochs", "0"], "--epochs: must be >= 1"),
    (["train", "mlp", "--batch-size", "0"], "--batch-size: must be >= 1"),
    (["train", "mlp", "--lr", "-1"], "--lr: must be a positive"),
    (["train", "mlp", "--lr", "nan"], "--lr: must be a positive"),
    (["train", "mlp", "--threads", "-1"], "--threads: must be >= 1"),
    (["train", "mlp", "--limit-train", "0"], "--limit-train: must be >= 1"),
    (["train", "mlp", "--limit-train", "-5"], "--limit-train: must be >= 1"),
    (["train", "mlp", "--limit-eval", "x"], "--limit-eval: expected a whole number"),
    (["train", "mlp", "--set", "no_such_key=3"], "has no setting 'no_such_key'"),
    (["train", "mlp", "--set", "hiden=[3]"], "did you mean 'hidden'"),
    (["train", "mlp", "--set", "hidden=abc"], "hidden='abc': expected list"),
    (["train", "mlp", "--set", "augment=3"], "expected true/false"),
    (["train", "mlp", "--set", "novalue"], "expected KEY=VALUE"),
    (["train", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["models", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["train", "mlp", "--device", "gpu"], "invalid choice: 'gpu'"),
    (["sample", "RUN", "--n", "0"], "--n: must be >= 1"),
    (["sample", "RUN", "--n", "-3"], "--n: must be >= 1"),
    (["evaluate", "RUN", "--split", "bogus"], "invalid choice: 'bogus'"),
]


@pytest.mark.parametrize("argv,words", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_gets_a_one_line_error_and_a_nonzero_exit(argv, words, run_dir, tmp_path, capsys):
    argv = [str(run_dir) if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "r")]
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code not in (0, None)
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # no empty run folder left behind


def test_models_name_lists_settings_with_types_defaults_and_meaning(capsys):
    assert cli.main(["models", "made"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("hidden "))
    assert "list" in line and "[500]" in line and "hidden layer width" in line


def test_every_setting_of_every_model_has_a_meaning():
    from scratchgen.specs.settings import meaning, settings_of
    missing = {name: k for name in available() for k in settings_of(create(name)) if not meaning(create(name), k)}
    assert not missing


def test_cuda_without_cupy_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_cupy(name, *a, **k):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *a, **k)

    from scratchgen import backend
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    assert cli.main(["train", "mlp", "--device", "cuda", "--out", str(tmp_path / "r")] + TINY) == 1
    err = capsys.readouterr().err
    assert "--device cuda" in err and "CuPy" in err and "Traceback" not in err


def test_a_second_run_on_the_same_folder_stops_with_a_clear_message(tmp_path, capsys):
    import fcntl
    out = tmp_path / "r"
    out.mkdir()
    with open(out / ".lock", "a+") as held:  # what a running `scratchgen train --out r` holds
        held.write("pid 4242\n")
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(["train", "mlp", "--epochs", "1", "--out", str(out)] + TINY) == 1
    err = capsys.readouterr().err
    assert "in use by a running scratchgen (pid 4242)" in err and "--out" in err
    assert not (out / "checkpoint.npz").exists()


def test_a_run_clears_temporary_files_a_killed_run_left(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    for name in (".checkpoint.npz.1a2b3c.tmp", "results.json.tmp"):
        (out / name).write_bytes(b"half")
    assert cli.main(["train", "mlp", "--epochs", "1", "--out", str(out)] + TINY) == 0
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp")) and not (out / ".lock").exists()


@pytest.mark.parametrize("model,settings", [
    ("made", ["--set", "num_masks=3", "--set", "hidden=[32]", "--set", "resample_every=2"]),
    ("vae", ["--set", "binarization=dynamic", "--set", "hidden=[32]", "--set", "latent=4"]),
], ids=["made-masks", "vae-dynamic"])
def test_resume_restores_training_state_outside_model_and_optimizer(tmp_path, monkeypatch, model, settings,
                                                                      crash_while_saving):
    """MADE's mask schedule and the VAE's binarization noise live in the spec, not the model: the
    checkpoint carries them, so a resumed run matches an uninterrupted one bit for bit."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    flags = ["--limit-train", "200", "--limit-eval", "100", "--batch-size", "50", "--no-progress"] + settings
    import scratchgen.data
    rows = (np.random.default_rng(0).random((200, 784)) < 0.3).astype(np.float32)
    stand_in = lambda split, *a, **k: rows  # noqa: E731 - MADE's binarized MNIST, small
    monkeypatch.setattr(scratchgen.data, "load_binarized", stand_in)
    assert cli.main(["train", model, "--epochs", "3", "--out", str(straight)] + flags) == 0
    with crash_while_saving(2):
        assert cli.main(["train", model, "--epochs", "3", "--out", str(crashed)] + flags) == 130
    assert cli.main(["train", model, "--out", str(crashed), "--resume", "--no-progress"]) == 0
    a, b = jsonl(straight / "metrics.jsonl"), jsonl(crashed / "metrics.jsonl")
    assert [r["epoch"] for r in b] == [1, 2, 3]
    keys = [k for k in a[0] if k.startswith(("train_", "valid_"))]
    for key in keys:
        assert [r[key] for r in a] == [r[key] for r in b], key


def test_resume_with_more_epochs_stretches_a_cosine_schedule(run_dir, tmp_path, capsys):
    import shutil
    out = tmp_path / "more"
    shutil.copytree(run_dir, out)  # a finished 1-epoch run: its cosine ended at lr 0
    assert cli.main(["train", "mlp", "--out", str(out), "--resume", "--epochs", "3", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "stretched to 3" in said
    lrs = [r["lr"] for r in jsonl(out / "metrics.jsonl")]
    assert len(lrs) == 3 and lrs[1] > 0 and lrs[2] > 0  # not stuck at the old plan's final 0


def test_evaluate_scores_the_whole_split_unless_told(run_dir, capsys):
    """Training's --limit-eval (200 here) limited its validation; evaluate scores all 2,000 bundled
    test digits unless given its own --limit-eval."""
    assert cli.main(["evaluate", str(run_dir), "--json"]) == 0
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli.main(["evaluate", str(run_dir), "--json", "--limit-eval", "200"]) == 0
    out = capsys.readouterr().out
    part = json.loads(out.strip().splitlines()[-1])
    assert "first 200 examples" in out
    assert full["test_acc"] * 2000 == pytest.approx(round(full["test_acc"] * 2000))
    assert full != part


def test_made_says_which_binarized_mnist_it_trains_on(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_DATA", str(tmp_path))  # no files: the announced fallback
    said = create("made").describe_data()
    assert said.startswith("fallback:") and "binarized once with a fixed seed" in said
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"binarized_mnist_{split}.amat").write_text("0 1\n")
    assert create("made").describe_data().startswith("binarized MNIST (Larochelle's")


def test_resume_refuses_data_other_than_the_run_trained_on(run_dir, tmp_path, monkeypatch, capsys):
    import shutil
    out = tmp_path / "moved"
    shutil.copytree(run_dir, out)      # trained on the bundled subset
    fake = tmp_path / "data" / "mnist"
    fake.mkdir(parents=True)
    (fake / "train-images-idx3-ubyte").write_bytes(b"")
    monkeypatch.setenv("SCRATCHGEN_DATA", str(tmp_path / "data"))
    assert cli.main(["train", "mlp", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 1
    assert "resume with the same data" in capsys.readouterr().err


def test_resume_compares_data_sources_with_their_paths_normalized():
    a = "mnist: /work/main/../shared/data/mnist (60000 train, 10000 test)"
    assert cli._same_source(a, "mnist: /work/shared/data/mnist (60000 train, 10000 test)")
    assert not cli._same_source(a, "mnist: /work/other/data/mnist (60000 train, 10000 test)")
    assert not cli._same_source(a, "mnist: bundled subset (13300 train, 1000 valid, 2000 test); no files in /x")
