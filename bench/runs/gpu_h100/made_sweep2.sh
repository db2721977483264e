#!/bin/bash
# Run from the repository root on the GPU machine, with SCRATCHGEN_DATA set and $OUT a folder.
# MADE, the original code's recipe (Adagrad, orthogonal init) run long, on one GPU; the full test suite beside it.
C="python3 examples/made_mnist.py --hidden 500 --direct 1 --device cuda"
mkdir -p /tmp/sweep
(timeout 400 python3 -m pytest -q -p no:cacheprovider -n 4 tests > $OUT/pytest_full.log 2>&1; tail -3 $OUT/pytest_full.log) &
run() { name=$1; shift; timeout ${LIMIT:-540} $C "$@" --out /tmp/sweep/$name > /tmp/sweep/$name.log 2>&1 & }
run H_adagrad01_nat --optimizer adagrad --lr 0.01 --init orthogonal --natural-ordering 1 --epochs 260 --patience 30
run I_adagrad01_rand --optimizer adagrad --lr 0.01 --init orthogonal --natural-ordering 0 --epochs 260 --patience 30
run J_adagrad03_nat --optimizer adagrad --lr 0.03 --init orthogonal --natural-ordering 1 --epochs 260 --patience 30
run K_adagrad05_nat --optimizer adagrad --lr 0.05 --init orthogonal --natural-ordering 1 --epochs 260 --patience 30
run L_natural_wd1e-3_s1 --weight-decay 1e-3 --lr-step 90 --epochs 100 --natural-ordering 1 --seed 1 --patience 200
run M_natural_wd5e-4 --weight-decay 5e-4 --lr-step 90 --epochs 100 --natural-ordering 1 --patience 200
wait
python3 bench/runs/gpu_h100/summarize.py $OUT/sweep2.json
