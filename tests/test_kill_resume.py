"""No run loses data: a training process killed with SIGKILL at random moments, then resumed
(again and again), ends with exactly the metrics and test results of a run never interrupted."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

ARGS = ["train", "mlp", "--epochs", "6", "--limit-train", "1024", "--limit-eval", "200", "--batch-size", "64",
        "--no-progress", "--seed", "0", "--set", "augment=false"]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SCRATCHGEN_DATA"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def _train(out, env, extra=(), kill_after=None):
    proc = subprocess.Popen([sys.executable, "-m", "scratchgen.cli", *ARGS, "--out", str(out), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return True
    try:
        proc.wait(timeout=kill_after)
        return proc.returncode == 0
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return False


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    env = _env(tmp_path)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    start = time.perf_counter()
    _train(straight, env)
    duration = time.perf_counter() - start

    draw = random.Random(1234)
    kills, resumed, finished = 0, 0, False
    while not finished:
        resume = ["--resume"] if (killed / "checkpoint.npz").exists() else []
        resumed += bool(resume)
        if kills < 5:
            finished = _train(killed, env, resume, kill_after=draw.uniform(0.3, 0.9) * duration)
            kills += not finished
        else:
            finished = _train(killed, env, resume)
    assert kills >= 2 and resumed >= 2  # kills landed mid-training, and runs resumed from them

    a, b = _lines(straight / "metrics.jsonl"), _lines(killed / "metrics.jsonl")
    assert [r["epoch"] for r in b] == [1, 2, 3, 4, 5, 6]
    for key in ("train_loss", "valid_loss", "valid_acc", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (straight, killed))
    assert (ra["test_acc"], ra["test_loss"]) == (rb["test_acc"], rb["test_loss"])
    leftovers = [p.name for p in killed.iterdir() if p.name.endswith(".tmp") or p.name == ".lock"]
    assert not leftovers
