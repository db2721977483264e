#!/bin/bash
# Session 6, one H100: MADE with order-agnostic (random orderings) and connectivity-agnostic
# training, 32 masks and 8000-unit layers, each run a separate process on the one GPU, all at once,
# every run stopped by a wall-clock budget (--max-time) and then scored once on the test set
# with the 32-mask ensemble. The full test suite runs beside them.
# Run from the repository root on the GPU machine with SCRATCHGEN_DATA set and $OUT a folder.
S=$OUT/sweep3; mkdir -p $S
(timeout 420 python3 -m pytest -q -p no:cacheprovider -n 4 tests > $OUT/pytest_full.log 2>&1; tail -3 $OUT/pytest_full.log) &
C="python3 examples/made_mnist.py --direct 1 --device cuda --no-progress --no-checkpoint --patience 500 --ema 0.999 --max-time ${BUDGET:-450}"
run() { name=$1; shift; timeout ${LIMIT:-570} $C "$@" --out $S/$name > $S/$name.log 2>&1 & }
run A_h8000_32m_rand --hidden 8000 --num-masks 32 --natural-ordering 0 --valid-masks 4 --epochs 120 --lr-step 108
run B_h8000x2_32m_rand --hidden 8000 8000 --num-masks 32 --natural-ordering 0 --valid-masks 4 --epochs 80 --lr-step 72
run C_h8000_32m_nat_wd1e-3 --hidden 8000 --num-masks 32 --natural-ordering 1 --valid-masks 4 --weight-decay 1e-3 --epochs 120 --lr-step 108
run D_h4000_1m_nat_wd2e-3 --hidden 4000 --natural-ordering 1 --weight-decay 2e-3 --epochs 120 --lr-step 108
run E_h8000_32m_rand_wd5e-4 --hidden 8000 --num-masks 32 --natural-ordering 0 --valid-masks 4 --weight-decay 5e-4 --epochs 120 --lr-step 108
wait
python3 bench/runs/gpu_h100/summarize.py $S $OUT/made_sweep3.json
