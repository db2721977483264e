"""Collect MADE runs (results, per-epoch metrics, log tails) from a sweep folder into one JSON file.

    python3 bench/runs/gpu_h100/summarize.py SWEEP_DIR OUT.json     (SWEEP_DIR defaults to /tmp/sweep)
"""
import glob
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 2 else "/tmp/sweep"
out = {}
for d in sorted(glob.glob(os.path.join(root, "*/"))):
    name = os.path.basename(d.rstrip("/"))
    r = {}
    if os.path.exists(d + "results.json"):
        r["results"] = json.load(open(d + "results.json"))
    if os.path.exists(d + "metrics.jsonl"):
        r["metrics"] = [json.loads(line) for line in open(d + "metrics.jsonl")]
    log = os.path.join(root, name + ".log")
    r["log_tail"] = open(log).read()[-1500:] if os.path.exists(log) else ""
    out[name] = r
json.dump(out, open(sys.argv[-1], "w"), indent=1)
for k, v in out.items():
    m = v.get("metrics", [{}])
    res = v.get("results", {})
    ens = {key: val for key, val in res.items() if key.startswith("test_nll_") and key != "test_nll_one_mask"}
    print(k, "test 1 mask", res.get("test_nll_one_mask"), ens, "best epoch", res.get("best_epoch"),
          "epochs", len(m), m[-1] if m else None)
