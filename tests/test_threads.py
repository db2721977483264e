"""The CPU thread policy (scratchgen/threads.py): one count for BLAS and Numba, idle Numba workers
sleep, small kernels stay serial, and --threads / $SCRATCHGEN_THREADS override."""
import json
import os
import subprocess
import sys

import pytest

from scratchgen import threads

_PROBE = """
import json, os
import scratchgen, scratchgen.threads as T
from threadpoolctl import threadpool_info
blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
T.parallel_pays(1, 0)  # a kernel asking: Numba gets the count too
import numba
print(json.dumps({"threads": T.threads(), "blas": blas, "numba": numba.get_num_threads(),
                  "wait": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _probe(**env):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OMP_", "OPENBLAS_NUM", "MKL_", "NUMBA_NUM", "SCRATCHGEN_THREADS"))}
    clean.update(env)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=clean, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_gives_blas_and_numba_the_physical_cores_and_idle_workers_sleep():
    got = _probe()
    n = threads.physical_cores()
    assert got["threads"] == n
    assert all(b == n for b in got["blas"])
    assert got["numba"] == min(n, os.cpu_count())
    assert got["wait"] == "PASSIVE"


def test_environment_overrides_and_a_users_wait_policy_is_kept():
    got = _probe(SCRATCHGEN_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert got["threads"] == 1 and got["numba"] == 1
    assert all(b == 1 for b in got["blas"])
    assert got["wait"] == "ACTIVE"


def test_limit_restores_the_count_before_it():
    before = threads.threads()
    with threads.limit(1):
        assert threads.threads() == 1
    assert threads.threads() == before


def test_small_work_stays_serial_and_one_thread_never_forks():
    with threads.limit(2):
        assert not threads.parallel_pays(10, 100)
        assert threads.parallel_pays(100, 100)
    with threads.limit(1):
        assert not threads.parallel_pays(10 ** 9, 100)


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_a_bad_environment_value_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv("SCRATCHGEN_THREADS", bad)
    with pytest.raises(ValueError, match="SCRATCHGEN_THREADS"):
        threads.default_threads()


def test_set_threads_rejects_a_non_positive_count():
    with pytest.raises(ValueError, match=">= 1"):
        threads.set_threads(0)


def test_the_cli_rejects_bad_thread_counts_without_a_traceback(capsys, monkeypatch):
    from scratchgen.cli import main
    with pytest.raises(SystemExit) as stop:  # argparse's usage error
        main(["train", "gan_toy", "--threads", "0", "--epochs", "1"])
    assert stop.value.code == 2
    assert "--threads: must be >= 1" in capsys.readouterr().err
    monkeypatch.setenv("SCRATCHGEN_THREADS", "lots")
    assert main(["train", "gan_toy", "--epochs", "1"]) == 1
    assert "SCRATCHGEN_THREADS" in capsys.readouterr().err


def test_the_allocator_settings_apply_on_glibc_and_yield_to_the_users():
    import platform
    code = "import scratchgen.allocator as a; print(a.applied)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}   # no user override
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean).stdout
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out.strip() == str(expected)
    env = dict(clean, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "False"


def test_a_limit_set_from_a_worker_thread_reaches_openblas():
    # threadpoolctl lets only its first controlling thread change OpenBLAS; a Dask worker runs
    # tasks in an executor thread, so set_threads must take control before it limits.
    import threading
    from threadpoolctl import threadpool_info
    blas = [i for i in threadpool_info() if i["user_api"] == "blas" and i["internal_api"] == "openblas"]
    if not blas:
        pytest.skip("NumPy is not linked to OpenBLAS here")
    seen = {}

    def worker():
        with threads.limit(1):
            seen["inside"] = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with threads.limit(2):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen["inside"] and set(seen["inside"]) == {1}
