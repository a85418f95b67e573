"""Test setup: eight simulated CPU devices, set before JAX initializes its backend, and a
persistent compilation cache shared by every test and subprocess of this session: many tests
compile the same tiny train step, and a cache hit costs milliseconds instead of seconds."""

import os
import tempfile

# Backend optimization level 0: the suite's programs are tiny, so XLA:CPU's compile time, not
# their run time, is what the suite waits for; level 0 cuts the suite's time by a third. The
# classic elemental emitters instead of the MLIR fusion emitters: the tiny hierarchy train step
# compiles in 7–9 s instead of 13 s.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    + " --xla_cpu_use_fusion_emitters=false"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Environment variables, not jax.config, so that subprocesses (CLI tests) share the cache. One
# directory per test run, shared by both xdist workers (same test-run id): a program one worker
# compiled is a cache hit for the other. Entries are written without a lock; a reader that
# catches one half-written gets JAX's "error reading cache entry" warning and compiles.
_run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
_cache = os.path.join(tempfile.gettempdir(), f"jepa-test-xla-{_run}")
os.makedirs(_cache, exist_ok=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _cache)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory) -> str:
    """mnist5k prepared once per test session (about 2 s), through the normal TFDS path."""
    from jepa.data import pipeline

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    pipeline.load_data_source("mnist5k", "test", data_dir)
    return data_dir


@pytest.fixture(scope="session")
def smm_data_dir(tmp_path_factory) -> str:
    """The tiny stochastic Moving-MNIST config (8 sequences) prepared once per test session,
    through the normal TFDS path."""
    from jepa.data import pipeline

    data_dir = str(tmp_path_factory.mktemp("smm"))
    pipeline.load_data_source("stochastic_moving_mnist/tiny", "test", data_dir)
    return data_dir
