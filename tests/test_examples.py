"""The example scripts run end to end on tiny budgets, with the options the results in
bench/RESULTS.md were measured with (the numbers themselves come from long runs, not tests)."""
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args, data=None):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("SCRATCHGEN_DATA", None)
    if data:
        env["SCRATCHGEN_DATA"] = data
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_gan_example_with_ema_dropout_lr_decay_top_k_and_spectral_norm(tmp_path):
    out = tmp_path / "gan"
    run_example("gan_mnist.py", "--epochs", 3, "--max-steps", 3, "--limit-train", 256, "--eval-samples", 0,
                "--parzen-samples", 0, "--label-smoothing", 0.1, "--ema", 0.9, "--d-dropout", 0.5,
                "--lr-decay-start", 2, "--top-k-min", 0.5, "--top-k-decay", 0.6, "--d-spectral-norm", "--out", out)
    rows = records(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == pytest.approx([2e-4, 2e-4, 2e-4 / 2])   # linear to 0 after the last epoch
    assert [r["top_k"] for r in rows] == pytest.approx([1.0, 0.6, 0.5])      # max(min, decay ** (epoch - 1))
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 3 and results["ema_decay"] == 0.9
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_gan_example_with_the_hinge_loss_and_two_critic_steps(tmp_path):
    out = tmp_path / "hinge"
    run_example("gan_mnist.py", "--epochs", 1, "--limit-train", 512, "--batch-size", 64, "--eval-samples", 0,
                "--parzen-samples", 0, "--hinge", "--n-critic", 2, "--d-spectral-norm", "--out", out)
    row, = records(out / "metrics.jsonl")
    assert row["steps"] == 512 // (2 * 64)          # one G step per two D steps of 64 digits each
    assert row["valid_d_real"] > row["valid_d_fake"]  # raw hinge scores, not probabilities
    with pytest.raises(AssertionError, match="--hinge replaces both losses"):
        run_example("gan_mnist.py", "--epochs", 1, "--hinge", "--label-smoothing", 0.1, "--out", tmp_path / "bad")


def test_gan_example_resumes_exactly_across_the_lr_decay(tmp_path):
    common = ("--max-steps", 3, "--limit-train", 256, "--eval-samples", 0, "--parzen-samples", 0, "--ema", 0.9,
              "--lr-decay-start", 2, "--d-spectral-norm")
    run_example("gan_mnist.py", "--epochs", 3, *common, "--out", tmp_path / "straight")
    run_example("gan_mnist.py", "--epochs", 2, *common, "--out", tmp_path / "halves")
    run_example("gan_mnist.py", "--epochs", 3, *common, "--resume", tmp_path / "halves" / "checkpoint.npz",
                "--out", tmp_path / "halves")
    straight, halves = records(tmp_path / "straight" / "metrics.jsonl"), records(tmp_path / "halves" / "metrics.jsonl")
    assert [r["epoch"] for r in halves] == [1, 2, 3]
    for a, b in zip(straight, halves):
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}
    with pytest.raises(AssertionError, match="--epochs larger"):
        run_example("gan_mnist.py", "--epochs", 3, *common, "--resume", tmp_path / "halves" / "checkpoint.npz",
                    "--out", tmp_path / "again")


def test_gan_example_as_infogan(tmp_path):
    out = tmp_path / "infogan"
    run_example("gan_mnist.py", "--epochs", 1, "--max-steps", 3, "--limit-train", 256, "--eval-samples", 0,
                "--parzen-samples", 0, "--info-codes", 10, "--out", out)
    rows = records(out / "metrics.jsonl")
    assert abs(rows[0]["train_info_loss"] - 2.303) < 0.5    # a 10-way code starts near log 10
    assert json.loads((out / "results.json").read_text())["info_codes"] == 10


def test_made_example_with_ema(tmp_path):
    data = os.environ.get("SCRATCHGEN_DATA")
    if not data or not (Path(data) / "binarized_mnist").is_dir():
        pytest.skip("needs binarized MNIST under $SCRATCHGEN_DATA (CI has it)")
    out = tmp_path / "made"
    stdout = run_example("made_mnist.py", "--hidden", 16, "--epochs", 2, "--direct", 1, "--ema", 0.9,
                         "--lr-step", 1, "--out", out, data=data)
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["ema"] == 0.9 and results["epochs_run"] == 2
    assert 50 < results["test_nll_one_mask"] < 300 and "test NLL" in stdout


def test_made_example_with_masks_and_a_time_budget(tmp_path):
    data = os.environ.get("SCRATCHGEN_DATA")
    if not data or not (Path(data) / "binarized_mnist").is_dir():
        pytest.skip("needs binarized MNIST under $SCRATCHGEN_DATA (CI has it)")
    out = tmp_path / "made"
    run_example("made_mnist.py", "--hidden", 16, "--epochs", 5, "--num-masks", 3, "--natural-ordering", 0,
                "--valid-masks", 2, "--max-time", 0.01, "--no-checkpoint", "--no-progress", "--patience", 0,
                "--out", out, data=data)
    results = json.loads((out / "results.json").read_text())
    assert results["epochs_run"] == 1   # the budget ends the run after its first epoch
    assert results["test_nll_3_masks"] < results["test_nll_one_mask"] + 5   # the ensemble is scored
    assert not list(out.glob("*.npz"))


