"""The training loop and checkpoints: loss goes down, seeds reproduce, resume is exact,
early stopping restores the best weights, and a failed save never damages a checkpoint."""
import json
import os

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn, optim
from scratchgen.checkpoint import load_checkpoint, save_checkpoint
from scratchgen.data import DataLoader
from scratchgen.train import EarlyStopping, fit, resume, seed_everything


def blobs(n=240, seed=0):
    """Three Gaussian blobs in 2-D: a tiny, learnable classification set."""
    rng = np.random.default_rng(seed)
    centers = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.normal(scale=0.8, size=(n, 2))).astype(np.float32)
    return x, y.astype(np.int64)


X, Y = blobs()
XV, YV = blobs(90, seed=1)


def loss_fn(model, batch):
    x, y = batch
    return sg.cross_entropy(model(x), y)


def valid_fn(model):
    logits = model(sg.tensor(XV))
    return {"valid_loss": sg.cross_entropy(logits, YV).item(),
            "valid_acc": float((logits.numpy().argmax(1) == YV).mean())}


def make_run(seed=0, dropout=0.1, lr=0.05):
    """Model, optimizer, scheduler and loader, built from `seed` as the CLI does."""
    seed_everything(seed)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3))
    opt = optim.Adam(model.parameters(), lr=lr)
    sched = optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    loader = DataLoader((X, Y), batch_size=32, shuffle=True, drop_last=False, seed=seed)
    return model, opt, sched, loader


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_fit_decreases_loss(tmp_path):
    model, opt, sched, loader = make_run()
    result = fit(model, opt, loader, loss_fn, epochs=5, valid_fn=valid_fn,
                 metrics_path=tmp_path / "m.jsonl", progress=False, log=None)
    losses = result.train_losses
    assert len(losses) == 5
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["valid_acc"] > 0.8
    records = jsonl(tmp_path / "m.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    for key in ("train_loss", "valid_loss", "valid_acc", "lr", "time_s", "examples_per_s"):
        assert key in records[0]
    assert records[0]["examples_per_s"] > 0


def test_fit_logs_extra_loss_terms():
    model, opt, sched, loader = make_run()

    def two_terms(model, batch):
        ce = loss_fn(model, batch)
        return {"loss": ce, "ce": ce, "const": 2.0}

    result = fit(model, opt, loader, two_terms, epochs=1, progress=False, log=None)
    rec = result.history[0]
    assert rec["train_ce"] == pytest.approx(rec["train_loss"])
    assert rec["train_const"] == pytest.approx(2.0)


def test_same_seed_same_losses():
    runs = []
    for seed in (3, 3, 4):
        model, opt, sched, loader = make_run(seed)
        runs.append(fit(model, opt, loader, loss_fn, 3, valid_fn=valid_fn, scheduler=sched,
                        progress=False, log=None).history)
    keys = ("train_loss", "valid_loss", "valid_acc", "lr")
    assert [[r[k] for k in keys] for r in runs[0]] == [[r[k] for k in keys] for r in runs[1]]
    assert [r["train_loss"] for r in runs[0]] != [r["train_loss"] for r in runs[2]]


def test_resume_matches_uninterrupted_run_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"

    def stopper():
        return EarlyStopping("valid_loss", "min", patience=None)

    model, opt, sched, loader = make_run(7)
    fit(model, opt, loader, loss_fn, 4, valid_fn=valid_fn, metrics_path=straight / "metrics.jsonl",
        early_stopping=stopper(), checkpoint_dir=straight, scheduler=sched, progress=False, log=None,
        restore_best=False)
    final_straight = model.state_dict()

    model, opt, sched, loader = make_run(7)
    fit(model, opt, loader, loss_fn, 2, valid_fn=valid_fn, metrics_path=split / "metrics.jsonl",
        early_stopping=stopper(), checkpoint_dir=split, scheduler=sched, progress=False, log=None)
    sg.randn(100)  # the interrupted process did more random draws after its last checkpoint

    # A new process: build everything from a different seed; the checkpoint must override it all.
    model, opt, sched, loader = make_run(99)
    es = stopper()
    start = resume(split, model, opt, sched, loader, es)
    assert start == 2
    fit(model, opt, loader, loss_fn, 4, valid_fn=valid_fn, metrics_path=split / "metrics.jsonl",
        early_stopping=es, checkpoint_dir=split, start_epoch=start, scheduler=sched, progress=False,
        log=None, restore_best=False)

    a, b = jsonl(straight / "metrics.jsonl"), jsonl(split / "metrics.jsonl")
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for key in ("train_loss", "valid_loss", "valid_acc", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b], key  # exact, not approx
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, final_straight[k])


