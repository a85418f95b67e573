"""Preemption and faults: SIGTERM/SIGINT save at the step reached and exit 0; ``kill -9`` then a
relaunch ends exactly where an uninterrupted run ends; a corrupt or partial latest checkpoint is
set aside and the previous one restored; a non-finite step stops the run (or is skipped)."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_mnist_config
from test_train import restore_final

from jepa import checkpointing, optim, sharding, train
from jepa import state as state_lib
from jepa.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20  # every run here has this schedule length, so all compare with one reference run


def config_for(data_dir, **overrides):
    return tiny_mnist_config(data_dir, total_steps=STEPS, **overrides)


@pytest.fixture(scope="module")
def reference(mnist_data_dir, tmp_path_factory):
    """An uninterrupted run of STEPS steps: (final state on the host, metrics row per step)."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    state = train.train_and_evaluate(config_for(mnist_data_dir, checkpoint_every=100), workdir)
    rows = {r["step"]: r for r in read_metrics(workdir)}
    assert sorted(rows) == list(range(1, STEPS + 1))
    return jax.device_get(state), rows


def assert_same_state(a, b):
    for field in ("step", "params", "target_params", "opt_state", "nonfinite_skipped"):
        jax.tree.map(np.testing.assert_array_equal, getattr(a, field), getattr(b, field))


def assert_rows_match(workdir, reference_rows, steps):
    """The last row logged for each of ``steps`` equals the reference run's: the same batch
    (data checksum) and the same loss, bit for bit."""
    rows = {r["step"]: r for r in read_metrics(workdir)}  # a relaunch's row wins
    for s in steps:
        assert (rows[s]["data_checksum"], rows[s]["loss"]) == (
            reference_rows[s]["data_checksum"],
            reference_rows[s]["loss"],
        ), f"step {s}"


# ------------------------------------------------------------------------------ subprocesses
def launch(workdir, data_dir, every):
    """``jepa-train`` on tests/tiny_experiment.py as its own process; (process, log path). Its
    output goes to a file: an unread pipe would block it."""
    config = f"tests/tiny_experiment.py:data_dir={data_dir},steps={STEPS},every={every}"
    log = workdir + ".log"
    cmd = [sys.executable, "-m", "jepa.main", "--config", config, "--workdir", workdir]
    with open(log, "a") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=out, stderr=out), log


def output(log) -> str:
    with open(log) as f:
        return f.read()


def tail(log) -> str:
    return output(log)[-4000:]


def last_logged_step(workdir) -> int:
    """The step of the last complete line of metrics.jsonl (0 before the first)."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            lines = f.read().split("\n")[:-1]  # a line still being written has no "\n" yet
    except FileNotFoundError:
        return 0
    return json.loads(lines[-1])["step"] if lines else 0


def wait_until(proc, log, condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"timed out:\n{tail(log)}"
        time.sleep(0.01)


def wait_for_step(proc, log, workdir, step):
    wait_until(proc, log, lambda: last_logged_step(workdir) >= step)


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_exits_0_and_the_relaunch_resumes_there(
    tmp_path, mnist_data_dir, reference
):
    workdir = str(tmp_path / "run")
    # The interval (100) is past the end: the only checkpoint before the end is the signal's.
    proc, log = launch(workdir, mnist_data_dir, every=100)
    wait_for_step(proc, log, workdir, 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, tail(log)
    reached = last_logged_step(workdir)
    assert 3 <= reached < STEPS  # stopped early, at a step of its own choosing
    assert f"preempted at step {reached}; checkpoint saved" in output(log)
    assert checkpointing.Checkpointer(workdir, async_save=False).all_steps() == [reached]

    proc, log = launch(workdir, mnist_data_dir, every=100)
    assert proc.wait(timeout=120) == 0, tail(log)
    assert f"resumed from step {reached}" in output(log)
    # Every step logged exactly once: the relaunch started right after the saved step.
    assert [r["step"] for r in read_metrics(workdir)] == list(range(1, STEPS + 1))
    assert_rows_match(workdir, reference[1], range(1, STEPS + 1))
    step, final = restore_final(workdir, config_for(mnist_data_dir))
    assert step == STEPS
    assert_same_state(final, reference[0])


@pytest.mark.slow
def test_kill_9_at_a_random_moment_then_relaunch_equals_an_uninterrupted_run(
    tmp_path, mnist_data_dir, reference
):
    rng = random.Random(7)
    workdir = str(tmp_path / "run")
    proc, log = launch(workdir, mnist_data_dir, every=2)  # async saves all along the run
    # A random moment after the first checkpoint (step 2) is complete, well before the end.
    wait_until(proc, log, lambda: os.path.isdir(os.path.join(workdir, "checkpoints", "2")))
    wait_for_step(proc, log, workdir, rng.randint(3, STEPS - 8))
    time.sleep(rng.uniform(0.0, 0.3))
    assert proc.poll() is None, "finished before it could be killed"
    proc.kill()
    assert proc.wait(timeout=120) == -signal.SIGKILL
    killed_at = last_logged_step(workdir)
    saved = checkpointing.Checkpointer(workdir, async_save=False).all_steps()
    assert saved and max(saved) <= killed_at
    # A kill during an async save leaves that step in Orbax's tmp directory, never listed.
    partial = [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if not n.isdigit()]

    proc, log = launch(workdir, mnist_data_dir, every=2)
    assert proc.wait(timeout=120) == 0, tail(log)
    assert f"resumed from step {max(saved)}" in output(log)
    for name in partial:
        assert f"({name}, a save that was interrupted)" in output(log)
    assert all(n.isdigit() for n in os.listdir(os.path.join(workdir, "checkpoints")))
    assert_rows_match(workdir, reference[1], range(max(saved) + 1, STEPS + 1))
    step, final = restore_final(workdir, config_for(mnist_data_dir))
    assert step == STEPS
    assert_same_state(final, reference[0])


# --------------------------------------------------------------------------------- in-process
def test_sigint_in_process_saves_at_that_step_and_restores_the_handlers(
    tmp_path, mnist_data_dir, monkeypatch, reference
):
    """Ctrl-C while step 3's batch is read: step 3 completes, is saved (the interval is 100),
    the run returns normally and the caller's handlers are back."""
    real_get = train.Batches.get

    def get(self, step):
        if step == 2:  # the batch of step 3
            os.kill(os.getpid(), signal.SIGINT)
        return real_get(self, step)

    monkeypatch.setattr(train.Batches, "get", get)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    workdir = str(tmp_path / "run")
    state = train.train_and_evaluate(config_for(mnist_data_dir, checkpoint_every=100), workdir)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert int(state.step) == 3
    assert checkpointing.Checkpointer(workdir, async_save=False).all_steps() == [3]
    assert [r["step"] for r in read_metrics(workdir)] == [1, 2, 3]
    assert_rows_match(workdir, reference[1], [1, 2, 3])


