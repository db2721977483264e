"""`scratchgen ood`: the zero-shot OOD study from the command line (wired in by scratchgen/cli.py).

    scratchgen ood [--families vae,pixelcnn,pixelvae,dcgan] [--digits 0-9] [--budget [FAMILY=]EPOCHS[,LIMIT]]
                   [--background perturbed|none] [--set FAMILY.KEY=VALUE] [--out DIR] [--scheduler ADDRESS]
                   [--workers N] [--sequential] [--retries N] [--threads N] ...
"""
import argparse
import os

from ..cli import _count as _whole  # a whole number >= minimum, as the other commands take it
from .scores import COMPRESSORS


def _names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names, e.g. vae,pixelcnn")
    return names


def parse_digits(text):
    """'0-9', '1,7', '0-3,7' -> sorted digits."""
    digits = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                digits.update(range(a, b + 1))
            elif part:
                digits.add(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"digits: expected e.g. 0-9 or 1,7, got {text!r}") from None
    if not digits or min(digits) < 0 or max(digits) > 9:
        raise argparse.ArgumentTypeError(f"digits must lie in 0-9, got {text!r}")
    return sorted(digits)


def parse_budget(text):
    """'[FAMILY=]EPOCHS[,LIMIT]' -> (family or None, epochs, limit or None); LIMIT 0 or 'all': every image."""
    fam, eq, rest = text.rpartition("=")
    epochs, _, limit = rest.partition(",")
    try:
        if eq and not fam.strip():
            raise ValueError("no family before '='")
        epochs = int(epochs)
        limit = None if limit.strip().lower() in ("", "all", "0") else int(limit)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget {text!r}: expected [FAMILY=]EPOCHS[,LIMIT_TRAIN], "
                                         f"e.g. 2,5000 or vae=10") from None
    if epochs < 1 or (limit is not None and limit < 1):
        raise argparse.ArgumentTypeError(f"--budget {text!r}: epochs must be >= 1 and the limit >= 1 (or all)")
    return fam.strip() or None, epochs, limit


def parse_iwae_k(text):
    """'[FAMILY=]K' -> (family or None, K >= 1)."""
    fam, eq, k = text.rpartition("=")
    try:
        k = int(k) if fam.strip() or not eq else 0
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(f"--iwae-k {text!r}: expected [FAMILY=]K with K >= 1, e.g. 10 or pixelvae=1")
    return fam.strip() or None, k


def add_parser(subparsers):
    from ..cli import DATA_ENV
    o = subparsers.add_parser(
        "ood", help="zero-shot OOD study: hold out each MNIST digit, score the test set (AUPR, AUROC)",
        description="For each family and each held-out digit, train on the other nine digits, score the test set "
                    "and measure how well each score finds the held-out digit (AUPR with the held-out digit "
                    "positive, about 10% of the test set; AUROC). Scores: -log p(x), the likelihood ratio "
                    "against a background model, the complexity-corrected likelihood, the typicality test, and "
                    "for the DCGAN its discriminator. Tasks run on Dask distributed (pip install "
                    "'scratchgen[dask]'), else one after another; a rerun resumes.")
    o.add_argument("--families", type=_names, metavar="LIST",
                   help="comma-separated families (default: those of vae,pixelcnn,pixelvae,dcgan that are "
                        "registered); any registered binarized-MNIST likelihood model or MNIST GAN works")
    o.add_argument("--digits", type=parse_digits, default=list(range(10)), metavar="LIST",
                   help="held-out digits, e.g. 0-9 (default) or 1,7")
    o.add_argument("--budget", type=parse_budget, action="append", metavar="[FAMILY=]EPOCHS[,LIMIT]",
                   help="training budget per task: epochs, and at most LIMIT training images (default all); "
                        "without FAMILY= for every family (repeatable; defaults: vae 10, pixelcnn 1, pixelvae 1, "
                        "dcgan 2 epochs on all images)")
    o.add_argument("--limit-valid", type=_whole(0), default=1000, dest="limit_valid", metavar="N",
                   help="in-distribution validation images for model selection (default 1000; 0: all)")
    o.add_argument("--limit-test", type=_whole(0), default=0, dest="limit_test", metavar="N",
                   help="score only the first N test images (default 0: all)")
    o.add_argument("--background", choices=["perturbed", "none"], default="perturbed",
                   help="likelihood-ratio background model: the same family trained on perturbed inputs "
                        "(one more task per likelihood task; default), or none")
    o.add_argument("--perturb", type=float, default=0.2, metavar="RATE",
                   help="background model: share of pixels replaced by random bits (default 0.2)")
    o.add_argument("--compressors", type=_names, default=["png", "context"], metavar="LIST",
                   help=f"compressors for the complexity correction, from {','.join(COMPRESSORS)} (default "
                        f"png,context)")
    o.add_argument("--iwae-k", type=parse_iwae_k, action="append", dest="iwae_k", metavar="[FAMILY=]K",
                   help="importance samples for a latent-variable model's -log p(x) bound (default 10; 1: the "
                        "ELBO); without FAMILY= for every family (repeatable, e.g. --iwae-k pixelvae=1)")
    o.add_argument("--set", action="append", metavar="FAMILY.KEY=VALUE",
                   help="a model setting for one family, e.g. pixelcnn.channels=16 (repeatable)")
    o.add_argument("--out", metavar="DIR", default=os.path.join("runs", "ood"),
                   help="study folder (default runs/ood); a rerun on it resumes")
    o.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask cluster (e.g. tcp://host:8786) "
                   "instead of a local one; its workers must see the study folder")
    o.add_argument("--workers", type=_whole(1), metavar="N",
                   help="local cluster: worker processes (default: the physical cores), one thread each")
    o.add_argument("--sequential", action="store_true", help="run the tasks one after another, without Dask")
    o.add_argument("--retries", type=_whole(0), default=2, metavar="N",
                   help="Dask: retries of a task that raises (a task whose worker dies is restarted anyway)")
    o.add_argument("--threads", type=_whole(1), default=1, metavar="N",
                   help="threads per task (default 1: the workers use the cores; the same on --sequential, "
                        "so both give the same numbers)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--data", metavar="DIR", help=f"data root (overrides ${DATA_ENV})")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.set_defaults(func=run)
    return o