def test_made_mixture_example_selects_on_validation_and_scores_the_test_once(tmp_path):
    data = os.environ.get("SCRATCHGEN_DATA")
    if not data or not (Path(data) / "binarized_mnist").is_dir():
        pytest.skip("needs binarized MNIST under $SCRATCHGEN_DATA (CI has it)")
    runs = []
    for seed in (0, 1):
        runs.append(tmp_path / f"made_s{seed}")
        run_example("made_mnist.py", "--hidden", 16, "--epochs", 1, "--natural-ordering", 0, "--direct", 1,
                    "--seed", seed, "--no-progress", "--out", runs[-1], data=data)
    out = tmp_path / "mixture"
    stdout = run_example("made_mixture.py", *runs, "--max-members", 4, "--out", out, data=data)
    results = json.loads((out / "results.json").read_text())
    members = results["members"]
    assert 1 <= sum(m["picks"] for m in members) <= 4 and "test NLL" in stdout
    # greedy selection never ends worse on validation than the best single run
    assert results["valid_nll"] <= min(m["valid_nll"] for m in members) + 1e-9
    # Jensen: log sum_k pi_k p_k >= sum_k pi_k log p_k, so the mixture beats its members' weighted mean
    assert results["test_nll"] <= sum(m["weight"] * m["test_nll"] for m in members) + 1e-3
    assert (out / "samples.png").is_file()
    env = dict(os.environ, SCRATCHGEN_DATA=data, MPLBACKEND="Agg")
    missing = subprocess.run([sys.executable, str(ROOT / "examples" / "made_mixture.py"), str(tmp_path)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert missing.returncode != 0 and f"{tmp_path / 'results.json'} not found" in missing.stderr
    old = tmp_path / "old_run"
    old.mkdir()
    (old / "results.json").write_text('{"test_nll": 100.0}')
    (old / "best.npz").write_bytes((runs[0] / "best.npz").read_bytes())
    no_config = subprocess.run([sys.executable, str(ROOT / "examples" / "made_mixture.py"), str(old)],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert no_config.returncode != 0 and "has no 'config' entry" in no_config.stderr


def test_nice_example_with_data_init_and_the_authors_lr_decay(tmp_path):
    out = tmp_path / "nice"
    run_example("nice_mnist.py", "--couplings", 2, "--hidden", 16, "--hidden-layers", 1, "--epochs", 2,
                "--batch-size", 500, "--scale-init", "data", "--lr-decay", 1.5, "--min-lr", 5e-4, "--no-progress",
                "--out", out)
    rows = records(out / "metrics.jsonl")
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 5e-4])   # 1.5 ** -updates hits the floor
    results = json.loads((out / "results.json").read_text())
    assert results["test_bits_per_dim"] < 8.0   # far below uniform noise's 8 bits: data init starts near the digits


def test_nice_example_with_the_authors_rmsprop_uniform_init_and_weight_averages(tmp_path):
    out = tmp_path / "nice"
    run_example("nice_mnist.py", "--couplings", 2, "--hidden", 16, "--hidden-layers", 1, "--epochs", 1,
                "--batch-size", 500, "--optimizer", "rmsprop", "--init-range", 0.01, "--scale-init", "data",
                "--ema", 0.9, "--no-progress", "--out", out)
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["optimizer"] == "rmsprop" and results["config"]["init_range"] == 0.01
    from scratchgen.checkpoint import load_checkpoint
    assert "ema" in load_checkpoint(out / "checkpoint.npz", restore_rng=False)["extra"]   # fit kept the averages
    # --evaluate scores a saved run again: the best (EMA) weights give the logged numbers back
    run_example("nice_mnist.py", "--couplings", 2, "--hidden", 16, "--hidden-layers", 1,
                "--evaluate", out / "best.npz", "--out", tmp_path / "eval")
    again = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert again["epoch"] == 1
    assert again["valid_ll"] == pytest.approx(results["best_valid_ll"], rel=1e-6)
    assert again["test_ll_nats"] == pytest.approx(results["test_ll_nats"], rel=1e-6)
    # --resume continues the same run to --epochs 2: one more epoch appended, the averages carried on
    run_example("nice_mnist.py", "--couplings", 2, "--hidden", 16, "--hidden-layers", 1, "--epochs", 2,
                "--batch-size", 500, "--optimizer", "rmsprop", "--init-range", 0.01, "--scale-init", "data",
                "--ema", 0.9, "--no-progress", "--resume", "--out", out)
    rows = records(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 2
    assert results["test_bits_per_dim"] < 8.0


def load_example(name, folder="examples"):
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_made(D, seed, natural=True):
    from scratchgen.models import MADE
    model = MADE(D, [6], natural_ordering=natural, direct_connection=True, seed=seed, dtype=np.float64)
    for w in model.parameters():   # larger weights than the init, so the teachers differ clearly
        w.data[...] = np.random.default_rng(seed).normal(0, 1.0, w.shape)
    return model


def test_distillation_targets_are_the_teacher_mixtures_exact_conditionals():
    from scratchgen.models import Mixture
    distill = load_example("made_distill")
    D = 5
    teachers = [random_made(D, 0), random_made(D, 1)]
    x = np.array(list(itertools.product([0.0, 1.0], repeat=D)))
    q = distill.teacher_probs(teachers, [1.0, 3.0], x, batch=7).astype(np.float64)
    # the chain rule: prod_d q_d^x_d (1 - q_d)^(1 - x_d) is the mixture's probability of every image
    log_p = np.sum(x * np.log(q) + (1 - x) * np.log1p(-q), axis=1)
    mixture = Mixture(teachers, weights=[1.0, 3.0]).log_prob(x).detach().numpy()
    np.testing.assert_allclose(log_p, mixture, atol=1e-5)
    # and q_d sees only x_<d: changing x_d and later pixels leaves q_1..q_d alone
    for d in range(D):
        changed = x.copy()
        changed[:, d:] = 1 - changed[:, d:]
        np.testing.assert_array_equal(distill.teacher_probs(teachers, [1.0, 3.0], changed)[:, :d + 1],
                                      distill.teacher_probs(teachers, [1.0, 3.0], x)[:, :d + 1])
    with pytest.raises(ValueError, match="share one ordering"):
        distill.teacher_probs([teachers[0], random_made(D, 2, natural=False)], [1.0, 1.0], x)


def test_student_gap_kl_is_the_bernoulli_kl_and_zero_for_the_teacher_itself():
    gap = load_example("made_student_gap", folder="bench")
    rng = np.random.default_rng(0)
    logits, q = rng.normal(0, 4, (6, 9)), rng.uniform(1e-3, 1 - 1e-3, (6, 9))
    x = (rng.random((6, 9)) < 0.5).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    nll, kl = gap.bernoulli_terms(sg.tensor(logits), x, q)
    np.testing.assert_allclose(nll, -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=1), rtol=1e-12)
    np.testing.assert_allclose(kl, np.sum(q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p)), axis=1),
                               rtol=1e-10)
    _, kl_self = gap.bernoulli_terms(sg.tensor(np.log(q) - np.log1p(-q)), x, q)
    np.testing.assert_allclose(kl_self, 0, atol=1e-12)