def poison_batch(monkeypatch, bad_step):
    """One NaN pixel in one image of step ``bad_step``'s batch (1-based, as logged)."""
    real_get = train.Batches.get

    def get(self, step):
        batch, checksum = real_get(self, step)
        if step + 1 == bad_step:
            batch = dict(batch, image=batch["image"].at[0, 0, 0, 0].set(np.nan))
        return batch, checksum

    monkeypatch.setattr(train.Batches, "get", get)


def test_nonfinite_step_stops_naming_it_and_keeps_the_last_good_checkpoint(
    tmp_path, mnist_data_dir, monkeypatch
):
    """Step 3 is neither logged nor saved (log_every=100, checkpoint_every=2), yet the error
    names it: every step's flag is read. Nothing after step 2 is saved or logged."""
    poison_batch(monkeypatch, 3)
    workdir = str(tmp_path / "run")
    config = config_for(mnist_data_dir, log_every=100, checkpoint_every=2)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(train.NonFiniteLossError, match=r"\(nan\) at step 3;.*\(step 2\)"):
        train.train_and_evaluate(config, workdir)
    assert signal.getsignal(signal.SIGTERM) == before
    assert checkpointing.Checkpointer(workdir, async_save=False).all_steps() == [2]
    assert read_metrics(workdir) == []
    step, state = restore_final(workdir, config)
    assert step == 2 and int(state.step) == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


def test_skip_nonfinite_leaves_the_state_unchanged_counts_it_and_trains_on(
    tmp_path, mnist_data_dir, monkeypatch
):
    poison_batch(monkeypatch, 3)
    workdir = str(tmp_path / "run")
    config = config_for(
        mnist_data_dir, skip_nonfinite=True, checkpoint_every=1, keep_checkpoints=10
    )
    train.train_and_evaluate(config, workdir, max_steps=5)
    rows = read_metrics(workdir)
    assert [r["nonfinite"] for r in rows] == [0, 0, 1, 0, 0]
    assert [r["nonfinite_skipped"] for r in rows] == [0, 0, 1, 1, 1]
    assert np.isnan(rows[2]["loss"]) and np.isfinite([rows[3]["loss"], rows[4]["loss"]]).all()

    ckpt = checkpointing.Checkpointer(workdir, async_save=False)
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    abstract, shardings = state_lib.state_shardings(
        config, optim.make_optimizer(config), mesh, jax.random.PRNGKey(0)
    )
    target = checkpointing.with_shardings(abstract, shardings)
    s2, s3, s4 = (jax.device_get(ckpt.restore_state(s, target)) for s in (2, 3, 4))
    assert (int(s2.step), int(s3.step)) == (2, 3)  # the step counter advances
    assert (int(s2.nonfinite_skipped), int(s3.nonfinite_skipped)) == (0, 1)
    for field in ("params", "target_params", "opt_state"):
        jax.tree.map(np.testing.assert_array_equal, getattr(s3, field), getattr(s2, field))
    moved = jax.tree.map(lambda a, b: bool((a != b).any()), s4.params, s3.params)
    assert all(jax.tree.leaves(moved))  # step 4 trained every parameter
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(s4))

    # The count is part of the state: a resumed run carries it on.
    state = train.train_and_evaluate(config, workdir, max_steps=6)
    assert int(state.nonfinite_skipped) == 1 and read_metrics(workdir)[-1]["nonfinite_skipped"] == 1


