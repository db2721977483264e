"""`python -m scratchgen.metrics [--data DIR] [--rebuild]`: train (or check) the cached MNIST
classifier behind mnist_fid and mnist_inception_score."""
import sys

from .classifier import main

sys.exit(main())
