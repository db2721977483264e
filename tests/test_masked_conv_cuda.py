"""GPU implementations of the masked convolution (scratchgen.kernels.masked_conv):

- 'cuda' (Numba CUDA) against the reference under the CUDA simulator, in a subprocess
  (NUMBA_ENABLE_CUDASIM must be set before numba is imported; the simulator is slow: tiny shapes),
  on fixed cases and on Hypothesis's (kernel sizes, strides, padding, batch and channel counts);
- the CUDA C source of the CuPy kernels (kernels/masked_conv_cupy.py) compiled with
  `nvcc --ptx`, so syntax and type errors show up without a GPU (skipped without nvcc);
- 'cupy' and 'cuda' on a real GPU, and the op on CUDA tensors (skipped without one).
"""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.kernels import masked_conv as K
from scratchgen.kernels.dispatch import select

HERE = os.path.dirname(os.path.abspath(__file__))

# (k, mask_type, data_channels, n, c_in, c_out, h, w, dtype, bias, stride, padding): every kernel
# size, both mask types, one and three colour groups, 1x1 and non-square images, both dtypes, with
# and without bias; PixelCNN's geometry (padding None: k // 2) and strides with other paddings.
SIM_CASES = [
    (1, "A", 3, 1, 3, 3, 2, 3, "float32", True, (1, 1), None),
    (3, "A", 1, 2, 1, 2, 3, 4, "float64", False, (1, 1), None),
    (3, "B", 3, 1, 3, 6, 3, 2, "float32", False, (1, 1), None),
    (5, "A", 3, 1, 3, 3, 1, 1, "float64", True, (1, 1), None),
    (5, "B", 1, 2, 2, 1, 4, 3, "float32", True, (1, 1), None),
    (7, "B", 1, 1, 1, 2, 3, 5, "float64", True, (1, 1), None),
    (3, "A", 3, 1, 3, 3, 5, 4, "float64", True, (2, 2), (1, 0)),
    (5, "B", 1, 1, 2, 1, 6, 5, "float32", False, (3, 2), (2, 3)),
    (1, "B", 1, 2, 1, 2, 3, 4, "float32", True, (2, 1), (1, 1)),
]

SIM_EXAMPLES = 12   # Hypothesis cases in the simulator, besides SIM_CASES

CUDASIM_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from scratchgen.kernels import masked_conv as K
    import test_masked_conv as T
    K.CUDA_MAX_BLOCKS = 2    # fewer blocks than work items: every kernel grid-strides
    from hypothesis import given, settings

    def check(case):
        ref = T.run_all_ref(case.x, case.w, case.b, case.g, case)
        out = T.run_all(case, "cuda")       # masked weights are NaN: never read
        for a, r, s in zip(out, ref, T.scales(case)):
            assert a.dtype == case.dtype, (case, a.dtype)
            T.assert_close(a, r, s, case.dtype)
        assert (out[2][case.mask == 0] == 0).all(), case

    cases = {cases!r}
    for seed, (k, mask_type, d, n, c_in, c_out, h, w, dtype, bias, stride, padding) in enumerate(cases):
        check(T.Case(k, mask_type, d, n, c_in, c_out, h, w, np.dtype(dtype).type, bias, seed, stride, padding))

    # ... and Hypothesis's cases (the CPU tests' strategy, smaller: the simulator runs a Python
    # thread per CUDA thread), derandomized so that CI sees the same ones every run.
    settings(max_examples={examples}, deadline=None, derandomize=True, database=None)(
        given(T.cases(max_n=2, max_groups=1, max_side=3))(check))()
    # an empty batch: no launch, right shapes
    x, w = np.zeros((0, 3, 2, 2), np.float32), np.ones((3, 3, 3, 3), np.float32)
    assert K.masked_conv2d_forward(x, w, impl="cuda").shape == (0, 3, 2, 2)
    assert (K.masked_conv2d_weight_grad(x, np.zeros((0, 3, 2, 2), np.float32), 3, impl="cuda") == 0).all()
    print("CUDASIM-OK")