# ------------------------------------------------------------------------------- checkpoints
def truncate_array_data(step_dir):
    """Cut the largest array data file of the ``state`` item to a third (the tree metadata
    stays readable: only reading the arrays can notice)."""
    data = [
        os.path.join(root, f)
        for root, _, files in os.walk(os.path.join(step_dir, "state"))
        if os.path.basename(root) == "d"
        for f in files
    ]
    largest = max(data, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 3)


def files_under(top):
    return sorted(os.path.relpath(os.path.join(r, f), top) for r, _, fs in os.walk(top) for f in fs)


CORRUPTIONS = {
    "truncated_array_file": truncate_array_data,
    "missing_state_item": lambda d: shutil.rmtree(os.path.join(d, "state")),
    "missing_data_item": lambda d: shutil.rmtree(os.path.join(d, "data")),
}


@pytest.fixture(scope="module")
def six_steps(mnist_data_dir, tmp_path_factory):
    """A run stopped after step 6, keeping the last two checkpoints (4 and 6)."""
    workdir = str(tmp_path_factory.mktemp("six") / "run")
    config = config_for(mnist_data_dir, checkpoint_every=2, keep_checkpoints=2)
    train.train_and_evaluate(config, workdir, max_steps=6)
    assert checkpointing.Checkpointer(workdir, async_save=False).all_steps() == [4, 6]
    return workdir, config


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_latest_checkpoint_is_set_aside_and_the_previous_one_resumed(
    tmp_path, six_steps, reference, corruption, caplog
):
    source, config = six_steps
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    bad = os.path.join(workdir, "checkpoints", "6")
    CORRUPTIONS[corruption](bad)
    files = files_under(bad)

    with caplog.at_level("WARNING"):
        train.train_and_evaluate(config, workdir, max_steps=8)
    assert "checkpoint step 6 in" in caplog.text and "is unreadable (" in caplog.text
    moved = os.path.join(workdir, "checkpoints", "corrupt", "6")
    assert f"checkpoint step 6 moved to {moved}" in caplog.text
    # Moved aside whole, not deleted; step 6 was saved anew; keep=2 dropped step 4 only after
    # step 8 existed.
    assert files_under(moved) == files
    assert checkpointing.Checkpointer(workdir, async_save=False).all_steps() == [6, 8]
    assert_rows_match(workdir, reference[1], [5, 6, 7, 8])  # resumed exactly from step 4


def small_checkpoints(tmp_path, steps):
    config = tiny_config()
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    tx = optim.make_optimizer(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    ckpt = checkpointing.Checkpointer(str(tmp_path), every=1, keep=5, async_save=False)
    for s in steps:
        ckpt.save(s, state.replace(step=state.step + s), None, config, force=True)
    abstract, _ = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
    return ckpt, state, checkpointing.with_shardings(abstract, shardings)


def test_an_interrupted_save_is_ignored_then_replaced(tmp_path, caplog):
    """What ``kill -9`` during an async save leaves: ``3.orbax-checkpoint-tmp``, never listed
    as a step; the next save of step 3 replaces it."""
    ckpt, state, target = small_checkpoints(tmp_path, [1, 2])
    root = tmp_path / "checkpoints"
    shutil.copytree(root / "2", root / "3.orbax-checkpoint-tmp")
    truncate_array_data(root / "3.orbax-checkpoint-tmp")
    with caplog.at_level("WARNING"):
        restored, step = ckpt.restore_latest_good(target)
    assert step == 2 and int(restored.step) == 2
    assert "checkpoint step 3 in" in caplog.text and "never completed" in caplog.text
    ckpt.save(3, state.replace(step=state.step + 3), None, tiny_config(), force=True)
    assert sorted(os.listdir(root)) == ["1", "2", "3"]
    assert int(ckpt.restore_latest_good(target)[0].step) == 3


def test_no_readable_checkpoint_is_an_error_that_moves_nothing(tmp_path):
    ckpt, _, target = small_checkpoints(tmp_path, [1, 2])
    for s in ("1", "2"):
        truncate_array_data(tmp_path / "checkpoints" / s)
    with pytest.raises(checkpointing.CheckpointCorruptError, match=r"step 2: .*\n  step 1: "):
        ckpt.restore_latest_good(target)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_checkpoint_from_before_the_skip_counter_restores_it_as_zero(tmp_path):
    """A TrainState saved before ``nonfinite_skipped`` existed (the same tree without it)."""
    import orbax.checkpoint as ocp

    ckpt, state, target = small_checkpoints(tmp_path, [])
    old = {f: getattr(state, f) for f in ("step", "params", "target_params", "opt_state", "rng")}
    ckpt.manager.save(5, args=ocp.args.Composite(state=ocp.args.StandardSave(old)), force=True)
    ckpt.wait()
    restored, step = ckpt.restore_latest_good(target)
    assert step == 5 and int(restored.nonfinite_skipped) == 0
    assert restored.nonfinite_skipped.sharding == target.nonfinite_skipped.sharding
    assert_same_state(jax.device_get(restored), jax.device_get(state))
