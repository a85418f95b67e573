"""The compute dtype ``model.dtype="auto"`` picks per backend and CPU, and where it is recorded."""

import jax
import pytest
from helpers import tiny_config

from jepa import hardware
from jepa.models import build_encoder

ZEN = {"vendor": "AuthenticAMD", "model": "AMD EPYC 9R45", "flags": ["avx512f", "avx512_bf16"]}
XEON_NO_AMX = {"vendor": "GenuineIntel", "model": "Xeon", "flags": ["avx512f", "avx512_bf16"]}
AVX2 = {"vendor": "AuthenticAMD", "model": "AMD EPYC 7B13", "flags": ["avx2"]}


@pytest.mark.parametrize(
    "backend, cpu, dtype",
    [
        ("gpu", AVX2, "bfloat16"),  # the accelerator decides, not the host
        ("tpu", AVX2, "bfloat16"),
        ("cpu", ZEN, "bfloat16"),  # measured: the bf16 step faster than float32
        ("cpu", XEON_NO_AMX, "float32"),  # measured: the bf16 step slower than float32
        ("cpu", AVX2, "float32"),  # bf16 emulated
    ],
)
def test_auto_dtype_follows_the_measured_speed(backend, cpu, dtype):
    chosen, why = hardware.auto_compute_dtype(backend, cpu)
    assert chosen == dtype and why


def test_cpu_info_reads_this_host():
    info = hardware.cpu_info()
    assert set(info) == {"vendor", "model", "flags"}
    assert all(
        f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") for f in info["flags"]
    )


def test_a_run_stores_the_resolved_dtype_and_models_build_with_it():
    config = tiny_config(**{"model.dtype": "auto"})
    resolved = hardware.resolve_auto_dtype(config)
    want, _ = hardware.auto_compute_dtype(jax.default_backend())
    assert config.model.dtype == "auto" and resolved.model.dtype == want
    assert build_encoder(config).dtype == build_encoder(resolved).dtype == getattr(jax.numpy, want)
