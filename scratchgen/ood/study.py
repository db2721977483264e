"""The zero-shot out-of-distribution study: for each family and each held-out digit, train on the
other nine digits, score the test set, and measure how well each score finds the held-out digit
(AUPR, the held-out digit positive: about 10% of the test set; and AUROC).

    summary = run_study("runs/ood", families=["vae"], digits=range(10), budgets={"vae": (1, 2000)})

Scheduling: each (family, digit, role) training is one task (tasks.run_task). By default the tasks
run on Dask distributed: a LocalCluster of one single-threaded worker process per physical core,
or the existing cluster at `scheduler`. A task whose worker dies is started again by the
scheduler (its attempt resumes from the task's checkpoint), one that raises is retried `retries`
times. `sequential=True`, or Dask not installed, runs the tasks one after another here. A task
already done (its scores.npz is in the study folder, from the same settings) is never redone, so
a rerun of a finished study trains nothing and a killed one picks up where it stopped.

Outputs in the study folder: results.json (every number, the budgets and per-task times),
results.md (the per-digit tables, mean and median), <family>.png (PR curves and score histograms).
"""
import contextlib
import json
import os
import statistics
import sys
import time

import numpy as np

from . import scores as S
from .tasks import (DEFAULT_FAMILIES, TASK_NAME, Task, family, is_done, load_scores, mismatch, run_task,
                    save_scores, write_json)

ROLES = ("main", "background")


class StudyError(Exception):
    """Bad settings or a study folder that holds something else: a one-line message naming the fix."""


def dask_available():
    try:
        import dask.distributed  # noqa: F401
        return True
    except ImportError:
        return False


def default_workers():
    from ..threads import physical_cores
    return physical_cores()


def resolve_families(names=None, log=print):
    """{name: Family} for the asked names; by default the study's families that are registered
    (one that is not, e.g. pixelvae before its spec exists, is skipped with a note)."""
    from ..specs import UnknownModelError
    explicit = names is not None
    out = {}
    for name in (names if explicit else DEFAULT_FAMILIES):
        try:
            out[name] = family(name)
        except UnknownModelError as e:
            if explicit:
                raise StudyError(f"family {name!r}: {e}") from None
            if log:
                log(f"note: family {name} skipped: no model {name!r} is registered yet")
        except (ValueError, TypeError) as e:
            raise StudyError(f"family {name!r}: {e}") from None
    if not out:
        raise StudyError("no family to study")
    return out


def plan(out, families, digits, budgets=None, settings=None, background=True, limit_valid=1000, limit_test=None,
         seed=0, threads=1, iwae_k=10, compressors=("png", "context"), perturb=0.2, data_root=None,
         data_source=""):
    """The study's tasks, the long ones first. budgets: {family: (epochs, limit_train)}, missing
    ones from the family's defaults; settings: {family: {key: value}} over the family's; iwae_k:
    K for every family, or {family: K} (missing ones: 10)."""
    tasks = []
    for name, fam in families.items():
        epochs, limit = (budgets or {}).get(name, (fam.epochs, fam.limit_train))
        cfg = {**fam.settings, **(settings or {}).get(name, {})}
        roles = ROLES if background and fam.kind == "likelihood" and fam.data == "binary" else ROLES[:1]
        for digit in digits:
            for role in roles:
                tasks.append(Task(out=os.path.abspath(out), family=name, digit=int(digit), role=role, spec=fam,
                                  epochs=int(epochs), limit_train=limit or None, limit_valid=limit_valid or None,
                                  limit_test=limit_test or None, settings=cfg, seed=seed, threads=threads,
                                  iwae_k=iwae_k.get(name, 10) if isinstance(iwae_k, dict) else iwae_k,
                                  compressors=tuple(compressors), perturb=perturb,
                                  data_root=data_root, data_source=data_source))
    tasks.sort(key=lambda t: -t.spec.cost * t.epochs * (t.limit_train or 50000))
    return tasks