def _family_settings(items, families):
    from ..cli import CLIError, _parse_set
    from ..specs import create
    from ..specs.settings import SettingError, check_settings
    out = {}
    for item in items or []:
        head, eq, _ = item.partition("=")
        fam, dot, key = head.partition(".")
        if not eq or not dot or not key:
            raise CLIError(f"--set {item!r}: expected FAMILY.KEY=VALUE, e.g. pixelcnn.channels=16")
        if fam not in families:
            raise CLIError(f"--set {item!r}: {fam!r} is not among the study's families ({', '.join(families)})")
        parsed = _parse_set([item[len(fam) + 1:]])
        try:
            check_settings(families[fam].model, create(families[fam].model), parsed)
        except SettingError as e:
            raise CLIError(f"--set {e}") from None
        out.setdefault(fam, {}).update(parsed)
    return out


def run(args):
    from ..cli import DATA_ENV, CLIError, _lock_run_folder, _say, _set_data_root
    from .study import StudyError, resolve_families, run_study, table_lines
    if args.sequential and (args.scheduler or args.workers):
        raise CLIError("--sequential runs without Dask: leave out --scheduler and --workers")
    if args.scheduler and args.workers:
        raise CLIError("--workers sizes a local cluster: leave it out with --scheduler (the cluster has its own)")
    unknown = sorted(set(args.compressors) - set(COMPRESSORS))
    if unknown:
        raise CLIError(f"--compressors: unknown {', '.join(unknown)}; choose from {', '.join(COMPRESSORS)}")
    if not 0 < args.perturb < 1:
        raise CLIError(f"--perturb {args.perturb}: give a share of pixels between 0 and 1, e.g. 0.2")
    _set_data_root(args.data)
    try:
        families = resolve_families(args.families, log=_say)
    except StudyError as e:
        raise CLIError(str(e)) from None
    budgets = {}
    for fam, epochs, limit in args.budget or []:
        if fam is not None and fam not in families:
            raise CLIError(f"--budget {fam}=...: {fam!r} is not among the study's families ({', '.join(families)})")
        for name in ([fam] if fam else families):
            budgets[name] = (epochs, limit)
    iwae_k = {}
    for fam, k in args.iwae_k or []:
        if fam is not None and fam not in families:
            raise CLIError(f"--iwae-k {fam}=...: {fam!r} is not among the study's families ({', '.join(families)})")
        for name in ([fam] if fam else families):
            iwae_k[name] = k
    settings = _family_settings(args.set, families)
    os.makedirs(args.out, exist_ok=True)
    _lock_run_folder(args.out, args.cleanup)
    _say(f"study folder: {os.path.abspath(args.out)}")
    try:
        summary = run_study(args.out, families=families, digits=args.digits, budgets=budgets, settings=settings,
                            background=args.background == "perturbed", limit_valid=args.limit_valid,
                            limit_test=args.limit_test, seed=args.seed, threads=args.threads, iwae_k=iwae_k,
                            compressors=tuple(args.compressors), perturb=args.perturb, scheduler=args.scheduler,
                            workers=args.workers, sequential=args.sequential, retries=args.retries,
                            progress=not args.no_progress, log=_say, data_root=os.environ.get(DATA_ENV))
    except StudyError as e:
        raise CLIError(str(e)) from None
    for line in table_lines(summary):
        _say(line)
    for name, fam in summary["families"].items():
        if fam.get("best"):
            _say(f"{name}: best score {fam['best']} (mean AUPR {100 * fam['scores'][fam['best']]['mean_aupr']:.1f})")
    run_info = summary["run"]
    _say(f"{run_info['executor']}: {run_info['ran']} tasks trained, {run_info['reused']} reused, "
         f"{run_info['tasks_wall_s']:.1f}s (tasks: {run_info['task_s_sum']:.1f}s wall, {run_info['task_cpu_s_sum']:.1f}s "
         f"CPU, summed)")
    _say(f"wrote {os.path.join(args.out, 'results.md')}, results.json and "
         f"{', '.join(n + '.png' for n, f in summary['families'].items() if f['_per_digit'])}")
    if run_info["failed"]:
        raise CLIError(f"{len(run_info['failed'])} task(s) failed (first: {run_info['failed'][0]}); rerun the same "
                       f"command to retry them: finished tasks are kept")
    return 0
