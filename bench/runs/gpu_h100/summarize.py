"""Collect the MADE runs under /tmp/sweep (results, per-epoch metrics, log tails) into one JSON file."""
import glob
import json
import os
import sys

out = {}
for d in sorted(glob.glob("/tmp/sweep/*/")):
    name = os.path.basename(d.rstrip("/"))
    r = {}
    if os.path.exists(d + "results.json"):
        r["results"] = json.load(open(d + "results.json"))
    if os.path.exists(d + "metrics.jsonl"):
        r["metrics"] = [json.loads(line) for line in open(d + "metrics.jsonl")]
    r["log_tail"] = open(f"/tmp/sweep/{name}.log").read()[-1500:]
    out[name] = r
json.dump(out, open(sys.argv[1], "w"), indent=1)
for k, v in out.items():
    m = v.get("metrics", [{}])
    res = v.get("results", {})
    print(k, res.get("test_nll_one_mask"), res.get("best_epoch"), "epochs", len(m), m[-1] if m else None)
