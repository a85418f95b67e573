"""scripts/benchmark.py: the device suite's JSON at toy size, and the MFU denominators."""

import json
import os
import subprocess
import sys

import pytest

from jepa.hardware import nominal_peak

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark.py")

# What a throughput table needs from every config of the suite.
FIELDS = {
    "experiment",
    "config",
    "batch",
    "dtype",
    "dtype_choice",
    "cpu",
    "step_s_median",
    "images_per_s",
    "flops_per_step",
    "achieved_flops_per_s",
    "peak_matmul_flops_per_s",
    "utilization",
    "nominal_peak_flops_per_s",
    "mfu",
    "peak_memory_bytes",
    "compiles",
    "devices",
    "mesh",
    "backend",
    "device_kind",
}


def test_nominal_peaks_name_the_right_part():
    assert nominal_peak("NVIDIA H200") == 989e12
    assert nominal_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert nominal_peak("NVIDIA H100 PCIe") == 756e12  # not the SXM figure
    assert nominal_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert nominal_peak("TPU v5 lite") == 197e12  # v5e, not v5p
    assert nominal_peak("TPU v5p") == 459e12
    assert nominal_peak("cpu") is None


@pytest.mark.slow
def test_tiny_suite_reports_every_field_for_every_config():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # One device (the suite's batches are per device), the suite's cheap compile flags kept.
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
    run = subprocess.run(
        [sys.executable, SCRIPT, "--suite=tiny", "--steps=1"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",  # the suite finds its experiments from the script's location
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["suite"] == "tiny" and summary["backend"] == "cpu"
    assert len(summary["results"]) == 2  # two toy ViTs
    for result in summary["results"]:
        assert FIELDS <= set(result), FIELDS - set(result)
        assert result["compiles"] == 1
        assert result["batch"] == 2 * result["devices"]
        assert result["mfu"] is None  # no nominal peak for a CPU; utilization instead
        assert set(result["cpu"]) == {"vendor", "model", "flags"}
        assert 0 < result["utilization"] and result["peak_memory_bytes"] > 0
        assert result["images_per_s"] == pytest.approx(result["batch"] / result["step_s_median"])