def test_made_distill_example_trains_a_student_that_can_teach_in_turn(tmp_path):
    data = os.environ.get("SCRATCHGEN_DATA")
    if not data or not (Path(data) / "binarized_mnist").is_dir():
        pytest.skip("needs binarized MNIST under $SCRATCHGEN_DATA (CI has it)")
    teachers = []
    for seed, natural in ((0, 1), (1, 1), (2, 0)):
        teachers.append(tmp_path / f"teacher_s{seed}")
        run_example("made_mnist.py", "--hidden", 16, "--epochs", 1, "--natural-ordering", natural, "--direct", 1,
                    "--seed", seed, "--no-progress", "--out", teachers[-1], data=data)
    out = tmp_path / "student"
    stdout = run_example("made_distill.py", *teachers[:2], "--hidden", 8, "--epochs", 2, "--limit-train", 2000,
                         "--hard-weight", 0.5, "--teacher-samples", 300, "--no-progress", "--out", out, data=data)
    results = json.loads((out / "results.json").read_text())
    assert results["epochs_run"] == 2 and len(results["teacher_valid_nll"]) == 2 and "test NLL" in stdout
    assert 50 < results["test_nll"] < 784 * np.log(2)   # it learnt: better than coin flips
    assert (out / "teacher_samples.png").is_file()
    student = load_example("made_mixture").load_run(out)   # rebuilt from results.json + best.npz
    assert student.hidden_sizes == [8] and student.direct is not None
    env = dict(os.environ, SCRATCHGEN_DATA=data, MPLBACKEND="Agg")
    mixed_orders = subprocess.run([sys.executable, str(ROOT / "examples" / "made_distill.py"), str(teachers[2]),
                                   "--epochs", "1", "--out", str(tmp_path / "bad")],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert mixed_orders.returncode != 0 and "random ordering" in mixed_orders.stderr


@pytest.mark.parametrize("direct", [False, True])
def test_the_one_layer_sampler_draws_the_same_images_as_made_sample(direct):
    from scratchgen.models import MADE
    distill = load_example("made_distill")
    made = MADE(7, [9], natural_ordering=False, direct_connection=direct, seed=3)
    for w in made.parameters():
        w.data[...] = np.random.default_rng(1).normal(0, 1.5, w.shape)
    expected = made.sample(50, generator=sg.random.Generator(4)).numpy()
    np.testing.assert_array_equal(distill.sample_one_layer(made, 50, sg.random.Generator(4)), expected)
    with pytest.raises(ValueError, match="one hidden layer"):
        distill.sample_one_layer(MADE(7, [5, 5]), 3)
    mixed = distill.sample_teachers([made, made], [1.0, 2.0], 30, sg.random.Generator(0), batch=8)
    assert mixed.shape == (30, 7) and set(np.unique(mixed)) <= {0.0, 1.0}
