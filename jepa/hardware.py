"""What the devices a run is on can do: the nominal peaks that MFU is quoted against."""

from __future__ import annotations

import contextlib
import logging

import jax
import ml_collections

# Nominal dense bf16 FLOP/s per device (vendor data sheets; SXM parts unless named), the MFU
# denominator. Matched against ``device_kind`` in order: the first substring found wins, so a
# more specific name ("H100 PCIe", "TPU v5 lite") comes before the general one.
NOMINAL_BF16_PEAK = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("TPU v6", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
)


def nominal_peak(device_kind: str) -> float | None:
    """The device's dense bf16 FLOP/s (None: not listed, e.g. a CPU, whose peak depends on the
    model and is measured instead)."""
    return next((peak for name, peak in NOMINAL_BF16_PEAK if name in device_kind), None)


def cpu_info() -> dict:
    """The host CPU's vendor, model name and the instruction-set flags that decide the compute
    dtype (Linux ``/proc/cpuinfo``; empty values elsewhere)."""
    fields = {}  # the fields repeat once per core: the first core's are kept
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {
        "vendor": fields.get("vendor_id", ""),
        "model": fields.get("model name", ""),
        "flags": [f for f in fields.get("flags", "").split() if f in wanted],
    }


def auto_compute_dtype(backend: str, cpu: dict | None = None) -> tuple[str, str]:
    """``model.dtype="auto"``: (dtype, why) for the backend the run is on, by the train step's
    measured speed (docs/performance.md).

    GPUs and TPUs compute in bfloat16 (native bf16 matmul units). A CPU only where bfloat16 was
    measured faster than float32 for the I-JEPA step: AMD Zen 4/5 with AVX512-BF16 (0.76× the
    float32 step time). On an Intel Xeon with AVX512-BF16 but no AMX the bf16 step took 1.56×
    the float32 one, and without AVX512-BF16 bf16 is emulated: float32 there.
    """
    if backend in ("gpu", "cuda", "rocm", "tpu"):
        return "bfloat16", f"{backend}: native bf16 matmul units"
    cpu = cpu_info() if cpu is None else cpu
    if cpu["vendor"] == "AuthenticAMD" and "avx512_bf16" in cpu["flags"]:
        return "bfloat16", "AMD CPU with AVX512-BF16: the bf16 step measured faster"
    missing = "AVX512-BF16" if "avx512_bf16" not in cpu["flags"] else "a measured bf16 gain"
    return "float32", f"CPU ({cpu['vendor'] or 'unknown vendor'}) without {missing}"


def resolve_auto_dtype(config):
    """A copy of ``config`` whose ``model.dtype="auto"`` is the dtype chosen for this backend
    (stored with the run's checkpoints, so the choice is on record); the why is logged."""
    if config.model.dtype != "auto":
        return config
    dtype, why = auto_compute_dtype(jax.default_backend())
    logging.info("model.dtype=auto: %s (%s)", dtype, why)
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.dtype = dtype
    return config
