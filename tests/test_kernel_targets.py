"""The kernels' shared machinery (scratchgen/kernels/dispatch.py): one `force_impl` switch for every
family, the NumPy 2.5 alias that numba-cuda needs, and Adam's Numba CUDA target (one body with the
CPU loop and the reference) under the CUDA simulator."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scratchgen.kernels import coupling, dispatch, force_impl, masked_conv, optim_step


def test_force_impl_nests_restricts_to_families_and_restores():
    a = np.zeros((2, 3), np.float32)
    x = np.zeros((1, 1, 3, 3), np.float32)
    assert dispatch.select(coupling.FAMILY, None, (a,)) == "numba"
    with force_impl("reference"):
        assert dispatch.select(coupling.FAMILY, "numba", (a,)) == "reference"
        assert dispatch.select(masked_conv.FAMILY, None, (x,)) == "reference"
        with force_impl("numba", "masked_conv"):                   # inner, one family only
            assert dispatch.select(masked_conv.FAMILY, None, (x,)) == "numba"
            assert dispatch.select(coupling.FAMILY, None, (a,)) == "reference"
        assert dispatch.select(masked_conv.FAMILY, None, (x,)) == "reference"
    with force_impl("numpy", "optim"):                             # optim_step's old name
        assert dispatch.select(optim_step.FAMILY, None, (a[0],)) == "reference"
    assert dispatch.select(masked_conv.FAMILY, None, (x,)) == "gemm"
    with pytest.raises(ValueError, match="families"):
        with force_impl("numba", "convolution"):
            pass


def test_optim_compiled_forms_need_flat_contiguous_buffers():
    p = np.zeros((4, 2), np.float32)[:, 0]                        # strided: the reference runs
    args = (p, p.copy(), p.copy(), p.copy())
    optim_step.adam(*args, lr=0.1)
    with pytest.raises(TypeError, match="C-contiguous"):
        optim_step.adam(*args, lr=0.1, impl="numba")


def test_cuda_import_puts_back_row_stack(monkeypatch):
    monkeypatch.delattr(np, "row_stack", raising=False)          # as NumPy 2.5 has it
    dispatch.cuda()
    assert np.row_stack is np.vstack


ADAM_SIM = textwrap.dedent("""
    import numpy as np
    from scratchgen.kernels import optim_step as K
    K.CUDA_MAX_BLOCKS = 2                # fewer blocks than elements: the kernel grid-strides
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for amsgrad, decoupled, wd in ((False, False, 0.0), (True, False, 0.1), (False, True, 0.1)):
            p, g, m = (rng.standard_normal(300).astype(dtype) for _ in range(3))
            v, vmax = (np.abs(rng.standard_normal(300)).astype(dtype) for _ in range(2))
            a = [p, g, m, v, vmax]
            b = [x.copy() for x in a]
            kw = dict(lr=0.01, weight_decay=wd, amsgrad=amsgrad, decoupled=decoupled, step=3)
            K.adam(*a, impl="cuda", **kw)
            K.adam(*b, impl="reference", **kw)
            for x, y in zip(a, b):
                np.testing.assert_allclose(x, y, rtol=1e-6 if dtype == np.float32 else 1e-14)
    print("CUDASIM-OK")
""")


def test_adam_cuda_simulator_matches_reference():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", ADAM_SIM], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "CUDASIM-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


PTX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    try:
        from numba import cuda, types
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()                                   # the CUDA toolkit's compiler library
        import numba.cuda.dispatcher as D
    except Exception as e:
        print("NO-NVVM", e)
        sys.exit(0)

    class Device:                                     # no GPU: device functions are typed for sm_75
        compute_capability = (7, 5)
    D.get_current_device = lambda: Device()
    from scratchgen.kernels import masked_conv_cuda as MC, coupling_cuda as CC, optim_step_cuda as OC

    def ptx(kernel, *sig):
        cuda.compile_ptx(kernel.py_func, sig, cc=(7, 5))

    for dt in (types.float32, types.float64):
        A1, A2, A4 = (types.Array(dt, n, "C") for n in (1, 2, 4))
        b, i = types.boolean, types.int64
        ptx(OC._adam_kernel, A1, A1, A1, A1, A1, types.UniTuple(dt, 10), b, b)
        forward, input_grad, weight_grad = MC._kernels(np.dtype(str(dt)).str, 128)
        ptx(forward, A4, A4, A1, A4, b, i, i, i, i, i, i, dt)
        ptx(input_grad, A4, A4, A4, i, i, i, i, i, i, dt)
        ptx(weight_grad, A4, A4, A4, i, i, i, i, i, i, dt)
        rows, forward_grad, inverse_grad = CC._kernels(np.dtype(str(dt)).str, 256)
        ptx(rows, A2, A2, A2, A2, A1, dt, b)
        ptx(forward_grad, A2, A2, A2, A1, A2, A2, b, b)
        ptx(inverse_grad, A2, A2, A2, A2, A1, A2, A2, A2, b)
    print("PTX-OK")
""")


def test_cuda_kernels_compile_to_ptx():
    """The Numba CUDA kernels through the real CUDA target's compiler (the simulator runs them as
    Python, so it does not see what the target cannot compile); needs NVVM, not a GPU."""
    proc = subprocess.run([sys.executable, "-c", PTX_SCRIPT], capture_output=True, text=True, timeout=600)
    if "NO-NVVM" in proc.stdout:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0 and "PTX-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
