"""A Helmholtz machine (a 784-200-200 sigmoid belief net and its recognition net) trained with
reweighted wake-sleep (Bornschein & Bengio 2015), test NLL by importance sampling with k = 5000."""
from .recipe import Recipe

RECIPE = Recipe(
    name="helmholtz_rws", model="helmholtz",
    settings=dict(epochs=20, algorithm="rws", valid_k=20),
    metric="test_nll", expected=105.80, tolerance=1.0, higher_is_better=False, unit="nats",
    paper=None, paper_source="Bornschein & Bengio 2015 report about 85-86 with NADE layers; no factorial-layer 784-200-200 figure",
    data="binarized MNIST, Larochelle's fixed binarization, 50k/10k/10k; importance sampling with the recognition "
         "net as proposal, k = 5000, all 10k test digits",
    budget="20 epochs of Adam 1e-3, K = 5, batch 100 (validation NLL still falling); plain wake-sleep at the same "
           "epochs gets 112.11",
    cpu_minutes=21, gpu_minutes=None,
    measured="105.80 nats (valid 112.02 with k = 20, best epoch 20): `scratchgen train helmholtz --epochs 20 --set "
             "algorithm=rws --set valid_k=20 --threads 1`; 2-core Xeon, 285 s of epochs and 16 min of test estimate "
             "while another job shared the cores, 2026-12-06",
    docs="docs/models/helmholtz.md",
    smoke=dict(epochs=1, hidden=[8, 4], limit_train=256, limit_eval=64, eval_k=10, valid_k=5),
)
