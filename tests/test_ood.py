"""The OOD study (scratchgen/ood/): AUPR and AUROC against hand-computed values and scikit-learn,
the scores' sign convention, and the study end to end at a tiny budget: sequential and on a Dask
LocalCluster with the same per-digit numbers, a worker killed mid-task (its task is retried and
resumes from its checkpoint), and a rerun that trains nothing."""
import functools
import os

import numpy as np
import pytest

from scratchgen.ood import scores as S
from scratchgen.ood import study, tasks

TINY = dict(families=["vae"], digits=[0, 1], budgets={"vae": (1, 200)}, settings={"vae": {"hidden": [64], "latent": 8}},
            limit_valid=100, limit_test=300, compressors=("png", "context"), iwae_k=2, progress=False, log=None)


# -- metrics ------------------------------------------------------------------------------------------
def test_aupr_and_auroc_by_hand():
    # ranked: + (P 1, R 1/2), - , + (P 2/3, R 1), -  ->  AP = 1/2 * 1 + 1/2 * 2/3
    s, y = [0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]
    assert S.aupr(s, y) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert S.auroc(s, y) == pytest.approx(3 / 4)       # 3 of the 4 (positive, negative) pairs in order
    # a tie at the top: one threshold takes a positive and a negative together (P 1/2 at R 1/2)
    s, y = [0.5, 0.5, 0.2, 0.1], [1, 0, 1, 0]
    assert S.aupr(s, y) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert S.auroc(s, y) == pytest.approx(2.5 / 4)     # the tied pair counts one half
    precision, recall, thresholds = S.pr_curve(s, y)
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(recall, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(thresholds, [0.5, 0.2, 0.1])
    assert S.aupr([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0 and S.auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        S.aupr([1, 2], [0, 0])
    with pytest.raises(ValueError, match="not finite"):
        S.auroc([1, np.nan], [0, 1])


def test_aupr_and_auroc_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 400))
        y = (rng.random(n) < 0.1 + 0.3 * rng.random()).astype(int)
        y[0], y[1] = 0, 1
        s = rng.normal(size=n) + y * rng.random()
        if trial % 2:
            s = np.round(s, 1)                     # many ties
        assert S.aupr(s, y) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
        assert S.auroc(s, y) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)


def test_scores_are_higher_for_more_ood():
    nll = np.array([80.0, 120.0])
    assert np.all(np.diff(S.likelihood_ratio(nll, [90.0, 90.0])) > 0)     # less likely under p than under p_bg
    s = S.complexity_corrected([100.0, 100.0], [200.0, 100.0])             # equally likely, the simpler image
    assert s[1] > s[0]                                                      # is the surprising one
    assert s[0] == pytest.approx(100 / np.log(2) - 200)
    np.testing.assert_allclose(S.typicality([70.0, 100.0, 130.0], 100.0), [30.0, 0.0, 30.0])  # both tails
    blank, rng = np.zeros((1, 784), np.float32), np.random.default_rng(0)
    noise = (rng.random((1, 784)) < 0.5).astype(np.float32)
    for method in S.COMPRESSORS:                                            # a blank image is simple
        bits = S.complexity(np.concatenate([blank, noise]), method)
        assert bits[0] < bits[1], method
    assert S.context_bits(noise)[0] == pytest.approx(784, rel=0.05)       # ~1 bit a random pixel
    d = S.derive("discriminator", {"logit": np.array([3.0, -1.0])})
    assert d["disc"][1] > d["disc"][0]                                      # judged fake: more OOD


# -- the study ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sequential_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("ood") / "seq"
    summary = study.run_study(out, sequential=True, **TINY)
    return out, summary


def test_sequential_study_writes_its_tables(sequential_study):
    out, summary = sequential_study
    assert summary["run"] == {**summary["run"], "ran": 4, "reused": 0, "failed": [], "executor": "sequential"}
    fam = summary["families"]["vae"]
    assert set(fam["scores"]) == {"nll", "likelihood_ratio", "complexity_png", "complexity_context", "typicality"}
    for m in fam["scores"].values():
        assert set(m["aupr"]) == {0, 1} and all(0 <= v <= 1 for v in m["aupr"].values())
        assert m["mean_aupr"] == pytest.approx(np.mean(list(m["aupr"].values())))
    assert fam["budget"]["epochs_run"] == [1] and fam["budget"]["train_images"] == [200, 200]
    assert 0.05 < fam["positive_rate"] < 0.2
    for name in ("results.json", "results.md", "vae.png"):
        assert os.path.getsize(out / name) > 0
    for d in (0, 1):
        for role in ("main", "background"):
            folder = out / "vae" / f"digit_{d}" / role
            assert {"scores.npz", "task.json", "checkpoint.npz", "best.npz", "config.json"} <= set(os.listdir(folder))
    arrays, meta = tasks.load_scores(out / "vae" / "digit_1" / "main" / "scores.npz")
    assert len(arrays["labels"]) == 300 and 1 not in tasks.split_data("binary", "train", exclude=1)[1]
    assert "| **median** |" in (out / "results.md").read_text()


def _never(task):
    raise AssertionError(f"{task.label} ran again")


def test_rerun_of_a_finished_study_trains_nothing(sequential_study):
    out, summary = sequential_study
    mtime = os.path.getmtime(out / "vae" / "digit_0" / "main" / "checkpoint.npz")
    again = study.run_study(out, task_fn=_never, **TINY)           # the Dask path, had anything been left
    assert again["run"]["ran"] == 0 and again["run"]["reused"] == 4
    assert study.per_digit_numbers(again) == study.per_digit_numbers(summary)
    assert os.path.getmtime(out / "vae" / "digit_0" / "main" / "checkpoint.npz") == mtime
    with pytest.raises(study.StudyError, match="other settings.*epochs 1 -> 2"):
        study.run_study(out, **{**TINY, "budgets": {"vae": (2, 200)}})


