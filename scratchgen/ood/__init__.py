"""scratchgen.ood: the zero-shot out-of-distribution study (`scratchgen ood`).

    scores.py   AUPR, AUROC and PR curves by hand in NumPy; the likelihood-ratio, complexity-corrected
                and typicality scores; compressed lengths (PNG, zlib, an adaptive context model)
    tasks.py    one task: train a family with one digit held out, score the test set (resumable)
    study.py    the tasks on Dask distributed or one after another, resume, tables and summary
    plots.py    PR curves and score histograms per family
    cli.py      the command's arguments
"""
from .scores import aupr, auroc, complexity, complexity_corrected, likelihood_ratio, pr_curve, typicality
from .study import StudyError, run_study

__all__ = ["aupr", "auroc", "pr_curve", "likelihood_ratio", "complexity_corrected", "typicality", "complexity",
           "run_study", "StudyError"]
