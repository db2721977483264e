import os

import pytest
from hypothesis import HealthCheck, settings

# Gradient checks are slow per example; keep the budget explicit. CI uses "ci".
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def cp():
    """CuPy, when a CUDA device is usable (and SCRATCHGEN_TEST_GPU is not 0); otherwise the test is skipped."""
    from scratchgen.testing import gpu_available
    if not gpu_available():
        pytest.skip("no CuPy with a usable CUDA device (or SCRATCHGEN_TEST_GPU=0)")
    import cupy
    return cupy


@pytest.fixture
def crash_while_saving(monkeypatch):
    """crash_while_saving(n): a context in which saving the checkpoint of epoch n raises
    KeyboardInterrupt, as a kill at that moment would; outside it, saving works again."""
    import contextlib

    from scratchgen import checkpoint
    real_save = checkpoint.save_checkpoint

    @contextlib.contextmanager
    def crash(n):
        def dying_save(path, model, *args, epoch=0, **kwargs):
            if epoch == n:
                raise KeyboardInterrupt
            return real_save(path, model, *args, epoch=epoch, **kwargs)
        with monkeypatch.context() as m:
            m.setattr(checkpoint, "save_checkpoint", dying_save)
            yield
    return crash
