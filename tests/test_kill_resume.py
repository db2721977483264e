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


def _train(out, env, extra=(), kill_after_epoch=None, delay=0.0):
    """Run to the end (kill_after_epoch None: True), or SIGKILL the process `delay` seconds after
    metrics.jsonl shows epoch `kill_after_epoch` (False; True if it finished first). Waiting for an
    epoch line instead of a fixed time keeps the kill inside training however loaded the machine is;
    the delay puts it at a random moment of the next epoch (mid-step, mid-checkpoint, ...)."""
    proc = subprocess.Popen([sys.executable, "-m", "scratchgen.cli", *ARGS, "--out", str(out), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after_epoch is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return True
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and max((r["epoch"] for r in _lines(metrics)), default=0) >= kill_after_epoch:
            time.sleep(delay)
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        return proc.returncode == 0
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
    epoch_time = (time.perf_counter() - start) / 6

    draw = random.Random(1234)
    kills, resumed, finished = 0, 0, False
    for kill_after_epoch in (1, 2, 4, 5):   # each resumed run dies again, a little further on
        resume = ["--resume"] if (killed / "checkpoint.npz").exists() else []
        resumed += bool(resume)
        finished = _train(killed, env, resume, kill_after_epoch, delay=draw.uniform(0.0, 0.8) * epoch_time)
        kills += not finished
        if finished:
            break
    if not finished:
        resumed += 1
        _train(killed, env, ["--resume"])
    assert kills >= 2 and resumed >= 2, (kills, resumed)  # kills landed mid-training, and runs resumed from them

    a, b = _lines(straight / "metrics.jsonl"), _lines(killed / "metrics.jsonl")
    assert [r["epoch"] for r in b] == [1, 2, 3, 4, 5, 6]
    for key in ("train_loss", "valid_loss", "valid_acc", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (straight, killed))
    assert (ra["test_acc"], ra["test_loss"]) == (rb["test_acc"], rb["test_loss"])
    leftovers = [p.name for p in killed.iterdir() if p.name.endswith(".tmp") or p.name == ".lock"]
    assert not leftovers
