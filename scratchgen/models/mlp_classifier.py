"""A multilayer perceptron classifying MNIST digits (784-512-256-10, ReLU).

Not a generative model: the smallest end-to-end check of the engine, the data pipeline, the
training loop and the command line (`scratchgen train mlp`), and the feature extractor of the
GAN family's FID (scratchgen.metrics.classifier).
"""
from .. import nn

__all__ = ["MLPClassifier"]


class MLPClassifier(nn.Module):
    """logits = MLP(x) for x of shape (N, 784) (or (N, 28, 28)); dropout after each hidden ReLU."""

    def __init__(self, in_features=784, hidden=(512, 256), num_classes=10, dropout=0.0):
        super().__init__()
        self.net = nn.mlp([in_features, *hidden, num_classes], "relu", dropout=dropout)

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], -1))
