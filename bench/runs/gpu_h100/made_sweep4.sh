#!/bin/bash
# Session 6, one H100, after made_sweep3.sh: 1 x 8000 units with 32 random orderings overfits
# from epoch ~33 at lr 1e-3, so step the rate down there; natural ordering with 32 connectivities
# without decay; the 4000-unit single-mask recipe with a second seed.
# Run from the repository root on the GPU machine with SCRATCHGEN_DATA set and $OUT a folder.
S=$OUT/sweep4; mkdir -p $S
C="python3 examples/made_mnist.py --direct 1 --device cuda --no-progress --no-checkpoint --patience 500 --ema 0.999 --max-time ${BUDGET:-430}"
run() { name=$1; shift; timeout ${LIMIT:-540} $C "$@" --out $S/$name > $S/$name.log 2>&1 & }
run F_h8000_32m_rand_step30 --hidden 8000 --num-masks 32 --natural-ordering 0 --valid-masks 4 --epochs 45 --lr-step 30
run G_h8000_32m_rand_wd1e-4_step40 --hidden 8000 --num-masks 32 --natural-ordering 0 --valid-masks 4 --weight-decay 1e-4 --epochs 55 --lr-step 40
run H_h8000_32m_nat_step35 --hidden 8000 --num-masks 32 --natural-ordering 1 --valid-masks 4 --epochs 50 --lr-step 35
run J_h4000_32m_rand_step30 --hidden 4000 --num-masks 32 --natural-ordering 0 --valid-masks 4 --epochs 45 --lr-step 30
run K_h4000_1m_nat_wd2e-3_s1 --hidden 4000 --natural-ordering 1 --weight-decay 2e-3 --epochs 120 --lr-step 108 --seed 1
wait
python3 bench/runs/gpu_h100/summarize.py $S $OUT/made_sweep4.json