def test_without_dask_the_tasks_run_one_after_another(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "dask_available", lambda: False)
    lines = []
    summary = study.run_study(tmp_path, **{**TINY, "digits": [7], "background": False, "log": lines.append})
    assert any("dask[distributed] is not installed" in line for line in lines)
    assert summary["run"]["executor"] == "sequential" and summary["run"]["ran"] == 1


def test_study_on_a_local_cluster_gives_the_sequential_numbers(sequential_study, tmp_path):
    pytest.importorskip("dask.distributed")
    _, seq = sequential_study
    summary = study.run_study(tmp_path, workers=2, **TINY)
    assert summary["run"]["executor"].startswith("dask") and summary["run"]["ran"] == 4
    a, b = study.per_digit_numbers(seq), study.per_digit_numbers(summary)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, err_msg=str(key))


def _die_after_training_once(marker, task):
    """The first attempt at digit 1's main task trains, then kills its worker process before
    writing the scores; the retry must resume from the checkpoint and finish."""
    if task.digit == 1 and task.role == "main" and not os.path.exists(marker):
        def die(*args, **kwargs):
            open(marker, "w").close()
            os._exit(1)
        tasks.save_scores = die
    try:
        return tasks.run_task(task)
    finally:
        tasks.save_scores = _SAVE


_SAVE = tasks.save_scores


def test_a_killed_worker_task_is_retried_and_resumes(sequential_study, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    import cloudpickle
    import sys
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this test module
    _, seq = sequential_study
    marker = tmp_path / "killed"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        summary = study.run_study(tmp_path / "study", scheduler=cluster.scheduler_address,
                                  task_fn=functools.partial(_die_after_training_once, str(marker)),
                                  **{**TINY, "digits": [1], "background": False})
    assert marker.exists()                                          # the worker did die
    assert summary["run"]["ran"] == 1 and not summary["run"]["failed"]
    _, meta = tasks.load_scores(tmp_path / "study" / "vae" / "digit_1" / "main" / "scores.npz")
    assert meta["resumed_after_epoch"] == 1                         # from the dead attempt's checkpoint
    a, b = study.per_digit_numbers(seq), study.per_digit_numbers(summary)
    assert len(b) == 4                                              # digit 1's scores but the background's
    for key in b:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, err_msg=str(key))


# -- the command line -------------------------------------------------------------------------------------
def test_cli_errors_are_one_line(tmp_path, capsys):
    from scratchgen.cli import main
    cases = [(["--families", "nosuch"], "family 'nosuch'"),
             (["--families", "vae", "--set", "vae.nosuch=1"], "has no setting 'nosuch'"),
             (["--families", "vae", "--budget", "pixelcnn=1"], "not among the study's families"),
             (["--families", "vae", "--iwae-k", "pixelcnn=1"], "not among the study's families"),
             (["--families", "vae", "--sequential", "--workers", "2"], "--sequential runs without Dask")]
    for extra, message in cases:
        assert main(["ood", "--out", str(tmp_path / "o"), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("scratchgen: error:") and message in err[0], err
        assert "Traceback" not in "\n".join(err)


def test_cli_runs_a_tiny_study(tmp_path, capsys):
    from scratchgen.cli import main
    out = tmp_path / "cli"
    argv = ["ood", "--families", "vae", "--digits", "3", "--budget", "1,100", "--limit-valid", "50", "--limit-test",
            "200", "--background", "none", "--iwae-k", "vae=1", "--sequential", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "vae AUPR %" in text and "digit 3" in text and "1 tasks trained" in text
    assert "-log p(x): the ELBO (IWAE k = 1)." in (out / "results.md").read_text()
    assert main(argv) == 0 and "0 tasks trained, 1 reused" in capsys.readouterr().out


@pytest.mark.parametrize("flag, text", [("--budget", "=2"), ("--budget", "x"), ("--iwae-k", "=3"),
                                        ("--iwae-k", "vae=0"), ("--iwae-k", "k")])
def test_malformed_budget_and_iwae_k_are_usage_errors(flag, text, capsys):
    from scratchgen.cli import main
    with pytest.raises(SystemExit) as stop:
        main(["ood", flag, text])
    assert stop.value.code == 2 and f"{flag} {text!r}: expected" in capsys.readouterr().err


def test_iwae_k_is_set_per_family_and_is_part_of_a_task_signature(tmp_path):
    fams = {name: tasks.family(name) for name in ("vae", "pixelcnn")}
    planned = study.plan(str(tmp_path), fams, [0], background=False, iwae_k={"vae": 1})
    assert {t.family: t.iwae_k for t in planned} == {"vae": 1, "pixelcnn": 10}
    assert {t.iwae_k for t in study.plan(str(tmp_path), fams, [0], background=False, iwae_k=3)} == {3}
    default_vae = next(t for t in study.plan(str(tmp_path), fams, [0], background=False) if t.family == "vae")
    vae = next(t for t in planned if t.family == "vae")
    assert (vae.signature()["iwae_k"], default_vae.signature()["iwae_k"]) == (1, 10)   # a rerun with other k won't reuse


def test_a_family_not_registered_yet_is_skipped_by_default(monkeypatch):
    monkeypatch.setattr(study, "DEFAULT_FAMILIES", ("vae", "not_registered_yet"))
    lines = []
    assert list(study.resolve_families(None, log=lines.append)) == ["vae"]
    assert lines == ["note: family not_registered_yet skipped: no model 'not_registered_yet' is registered yet"]
    with pytest.raises(study.StudyError, match="not_registered_yet"):
        study.resolve_families(["not_registered_yet"])
