"""The same model, the same code, on the CPU (NumPy) and on a GPU (CuPy): the losses agree.

A scratchgen tensor wraps an array; its module (NumPy or CuPy) decides where the arithmetic runs.
`model.to("cuda")` moves every parameter and buffer, `tensor.to("cuda")` moves the data, and
from there the forward pass, autograd and the optimizer run unchanged on the GPU. In float64 the
two devices differ only in the order of floating-point sums, so the training curves coincide:

    |loss_cpu(step) - loss_cuda(step)| ~ 1e-12,   for every step

Here: a MADE trained for a few Adam steps on synthetic binary data, on each device from the same
initial weights. Without CuPy or an NVIDIA GPU it trains on the CPU only and says so.

    python examples/same_model_on_cuda.py
"""
import numpy as np

import scratchgen as sg
from scratchgen.models import MADE

D, N, STEPS = 16, 256, 25


def cuda_available():
    """CuPy is an optional dependency: import it only here, and treat any failure as 'no GPU'."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, or no device
        return False


def synthetic_data():
    """Binary vectors from a Markov chain: each bit copies the previous one with probability 0.9,
    so the autoregressive conditionals p(x_d | x_<d) have something to learn."""
    rng = np.random.default_rng(0)
    x = np.zeros((N, D))
    x[:, 0] = rng.random(N) < 0.5
    for d in range(1, D):
        x[:, d] = np.where(rng.random(N) < 0.9, x[:, d - 1], 1 - x[:, d - 1])
    return x


def train(device):
    sg.manual_seed(0)                                   # the same initial weights on every device
    model = MADE(D, hidden_sizes=[64], dtype=sg.float64).to(device)
    optimizer = sg.optim.Adam(model.parameters(), lr=1e-2)   # created after the move, as in PyTorch
    x = sg.tensor(synthetic_data()).to(device)          # the batch lives where the model lives
    losses = []
    for _ in range(STEPS):
        loss = -model.log_prob(x).mean()                 # negative log-likelihood, nats per vector
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())                       # .item() brings one number back to the host
    print(f"{device:4s}: parameters on {model.layers[0].weight.device}, "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f} nats after {STEPS} steps")
    return np.array(losses)


cpu = train("cpu")
assert cpu[-1] < cpu[0] - 1, "training on the CPU did not lower the loss"
if not cuda_available():
    print("no CUDA device (or CuPy not installed): trained on the CPU only; install scratchgen[gpu] on a GPU machine")
    raise SystemExit(0)

cuda = train("cuda")
gap = np.max(np.abs(cpu - cuda))
print(f"largest |loss_cpu - loss_cuda| over {STEPS} steps: {gap:.1e}")
assert gap < 1e-8, "CPU and GPU training diverged"
print("same model, same losses on CPU and CUDA: OK")