def test_resume_cuts_metrics_back_to_the_checkpoint(tmp_path):
    model, opt, sched, loader = make_run(1)
    fit(model, opt, loader, loss_fn, 2, metrics_path=tmp_path / "metrics.jsonl", checkpoint_dir=tmp_path,
        progress=False, log=None)
    # a crash after writing epoch 3's record but before its checkpoint
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "train_loss": 123.0}) + "\n" + '{"epoch": 4, "tra')
    model, opt, sched, loader = make_run(1)
    start = resume(tmp_path, model, opt, None, loader)
    fit(model, opt, loader, loss_fn, 3, metrics_path=tmp_path / "metrics.jsonl", checkpoint_dir=tmp_path,
        start_epoch=start, progress=False, log=None)
    records = jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] != 123.0


def test_early_stopping_stops_and_restores_best(tmp_path):
    model, opt, sched, loader = make_run(2)
    scripted = iter([1.0, 0.5, 0.7, 0.6, 0.9, 0.1, 0.1])
    snapshots = {}

    def scripted_valid(m):
        snapshots[len(snapshots) + 1] = m.state_dict()
        return {"valid_loss": next(scripted)}

    es = EarlyStopping("valid_loss", "min", patience=2)
    result = fit(model, opt, loader, loss_fn, 7, valid_fn=scripted_valid, early_stopping=es,
                 checkpoint_dir=tmp_path, progress=False, log=None)
    assert result.stopped_early and result.last_epoch == 4 and len(result.history) == 4
    assert result.best_epoch == 2 and result.best_metric == 0.5
    for k, v in model.state_dict().items():  # the model holds epoch 2's weights again
        np.testing.assert_array_equal(v, snapshots[2][k])
    best = load_checkpoint(tmp_path / "best.npz", restore_rng=False)
    assert best["epoch"] == 2 and best["best_metric"] == 0.5
    for k, v in best["model"].items():
        np.testing.assert_array_equal(v, snapshots[2][k])
    assert load_checkpoint(tmp_path / "checkpoint.npz", restore_rng=False)["epoch"] == 4

    # Resuming a run that had stopped early trains no further and keeps the best weights.
    model2, opt2, _, loader2 = make_run(3)
    es2 = EarlyStopping("valid_loss", "min", patience=2)
    start = resume(tmp_path, model2, opt2, None, loader2, es2)
    again = fit(model2, opt2, loader2, loss_fn, 7, valid_fn=scripted_valid, early_stopping=es2,
                checkpoint_dir=tmp_path, start_epoch=start, progress=False, log=None)
    assert again.history == [] and again.stopped_early and again.best_epoch == 2
    for k, v in model2.state_dict().items():
        np.testing.assert_array_equal(v, snapshots[2][k])


