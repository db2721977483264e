#!/bin/bash
# Session 6, one H100, after made_sweep4.sh: the paper's two hidden layers of 8000 with 32
# random orderings, now with a rate step; 1 x 8000 with two steps (a long low-rate tail) and
# with slower averaging; two layers of 4000.
# Run from the repository root on the GPU machine with SCRATCHGEN_DATA set and $OUT a folder.
S=$OUT/sweep5; mkdir -p $S
C="python3 examples/made_mnist.py --direct 1 --device cuda --no-progress --no-checkpoint --patience 500 --max-time ${BUDGET:-470} --num-masks 32 --natural-ordering 0 --valid-masks 4"
run() { name=$1; shift; timeout ${LIMIT:-560} $C "$@" --out $S/$name > $S/$name.log 2>&1 & }
run B2_h8000x2_step60 --hidden 8000 8000 --ema 0.999 --epochs 80 --lr-step 60
run F2_h8000_step30x2 --hidden 8000 --ema 0.999 --epochs 75 --lr-step 30
run L_h8000_step30_ema9999 --hidden 8000 --ema 0.9999 --epochs 60 --lr-step 30
run M_h4000x2_step40 --hidden 4000 4000 --ema 0.999 --epochs 70 --lr-step 40
wait
python3 bench/runs/gpu_h100/summarize.py $S $OUT/made_sweep5.json
