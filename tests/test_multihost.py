"""Multi-host: the global batch does not depend on the number of hosts, the distributed runtime
starts from flags, environment or cluster detection, and a real 2-process run on this machine
(2 × 4 simulated CPU devices, gloo collectives) trains exactly as one 8-device process does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from helpers import mnist_pipeline_config

from jepa import sharding
from jepa.data import pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_config(data_dir: str) -> ml_collections.ConfigDict:
    return mnist_pipeline_config(data_dir=data_dir, hflip=True, read_threads=2)


def take(iterator, n: int) -> list[dict]:
    return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize("hosts", [2, 4])
def test_global_batches_do_not_depend_on_the_number_of_hosts(mnist_data_dir, hosts):
    cfg, batch, seed = data_config(mnist_data_dir), 16, 3
    whole = take(pipeline.make_train_iterator(cfg, batch, seed, 0, 1), 3)
    parts = [
        take(pipeline.make_train_iterator(cfg, batch, seed, h, hosts), 3) for h in range(hosts)
    ]
    for step, expected in enumerate(whole):
        for key in ("image", "label"):
            stacked = np.concatenate([parts[h][step][key] for h in range(hosts)])
            assert stacked.shape[0] == batch
            np.testing.assert_array_equal(stacked, expected[key])


# ---------------------------------------------------------------------------------------------
# Starting the runtime: which calls `maybe_initialize_distributed` makes.

CLUSTER_VARS = (
    "JEPA_COORDINATOR",
    "JEPA_NUM_PROCESSES",
    "JEPA_PROCESS_ID",
    "JEPA_DISTRIBUTED",
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "TPU_WORKER_HOSTNAMES",
    "TPU_PROCESS_ADDRESSES",
)
SLURM_STEP = dict(
    SLURM_JOB_ID="77", SLURM_STEP_NODELIST="node[1-2]", SLURM_NTASKS="2", SLURM_PROCID="1"
)


@pytest.fixture
def initialize_calls(monkeypatch):
    """Records `jax.distributed.initialize` calls instead of making them; a clean environment."""
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append(a))
    for name in CLUSTER_VARS:
        monkeypatch.delenv(name, raising=False)
    return calls


@pytest.mark.parametrize(
    "args, env, expected",
    [
        ((), {}, []),  # a plain single-process run
        (("h:1", 2, 1), {}, [("h:1", 2, 1)]),
        (
            (),
            dict(JEPA_COORDINATOR="h:2", JEPA_NUM_PROCESSES="4", JEPA_PROCESS_ID="3"),
            [("h:2", 4, 3)],
        ),
        (
            ("flag:1", None, 0),
            dict(JEPA_COORDINATOR="env:1", JEPA_NUM_PROCESSES="2"),
            [("flag:1", 2, 0)],
        ),
        ((), SLURM_STEP, [()]),  # srun with 2 tasks: JAX reads the rest from SLURM
        ((), {**SLURM_STEP, "SLURM_NTASKS": "1"}, []),
        ((), {k: v for k, v in SLURM_STEP.items() if k != "SLURM_STEP_NODELIST"}, []),  # sbatch
        ((), dict(TPU_WORKER_HOSTNAMES="t0,t1,t2,t3"), [()]),
        ((), dict(TPU_WORKER_HOSTNAMES="t0"), []),  # a single-host TPU VM
        ((None, None, None, "on"), {}, [()]),
        ((), dict(JEPA_DISTRIBUTED="on"), [()]),
        ((None, None, None, "off"), SLURM_STEP, []),
    ],
)
def test_initialize_from_flags_environment_or_cluster(
    initialize_calls, monkeypatch, args, env, expected
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sharding.maybe_initialize_distributed(*args) == bool(expected)
    assert initialize_calls == expected


@pytest.mark.parametrize(
    "args, message",
    [
        (("h:1", 2, None), "--coordinator=h:1 needs --num_processes and --process_id"),
        (("h:1", 2, 2), r"--process_id=2 is outside \[0, --num_processes=2\)"),
        ((None, None, None, "yes"), "--distributed='yes'; valid: auto, on, off"),
    ],
)
def test_initialize_rejects_bad_arguments(initialize_calls, args, message):
    with pytest.raises(ValueError, match=message):
        sharding.maybe_initialize_distributed(*args)
    assert initialize_calls == []


# ---------------------------------------------------------------------------------------------
# Two real processes.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _env(devices: int, **env) -> dict:
    xla_flags = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    # Optimization level 0 cuts the compile time of the tiny step by ~60% on this CPU; all
    # runs compared here use it.
    xla_flags += [f"--xla_force_host_platform_device_count={devices}"]
    xla_flags += ["--xla_backend_optimization_level=0"]
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(xla_flags), **env)


# Every run below: 4 steps of tests/tiny_experiment.py, checkpoints at 2 and 4, no health
# metrics, FSDP over all 8 devices (with 2 processes of 4 devices, the fsdp axis spans both).
EXPERIMENT = "data_dir={},steps=4,every=2"
MESH = {"health_every": 0, "mesh.data": 1, "mesh.fsdp": 8, "mesh.tensor": 1}
# Two processes: gloo collectives, and no persistent cache: only process 0 writes it and process
# 1's keys differ (they name its devices), so with a warm cache process 0 would start at once
# while process 1 compiles, and gloo gives up on a collective after waiting 30 s.
TWO = dict(JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", JAX_ENABLE_COMPILATION_CACHE="false")


def launch(workdir: str, data_dir: str, devices: int, log, *flags: str, **env):
    """``jepa-train`` on tests/tiny_experiment.py as its own process with `devices` simulated
    CPU devices."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jepa.main",
            f"--config=tests/tiny_experiment.py:{EXPERIMENT.format(data_dir)}",
            f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in MESH.items()),
            *flags,
        ],
        cwd=ROOT,
        env=_env(devices, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def launch_stopping(workdir: str, data_dir: str, log, coordinator: str, process: int, stop: int):
    """Process ``process`` of 2 (4 devices) of the same run, stopped after step ``stop`` (as
    a preempted job is): ``train_and_evaluate(..., max_steps=stop)``."""
    script = "; ".join(
        [
            "import sys",
            "sys.path.insert(0, 'tests')",
            "from jepa import sharding",
            f"sharding.maybe_initialize_distributed({coordinator!r}, 2, {process})",
            "from tiny_experiment import get_config",
            "from jepa import train",
            f"config = get_config({EXPERIMENT.format(data_dir)!r})",
            *(f"config.{k} = {v!r}" for k, v in MESH.items()),
            f"train.train_and_evaluate(config, {workdir!r}, max_steps={stop})",
        ]
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_env(4, **TWO),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_all(runs, logs) -> list[str]:
    try:
        codes = [run.wait(timeout=240) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    assert codes == [0] * len(runs), "\n\n".join(o[-3000:] for o in outputs)
    return outputs


@pytest.mark.slow
def test_two_processes_with_fsdp_across_them_stop_resume_and_train_as_one(tmp_path, mnist_data_dir):
    """2 processes × 4 devices, FSDP over all 8 (parameters sharded across the processes, gloo
    collectives between them), stopped after step 2 and relaunched, against 1 process × 8
    devices run straight through: the same losses at every step, metrics from process 0 only,
    each checkpoint written by both."""
    single, multi = str(tmp_path / "one_process"), str(tmp_path / "two_processes")
    logs = [open(tmp_path / f"{name}.log", "w+") for name in ("single", "first_0", "first_1")]
    coordinator = f"localhost:{free_port()}"
    runs = [launch(single, mnist_data_dir, 8, logs[0])]
    runs += [launch_stopping(multi, mnist_data_dir, logs[1 + i], coordinator, i, 2) for i in (0, 1)]
    wait_all(runs[1:], logs[1:])
    first = read_jsonl(os.path.join(multi, "metrics.jsonl"))
    assert [r["step"] for r in first] == [1, 2]
    assert sorted(os.listdir(os.path.join(multi, "checkpoints"))) == ["2"]

    coordinator = f"localhost:{free_port()}"
    logs += [open(tmp_path / f"again_{i}.log", "w+") for i in (0, 1)]
    again = [
        launch(
            multi,
            mnist_data_dir,
            4,
            logs[3 + i],
            f"--coordinator={coordinator}",
            "--num_processes=2",
            f"--process_id={i}",
            **TWO,
        )
        for i in (0, 1)
    ]
    outputs = wait_all([runs[0], *again], [logs[0], *logs[3:]])

    from jepa import checkpointing

    stored = checkpointing.Checkpointer(multi, async_save=False).read_config()
    assert stored["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    expected = read_jsonl(os.path.join(single, "metrics.jsonl"))
    got = read_jsonl(os.path.join(multi, "metrics.jsonl"))  # process 0's only: one row a step
    assert [r["step"] for r in got] == [r["step"] for r in expected] == [1, 2, 3, 4]
    for row, want in zip(got, expected, strict=True):
        for key in ("loss", "energy", "grad_norm", "target_std"):
            np.testing.assert_allclose(row[key], want[key], rtol=1e-5, err_msg=key)
    assert len(os.listdir(os.path.join(multi, "tensorboard"))) >= 1
    assert "pretrain" in outputs[1] and "pretrain" not in outputs[2]  # the progress bar

    # Each checkpoint written by both: the train state, and each process's data position.
    for step in (2, 4):
        step_dir = os.path.join(multi, "checkpoints", str(step))
        positions = []
        for i in range(2):
            with open(os.path.join(step_dir, "data", f"process_{i}-of-2.json")) as f:
                positions.append(json.load(f))
        assert [p["next_index"] for p in positions] == [step * 8, step * 8]  # local batches of 8
        assert os.path.exists(os.path.join(step_dir, "state", "commit_success.txt"))