def test_fit_with_ema_validates_and_keeps_the_averaged_weights(tmp_path):
    """Polyak averaging: validation sees the averages, the best weights are the averages, and the
    live weights carry on training; a resumed run restores the averages exactly."""
    model, opt, sched, loader = make_run(5, dropout=0.0)
    ema = optim.EMA(model.parameters(), decay=0.9)
    seen = []

    def record_valid(m):
        seen.append({k: v.copy() for k, v in m.state_dict().items()})
        return {"valid_loss": valid_fn(m)["valid_loss"]}

    es = EarlyStopping("valid_loss", "min", patience=None)
    fit(model, opt, loader, loss_fn, 2, valid_fn=record_valid, early_stopping=es, checkpoint_dir=tmp_path,
        progress=False, log=None, restore_best=False, ema=ema)
    assert ema.num_updates == 2 * len(loader)
    live = model.state_dict()
    names = [n for n, _ in model.named_parameters()]
    for name, avg in zip(names, ema.shadow):
        np.testing.assert_array_equal(seen[-1][name], avg)      # validation ran on the averages
        assert not np.array_equal(live[name], avg)              # and the live weights came back
    best = load_checkpoint(tmp_path / "best.npz", restore_rng=False)
    assert best["epoch"] == es.best_epoch
    np.testing.assert_array_equal(best["model"][names[0]], seen[es.best_epoch - 1][names[0]])

    model2, opt2, _, loader2 = make_run(6, dropout=0.0)
    ema2 = optim.EMA(model2.parameters(), decay=0.9)
    resume(tmp_path, model2, opt2, None, loader2, EarlyStopping("valid_loss", "min"), ema=ema2)
    assert ema2.num_updates == ema.num_updates
    for a, b in zip(ema.shadow, ema2.shadow):
        np.testing.assert_array_equal(a, b)
    model3, opt3, _, loader3 = make_run(6, dropout=0.0)
    (tmp_path / "plain").mkdir()
    save_checkpoint(tmp_path / "plain" / "checkpoint.npz", model3, opt3, epoch=1)
    with pytest.raises(ValueError, match="no weight averages"):
        resume(tmp_path / "plain", model3, opt3, ema=optim.EMA(model3.parameters()))


def test_early_stopping_modes_and_state():
    es = EarlyStopping("acc", "max", patience=1, min_delta=0.01)
    assert es.update({"acc": 0.5}, 1)
    assert not es.update({"acc": 0.505}, 2)  # within min_delta
    assert es.should_stop
    es2 = EarlyStopping("acc", "max", patience=1)
    es2.load_state_dict(es.state_dict())
    assert (es2.best, es2.best_epoch, es2.bad_epochs) == (0.5, 1, 1)
    with pytest.raises(KeyError, match="acc"):
        es.update({"loss": 1.0}, 3)
    with pytest.raises(ValueError):
        EarlyStopping("acc", "bigger")
    with pytest.raises(ValueError, match="patience must be >= 1 epoch, or None .* got 0"):
        EarlyStopping("acc", "max", patience=0)   # would stop before the first epoch


def test_checkpoint_round_trip_restores_rng(tmp_path):
    model, opt, sched, loader = make_run(5)
    fit(model, opt, loader, loss_fn, 1, progress=False, log=None)
    path = save_checkpoint(tmp_path / "c.npz", model, opt, sched, epoch=1, loader=loader,
                           best_metric=0.25, extra={"note": "hi", "n": 3})
    expected = sg.randn(5).numpy()
    sg.randn(50)
    model2, opt2, sched2, loader2 = make_run(6)
    ckpt = load_checkpoint(path, model2, opt2, sched2, loader2)
    np.testing.assert_array_equal(sg.randn(5).numpy(), expected)
    assert ckpt["epoch"] == 1 and ckpt["best_metric"] == 0.25 and ckpt["extra"] == {"note": "hi", "n": 3}
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(model2.state_dict()[k], v)
    assert [b[0].numpy().tolist() for b in loader] == [b[0].numpy().tolist() for b in loader2]


def test_failed_save_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    model, opt, sched, loader = make_run(8)
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, model, opt, epoch=1)
    original = path.read_bytes()

    fit(model, opt, loader, loss_fn, 1, progress=False, log=None)  # new weights to save

    def crash_midway(file, **arrays):  # write part of the file, then die
        file.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, epoch=2)
    monkeypatch.undo()
    with pytest.raises(TypeError):  # an unsaveable value fails before anything is written
        save_checkpoint(path, model, opt, epoch=2, extra={"bad": object()})

    assert path.read_bytes() == original
    assert load_checkpoint(path, restore_rng=False)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz"]  # no temporary files left behind


