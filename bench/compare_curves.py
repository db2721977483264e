"""Overlay one metric from several runs' metrics.jsonl (e.g. scratchgen and its torch twin).

    python bench/compare_curves.py --metric valid_ll --out bench/runs/nice_curves.png \
        "ours (rmsprop)=bench/runs/nice_cpu_authors/metrics.jsonl" \
        "torch twin=bench/runs/nice_torch_authors/metrics.jsonl"

Each positional argument is LABEL=PATH (or just PATH, labelled by its folder). Prints, per run, the
number of epochs, the last value and the best value with its epoch.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scratchgen.plots import read_jsonl  # noqa: E402


def parse_run(arg):
    label, sep, path = arg.rpartition("=")   # labels may hold "=", paths seldom do
    if not sep:
        label, path = os.path.basename(os.path.dirname(os.path.abspath(arg))), arg
    if not os.path.isfile(path):
        raise SystemExit(f"no metrics file at {path!r} (argument {arg!r}); give LABEL=PATH to a metrics.jsonl")
    return label, path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="LABEL=PATH/metrics.jsonl")
    p.add_argument("--metric", default="valid_ll")
    p.add_argument("--mode", choices=["max", "min"], default="max", help="which extreme is the best value")
    p.add_argument("--ylim", type=float, nargs=2, default=None)
    p.add_argument("--out", required=True, help="the .png to write")
    args = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pick = max if args.mode == "max" else min
    for label, path in map(parse_run, args.runs):
        rows = [r for r in read_jsonl(path) if isinstance(r.get(args.metric), (int, float))]
        if not rows:
            raise SystemExit(f"{path} has no {args.metric!r} values; its keys: {sorted(read_jsonl(path)[0]) if read_jsonl(path) else []}")
        epochs, values = [r.get("epoch", i + 1) for i, r in enumerate(rows)], [r[args.metric] for r in rows]
        best = pick(range(len(values)), key=values.__getitem__)
        print(f"{label}: {len(rows)} epochs, last {values[-1]:.2f}, best {values[best]:.2f} at epoch {epochs[best]}")
        ax.plot(epochs, values, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(args.metric)
    if args.ylim:
        ax.set_ylim(*args.ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
