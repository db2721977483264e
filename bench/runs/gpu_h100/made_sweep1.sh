#!/bin/bash
# Run from the repository root on the GPU machine, with SCRATCHGEN_DATA set and $OUT a folder.
# MADE sweep on one GPU: each run a separate process, all at once.
C="python3 examples/made_mnist.py --hidden 500 --natural-ordering 0 --direct 1 --patience 200 --device cuda"
mkdir -p /tmp/sweep
run() { name=$1; shift; timeout ${LIMIT:-540} $C "$@" --out /tmp/sweep/$name > /tmp/sweep/$name.log 2>&1 & }
run A_wd1e-3 --weight-decay 1e-3 --lr-step 90 --epochs 100
run B_wd1.5e-3 --weight-decay 1.5e-3 --lr-step 90 --epochs 100
run C_wd2e-3 --weight-decay 2e-3 --lr-step 90 --epochs 100
run D_wd1e-3_lr5e-4 --weight-decay 1e-3 --lr 5e-4 --lr-step 90 --epochs 100
run E_natural_wd1e-3 --weight-decay 1e-3 --lr-step 90 --epochs 100 --natural-ordering 1
run F_32masks --num-masks 32 --lr-step 135 --epochs 150
run G_h2000_32masks --num-masks 32 --lr-step 135 --epochs 150 --hidden 2000
wait
python3 bench/runs/gpu_h100/summarize.py $OUT/sweep.json