def test_nonfinite_loss_is_reported():
    model, opt, sched, loader = make_run(0)

    def bad_loss(model, batch):
        return loss_fn(model, batch) * float("nan")

    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(model, opt, loader, bad_loss, 1, progress=False, log=None)


def test_fit_stops_after_the_epoch_that_ends_past_max_time(monkeypatch):
    import scratchgen.train as train_module
    clock = [0.0]
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: clock[0])

    def one_second_per_batch(model, batch):
        clock[0] += 1.0
        return loss_fn(model, batch)

    model, opt, sched, loader = make_run()
    assert len(loader) == 8
    lines = []
    result = fit(model, opt, loader, one_second_per_batch, epochs=10, progress=False, log=lines.append,
                 max_time=20)
    assert result.last_epoch == 3 and len(result.history) == 3   # 8 s, 16 s, then 24 s >= 20 s
    assert lines[-1] == "time budget of 20s reached after epoch 3"
    with pytest.raises(ValueError, match="max_time must be a positive number of seconds, got 0"):
        fit(model, opt, loader, loss_fn, epochs=1, progress=False, log=None, max_time=0)


def _tiny_fit_setup(make_bad):
    import scratchgen as sg
    from scratchgen import nn, optim
    from scratchgen.data import DataLoader
    sg.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    loader = DataLoader((x,), batch_size=4, shuffle=False)
    return model, opt, loader, make_bad


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_fit_stops_before_the_step_at_a_non_finite_loss_or_gradient(tmp_path, where):
    """NaN is never hidden, and never reaches the parameters: fit raises before optimizer.step,
    naming the epoch, the step and the last good checkpoint."""
    import scratchgen as sg
    from scratchgen.train import NonFiniteError, fit
    model, opt, loader, _ = _tiny_fit_setup(None)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        out = m(batch[0]).sum()
        if calls["n"] == 4:  # epoch 2, step 2
            if where == "loss":
                return out * float("nan")
            return out + (m.weight * 0.0).sqrt().sum()  # finite loss, infinite gradient (sqrt at 0)
        return out

    fit(model, opt, loader, loss_fn, 1, checkpoint_dir=tmp_path, progress=False, log=None)
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(NonFiniteError, match="epoch 2, step 2.*checkpoint.npz"):
        fit(model, opt, loader, loss_fn, 2, start_epoch=1, checkpoint_dir=tmp_path, progress=False, log=None)
    after = [p.data for p in model.parameters()]
    # the first step of epoch 2 ran, the bad second one did not: every parameter is finite
    assert all(np.isfinite(a).all() for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))


def test_a_failed_optimizer_load_leaves_model_and_optimizer_untouched(tmp_path):
    """Loads are all or nothing: an Adam checkpoint refused by SGD must not have overwritten the
    model's weights first; and an older checkpoint without the optimizer's name is refused too."""
    import scratchgen as sg
    from scratchgen import checkpoint, nn, optim
    sg.manual_seed(0)
    model = nn.Linear(3, 2)
    adam = optim.Adam(model.parameters(), lr=0.1)
    model(sg.ones(1, 3)).sum().backward()
    adam.step()
    checkpoint.save_checkpoint(tmp_path / "c.npz", model, adam)
    other = nn.Linear(3, 2)
    before = [p.data.copy() for p in other.parameters()]
    sgd = optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="Adam.*SGD.*nothing was loaded"):
        checkpoint.load_checkpoint(tmp_path / "c.npz", model=other, optimizer=sgd)
    for p, b in zip(other.parameters(), before):
        np.testing.assert_array_equal(p.data, b)
    state = adam.state_dict()
    del state["type"]
    with pytest.raises(ValueError, match="another optimizer"):
        sgd.load_state_dict(state)
