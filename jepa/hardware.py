"""What the devices a run is on can do: the nominal peaks that MFU is quoted against."""

from __future__ import annotations

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