""")


def test_cuda_simulator_matches_reference():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    script = CUDASIM_SCRIPT.format(cases=SIM_CASES, examples=SIM_EXAMPLES)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=HERE,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "CUDASIM-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


# -- the CUDA C sources, compiled without a GPU ------------------------------------------------
def _nvcc_compile(source, tmp_path, name):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    # The oldest architecture this nvcc knows (CUDA 13 dropped sm_70); PTX needs no GPU.
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60).stdout.split()
    arch = listed[0] if listed else "compute_75"
    src, ptx = tmp_path / f"{name}.cu", tmp_path / f"{name}.ptx"
    src.write_text(source)
    proc = subprocess.run([nvcc, "--ptx", f"-arch={arch}", "-Werror", "all-warnings", str(src), "-o", str(ptx)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ptx.read_text()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_source_compiles_with_nvcc(dtype, tmp_path):
    from scratchgen.kernels import masked_conv_cupy
    ptx = _nvcc_compile(masked_conv_cupy.cupy_source(dtype), tmp_path, f"masked_conv_{dtype}")
    for kernel in ("masked_conv_forward", "masked_conv_input_grad", "masked_conv_weight_grad"):
        assert f".entry {kernel}(" in ptx            # extern "C": the names CuPy looks up


# -- CuPy, on a real GPU only ------------------------------------------------------------------
# (the `cp` fixture, CuPy on a real GPU or a clean skip, is in conftest.py)


@pytest.mark.parametrize("impl", ["cupy", "cuda"])
@pytest.mark.parametrize("case_args", SIM_CASES + [(7, "A", 1, 4, 1, 16, 28, 28, "float32", True, (1, 1), None),
                                                   (5, "B", 3, 3, 12, 12, 9, 7, "float64", True, (1, 1), None),
                                                   (5, "B", 1, 3, 8, 8, 15, 16, "float32", True, (2, 2), (2, 2))])
def test_gpu_kernels_match_reference(cp, impl, case_args):
    import test_masked_conv as T
    k, mask_type, d, n, c_in, c_out, h, w, dtype, bias, stride, padding = case_args
    case = T.Case(k, mask_type, d, n, c_in, c_out, h, w, np.dtype(dtype).type, bias, 11, stride, padding)
    dev = {name: None if a is None else cp.asarray(a) for name, a in
           (("x", case.x), ("w", case.w_poisoned), ("b", case.b), ("g", case.g))}
    geo = case.geometry
    out = (K.masked_conv2d_forward(dev["x"], dev["w"], dev["b"], mask_type, d, **geo, impl=impl),
           K.masked_conv2d_input_grad(dev["g"], dev["w"], mask_type, d, **geo, input_size=(h, w), impl=impl),
           K.masked_conv2d_weight_grad(dev["x"], dev["g"], k, mask_type, d, **geo, impl=impl))
    for a, r, s in zip(out, T.run_all_ref(case.x, case.w, case.b, case.g, case), T.scales(case)):
        assert isinstance(a, cp.ndarray)                  # results stay on the device
        T.assert_close(cp.asnumpy(a), r, 4 * s, case.dtype)   # FMA contraction: other roundings
    assert (cp.asnumpy(out[2])[case.mask == 0] == 0).all()


def test_gpu_op_and_layer_match_cpu(cp):
    from scratchgen import nn
    assert select(K.FAMILY, None, (cp.zeros((1, 1, 2, 2), cp.float32),)) == "cupy"
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((6, 3, 5, 5)), rng.standard_normal(6)
    results = []
    for device in ("cpu", "cuda"):
        ts = [sg.tensor(a, device=device, requires_grad=True) for a in (x, w, b)]
        y = sg.ops.masked_conv2d(*ts, mask_type="A", data_channels=3)
        y = y + sg.ops.masked_conv2d(*ts, mask_type="B", data_channels=3, stride=2, padding=(2, 1)).sum()
        grads = sg.grad((y * y).sum(), ts)
        results.append([y.detach().numpy()] + [g.numpy() for g in grads])
    for a, c in zip(*results):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
    layer = nn.MaskedConv2d(3, 6, 3, "B", 3).to("cuda")
    assert layer(sg.tensor(x.astype(np.float32), device="cuda")).device == "cuda"