# -- execution ---------------------------------------------------------------------------------------------
class _Progress:
    """A tqdm bar of finished tasks on a terminal, a plain line per task otherwise."""

    def __init__(self, total, done, enabled, log):
        self.log, self.n, self.total, self.bar = log, done, total, None
        if enabled and getattr(sys.stderr, "isatty", lambda: False)():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, desc="ood tasks", unit="task", dynamic_ncols=True)

    def done(self, line):
        self.n += 1
        text = f"[{self.n}/{self.total}] {line}"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.write(text)
        elif self.log:
            self.log(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _describe(task, result):
    m = result["meta"]
    return (f"{task.label}: {m['epochs_run']} epoch(s) x {m['train_images']} images, train {m['train_s']:.1f}s, "
            f"score {m['score_s']:.1f}s, cpu {m.get('cpu_s', 0):.1f}s (pid {m['pid']})")


def _run_sequential(tasks, task_fn, on_done):
    failures = []
    for t in tasks:
        try:
            on_done(t, task_fn(t))
        except Exception as e:  # noqa: BLE001 - one task's failure leaves the others to run
            failures.append((t, f"{type(e).__name__}: {e}"))
    return failures


@contextlib.contextmanager
def _without_env(name):
    """Unset an environment variable for a block (a spawned worker inherits this process's), and
    leave it afterwards as it was before: Dask's nanny writes its own value into os.environ."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _run_dask(tasks, task_fn, on_done, scheduler=None, workers=None, retries=2, log=print, threads=1):
    import logging

    import dask
    from dask.distributed import Client, LocalCluster, as_completed
    failures = []
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except (OSError, TimeoutError) as e:
                raise StudyError(f"--scheduler {scheduler}: cannot connect ({e}); check the address, or leave "
                                 f"--scheduler out for a local cluster") from None
        else:
            n = workers or default_workers()
            # No dashboard, so no one reads the workers' profiles: spare the 10 ms stack sampling. And no
            # MALLOC_TRIM_THRESHOLD_ (Dask's default for workers): setting it turns off glibc's adaptive mmap
            # threshold, so every large array is fresh pages; measured, twice the CPU time per training task.
            stack.enter_context(dask.config.set({"distributed.worker.profile.enabled": False,
                                                 "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}))
            stack.enter_context(_without_env("MALLOC_TRIM_THRESHOLD_"))   # a nanny of an earlier cluster set it here
            options = dict(n_workers=n, threads_per_worker=1, processes=True, memory_limit=0,
                           silence_logs=logging.ERROR,
                           # a private HTTP port and no dashboard: no clash on :8787
                           dashboard_address=":0", scheduler_kwargs={"dashboard": False},
                           # scratchgen's import-time thread default, in the workers
                           env={"SCRATCHGEN_THREADS": str(threads)})
            try:
                cluster = stack.enter_context(LocalCluster(**options))
            except RuntimeError as e:   # e.g. a worker process that cannot start
                raise StudyError(f"could not start a local Dask cluster of {n} workers ({e}); run with "
                                 f"--sequential instead") from None
            client = stack.enter_context(Client(cluster))
        if scheduler and not client.nthreads():
            try:
                client.wait_for_workers(1, timeout=60)
            except TimeoutError:
                raise StudyError(f"--scheduler {scheduler}: the cluster has no workers (waited 60 s); start some "
                                 f"with `dask worker {scheduler}`") from None
        if log:
            nthreads = client.nthreads()
            log(f"dask: {len(nthreads)} workers, {sum(nthreads.values())} threads "
                f"({'scheduler ' + scheduler if scheduler else 'local cluster'})")
        token = f"{abs(hash(tasks[0].out)) % 10**8}-{time.time_ns() % 10**9}"
        by_key = {}
        futures = []
        for i, t in enumerate(tasks):
            key = f"ood-{t.family}-{t.digit}-{t.role}-{token}"
            by_key[key] = t
            futures.append(client.submit(task_fn, t, key=key, pure=False, retries=retries, priority=len(tasks) - i))
        for fut in as_completed(futures):
            t = by_key[fut.key]
            if fut.status == "error":
                e = fut.exception()
                failures.append((t, f"{type(e).__name__}: {e}"))
                continue
            if fut.status != "finished":             # cancelled: e.g. the scheduler went away
                failures.append((t, f"the task was {fut.status}"))
                continue
            result = fut.result()
            if not os.path.exists(t.scores_path):   # a worker that does not share the study folder
                os.makedirs(t.folder, exist_ok=True)
                write_json(os.path.join(t.folder, TASK_NAME), t.signature())
                save_scores(t.scores_path, result["arrays"], result["meta"])
            on_done(t, result)
            fut.release()
    return failures


def run_study(out, families=None, digits=range(10), budgets=None, settings=None, background=True,
              limit_valid=1000, limit_test=None, seed=0, threads=1, iwae_k=10, compressors=("png", "context"),
              perturb=0.2, scheduler=None, workers=None, sequential=False, retries=2, progress=True, log=print,
              task_fn=None, data_root=None):
    """Run (or resume) the study in folder `out`; write results.json, results.md and the plots;
    return the summary dict. `families`: names (default: the registered ones of vae, pixelcnn,
    pixelvae, dcgan) or {name: Family}. `task_fn` replaces tasks.run_task (tests)."""
    t_start = time.perf_counter()
    fams = families if isinstance(families, dict) else resolve_families(families, log)
    digits = sorted({int(d) for d in digits})
    if not digits or any(d < 0 or d > 9 for d in digits):
        raise StudyError(f"digits must be among 0-9, got {digits}")
    from .tasks import describe_data
    data_source = describe_data()
    tasks = plan(out, fams, digits, budgets, settings, background, limit_valid, limit_test, seed, threads, iwae_k,
                 compressors, perturb, data_root, data_source)
    for t in tasks:
        problem = mismatch(t)
        if problem:
            raise StudyError(f"{problem}: rerun with the same settings to resume, or choose another --out")
    pending = [t for t in tasks if not is_done(t)]
    for t in pending:   # temporary files a killed attempt left (the study folder's lock holder owns them)
        if os.path.isdir(t.folder):
            for f in os.listdir(t.folder):
                if f.endswith(".tmp"):
                    os.remove(os.path.join(t.folder, f))
    os.makedirs(out, exist_ok=True)
    use_dask = not sequential and dask_available()
    if log:
        log(f"data: {data_source}")
        for name, fam in fams.items():
            t = next(t for t in tasks if t.family == name)
            log(f"budget {name}: {t.epochs} epoch(s) on {t.limit_train or 'all'} training images per held-out digit"
                f"{' (+ a background model each)' if any(x.role == 'background' for x in tasks if x.family == name) else ''}")
        log(f"tasks: {len(tasks)} ({len(tasks) - len(pending)} already done, {len(pending)} to run)")
        if pending and not sequential and not use_dask:
            log("note: dask[distributed] is not installed (pip install 'scratchgen[dask]'); running the tasks one "
                "after another")
    task_fn = task_fn or run_task
    bar = _Progress(len(tasks), len(tasks) - len(pending), progress and bool(pending), log)
    timings = {}

    def on_done(t, result):
        timings[(t.family, t.digit, t.role)] = result["meta"]
        bar.done(_describe(t, result))

    t_run = time.perf_counter()
    try:
        if not pending:
            failures = []
        elif use_dask:
            failures = _run_dask(pending, task_fn, on_done, scheduler, workers, retries, log, threads)
        else:
            failures = _run_sequential(pending, task_fn, on_done)
    finally:
        bar.close()
    run_s = time.perf_counter() - t_run
    summary = summarize(out, fams, tasks, digits)
    summary["run"] = {"executor": ("dask " + (scheduler or f"LocalCluster({workers or default_workers()} workers)"))
                      if use_dask and pending else "sequential" if pending else "none (all tasks done)",
                      "tasks": len(tasks), "ran": len(pending) - len(failures), "reused": len(tasks) - len(pending),
                      "failed": [f"{t.label}: {err}" for t, err in failures], "tasks_wall_s": round(run_s, 2),
                      "wall_s": round(time.perf_counter() - t_start, 2),
                      "task_s_sum": round(sum(m["wall_s"] for m in timings.values()), 2),
                      "task_cpu_s_sum": round(sum(m.get("cpu_s", 0.0) for m in timings.values()), 2)}
    write_outputs(out, summary, fams, tasks)
    return summary


# -- results ------------------------------------------------------------------------------------------------
def task_scores(fam, main, background=None):
    """{score name: per-image scores} of one held-out digit from its tasks' stored arrays."""
    return S.derive(fam.kind, main, background)


def _metric(fn, scores, labels):
    try:
        return fn(scores, labels)
    except ValueError:   # non-finite scores (a diverged model) or a test set without the digit
        return float("nan")


def _stats(values):
    finite = [v for v in values if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan"),
            float(statistics.median(finite)) if finite else float("nan"))


def summarize(out, fams, tasks, digits):
    """The study's numbers from the scores files on disk (tasks not done count as missing)."""
    done = {(t.family, t.digit, t.role): t for t in tasks if is_done(t)}
    result = {"digits": digits, "families": {}}
    for name, fam in fams.items():
        per_digit, budget = {}, []
        for d in digits:
            if (name, d, "main") not in done:
                continue
            main, meta = load_scores(done[name, d, "main"].scores_path)
            bg = done.get((name, d, "background"))
            bg_arrays, bg_meta = load_scores(bg.scores_path) if bg else (None, None)
            labels = (main["labels"] == d).astype(np.int64)
            per_digit[d] = {"scores": task_scores(fam, main, bg_arrays), "labels": labels, "meta": meta,
                            "background_meta": bg_meta}
            budget.append(meta)
        names = sorted({k for v in per_digit.values() for k in v["scores"]}, key=_score_order)
        fam_out = {"model": fam.model, "kind": fam.kind, "data": fam.data, "scores": {},
                   "digits_done": sorted(per_digit), "tasks": {}}
        for score in names:
            aupr = {d: _metric(S.aupr, v["scores"][score], v["labels"]) for d, v in per_digit.items()
                    if score in v["scores"]}
            auroc = {d: _metric(S.auroc, v["scores"][score], v["labels"]) for d, v in per_digit.items()
                     if score in v["scores"]}
            (ma, mda), (mr, mdr) = _stats(list(aupr.values())), _stats(list(auroc.values()))
            fam_out["scores"][score] = {"aupr": aupr, "auroc": auroc, "mean_aupr": ma, "median_aupr": mda,
                                        "mean_auroc": mr, "median_auroc": mdr}
        ranked = [s for s in names if np.isfinite(fam_out["scores"][s]["mean_aupr"])]
        fam_out["best"] = max(ranked, key=lambda s: fam_out["scores"][s]["mean_aupr"]) if ranked else None
        for d, v in per_digit.items():
            fam_out["tasks"][d] = {"main": _task_line(v["meta"]), **({"background": _task_line(v["background_meta"])}
                                                                     if v["background_meta"] else {})}
        if per_digit:
            fam_out["positive_rate"] = float(np.mean([v["labels"].mean() for v in per_digit.values()]))
        metas = [v["meta"] for v in per_digit.values()] + [v["background_meta"] for v in per_digit.values()
                                                          if v["background_meta"]]
        if metas:
            fam_out["budget"] = {
                "epochs": sorted({m["task"]["epochs"] for m in metas}),
                "epochs_run": sorted({m["epochs_run"] for m in metas}),
                "limit_train": sorted({m["task"]["limit_train"] or 0 for m in metas}),
                "train_images": [min(m["train_images"] for m in metas), max(m["train_images"] for m in metas)],
                "examples_seen_per_task": [min(m["examples_seen"] for m in metas),
                                           max(m["examples_seen"] for m in metas)],
                "parameters": metas[0]["parameters"], "test_images": metas[0]["test_images"],
                "train_s_sum": round(sum(m["train_s"] for m in metas), 2),
                "task_s_mean": round(float(np.mean([m["wall_s"] for m in metas])), 2),
                "task_cpu_s_mean": round(float(np.mean([m.get("cpu_s", float("nan")) for m in metas])), 2),
                "nll_estimate": sorted({m["nll_estimate"] for m in metas if m.get("nll_estimate")}),
                "settings": metas[0]["task"]["settings"]}
        fam_out["_per_digit"] = per_digit   # for the plots; not written
        result["families"][name] = fam_out
    return result


def _task_line(meta):
    keys = ("epochs_run", "best_epoch", "train_images", "examples_seen", "train_s", "score_s", "wall_s",
            "cpu_s", "resumed_after_epoch", "train_nll_mean", "test_nll_mean", "finished")
    return {k: meta[k] for k in keys if k in meta}


SCORE_ORDER = ("nll", "likelihood_ratio", "complexity_png", "complexity_zlib", "complexity_context", "typicality",
               "disc")


def _score_order(name):
    return (SCORE_ORDER.index(name) if name in SCORE_ORDER else len(SCORE_ORDER), name)


def _pct(v):
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def markdown(summary):
    """The per-digit tables (AUPR and AUROC in %, mean and median) as markdown."""
    lines = ["# Zero-shot OOD study: one MNIST digit held out", "",
             "Each family trains on the other nine digits and scores the whole test set; the held-out digit is "
             "the positive class (about 10% of the test set: a random score's AUPR). Higher score = more OOD. "
             "AUPR and AUROC in %.", ""]
    run = summary.get("run", {})
    if run:
        lines += [f"Run: {run['executor']}; {run['tasks']} tasks ({run['ran']} trained now, {run['reused']} reused); "
                  f"wall {run['wall_s']:.1f} s; task wall time summed {run['task_s_sum']:.1f} s, task CPU time summed "
                  f"{run['task_cpu_s_sum']:.1f} s.", ""]
        if run["failed"]:
            lines += ["**Failed tasks** (rerun the same command to retry them):", ""]
            lines += [f"- {f}" for f in run["failed"]] + [""]
    digits = summary["digits"]
    for name, fam in summary["families"].items():
        lines += [f"## {name} ({fam['kind']} scores, {fam['data']} MNIST)", ""]
        b = fam.get("budget")
        if b:
            lines += [f"Budget per task: {'/'.join(map(str, b['epochs']))} epoch(s) planned, "
                      f"{'/'.join(map(str, b['epochs_run']))} run, on {b['train_images'][0]}-{b['train_images'][1]} "
                      f"training images (limit {'/'.join(str(x or 'none') for x in b['limit_train'])}); "
                      f"{b['parameters']:,} parameters; test set {b['test_images']} images; training time "
                      f"summed {b['train_s_sum']:.1f} s; a task took {b['task_s_mean']:.1f} s wall, "
                      f"{b['task_cpu_s_mean']:.1f} s CPU on average. "
                      + (f"-log p(x): {'/'.join(b['nll_estimate'])}. " if b.get("nll_estimate") else "")
                      + f"Settings: {json.dumps(b['settings'])}.", ""]
        missing = [d for d in digits if d not in fam["digits_done"]]
        if missing:
            lines += [f"Missing digits (tasks not finished): {missing}", ""]
        names = list(fam["scores"])
        if not names:
            continue
        for metric in ("aupr", "auroc"):
            lines += [f"{metric.upper()} (%):", "", "| held-out digit | " + " | ".join(names) + " |",
                      "| --- |" + " --- |" * len(names)]
            for d in digits:
                lines.append(f"| {d} | " + " | ".join(_pct(fam["scores"][s][metric].get(d)) for s in names) + " |")
            for stat in ("mean", "median"):
                lines.append(f"| **{stat}** | " + " | ".join(_pct(fam["scores"][s][f"{stat}_{metric}"])
                                                            for s in names) + " |")
            lines.append("")
        if fam.get("best"):
            lines += [f"Best score by mean AUPR: {fam['best']} ({_pct(fam['scores'][fam['best']]['mean_aupr'])}).", ""]
    lines += ["Scores: nll = -log p(x) (nats; the VAE's is an IWAE bound); likelihood_ratio = -log p(x) + log "
              "p_bg(x), p_bg the same model trained on perturbed inputs (Ren et al. 2019); complexity_<c> = "
              "-log2 p(x) - L(x), L the bits of compressor c (Serra et al. 2020); typicality = |-log p(x) - mean "
              "training NLL| (Nalisnick et al. 2019); disc = -D's logit (a DCGAN discriminator).", ""]
    return "\n".join(lines)


def _jsonable(summary):
    out = {k: v for k, v in summary.items() if k != "families"}
    out["families"] = {}
    for name, fam in summary["families"].items():
        f = {k: v for k, v in fam.items() if not k.startswith("_")}
        f["scores"] = {s: {k: ({str(d): x for d, x in v.items()} if isinstance(v, dict) else v)
                           for k, v in m.items()} for s, m in fam["scores"].items()}
        f["tasks"] = {str(d): v for d, v in fam["tasks"].items()}
        out["families"][name] = f
    return _finite(out)


def _finite(obj):
    """obj with NaN and infinities as None (JSON has no NaN) and NumPy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_outputs(out, summary, fams, tasks):
    from .plots import family_figure
    with open(os.path.join(out, "results.json.tmp"), "w") as f:
        json.dump(_jsonable(summary), f, indent=1)
        f.write("\n")
    os.replace(os.path.join(out, "results.json.tmp"), os.path.join(out, "results.json"))
    with open(os.path.join(out, "results.md.tmp"), "w") as f:
        f.write(markdown(summary))
    os.replace(os.path.join(out, "results.md.tmp"), os.path.join(out, "results.md"))
    for name, fam in summary["families"].items():
        if fam["_per_digit"]:
            family_figure(name, fam, os.path.join(out, f"{name}.png"))


def table_lines(summary, metric="aupr"):
    """A compact per-digit table for the terminal: one block per family, AUPR (%) by default."""
    lines = []
    for name, fam in summary["families"].items():
        names = list(fam["scores"])
        if not names:
            lines.append(f"{name}: no finished tasks")
            continue
        width = max(8, *(len(s) for s in names))
        head = f"{name} {metric.upper()} %"
        first = max(len(head), 8)
        lines.append(f"{head:{first}s} " + " ".join(f"{s:>{width}}" for s in names))
        rows = [(f"digit {d}", lambda s, d=d: fam["scores"][s][metric].get(d)) for d in summary["digits"]]
        rows += [(stat, lambda s, stat=stat: fam["scores"][s][f"{stat}_{metric}"]) for stat in ("mean", "median")]
        for label, get in rows:
            lines.append(f"{label:>{first}s} " + " ".join(f"{_pct(get(s)):>{width}}" for s in names))
    return lines


def per_digit_numbers(summary):
    """{(family, score, digit): (aupr, auroc)}: what two runs of a study must agree on."""
    return {(name, s, d): (m["aupr"][d], m["auroc"][d]) for name, fam in summary["families"].items()
            for s, m in fam["scores"].items() for d in m["aupr"]}


__all__ = ["run_study", "plan", "summarize", "markdown", "table_lines", "per_digit_numbers", "resolve_families",
           "StudyError", "dask_available"]
