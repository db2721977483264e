"""Adam as a Numba CUDA kernel: optim_step.adam_update compiled as a device function, one thread
per element, grid-stride (run on the CPU under NUMBA_ENABLE_CUDASIM=1 in the tests).

NumPy buffers are copied to the device and written back in place; CuPy buffers are updated in
place on the device. This module imports numba.cuda: optim_step imports it on the first call with
impl='cuda'. `cuda` is a module global on purpose: the simulator swaps the module globals that
refer to numba.cuda for its fake module while a kernel runs.
"""
from . import optim_step as api
from .dispatch import CudaIO, device, launch
from .dispatch import cuda as _import_cuda

cuda = _import_cuda()
_update = device(api.adam_update)


@cuda.jit
def _adam_kernel(p, g, m, v, vmax, c, decoupled, amsgrad):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        vm = vmax[i] if amsgrad else v[i]      # vmax is an empty placeholder unless amsgrad
        p[i], m[i], v[i], vm = _update(p[i], g[i], m[i], v[i], vm, c, decoupled, amsgrad)
        if amsgrad:
            vmax[i] = vm


def adam(p, g, m, v, vmax, c, decoupled, amsgrad):
    """One step in place on p, m, v (and vmax with amsgrad); c: optim_step's coefficients."""
    if not p.size:
        return
    io = CudaIO((p, g, m, v, vmax))
    state = [io.put(a) for a in (p, m, v, vmax)]
    blocks, threads = launch(p.size, api.CUDA_THREADS, api.CUDA_MAX_BLOCKS)
    _adam_kernel[blocks, threads](state[0], io.put(g), state[1], state[2], state[3], c, decoupled, amsgrad)
    if io.host:
        for host, dev in zip((p, m, v, vmax), state):
            host[...] = dev.copy_to_host()
