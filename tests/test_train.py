"""End-to-end pretraining: generic TFDS path, exact resume across a process restart,
checkpoints restored on other meshes. Faults (signals, kill -9, corrupt checkpoints, non-finite
steps) are in test_faults.py."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import TINY_MULTIVIEW, tiny_config, tiny_mnist_config

from jepa import checkpointing, optim, sharding, train
from jepa import state as state_lib
from jepa.evaluate import health
from jepa.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def restore_final(workdir, config):
    config = train.prepare_config(config)
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    tx = optim.make_optimizer(config)
    abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
    ckpt = checkpointing.Checkpointer(workdir, async_save=False)
    step = ckpt.latest_step()
    state = ckpt.restore_state(step, checkpointing.with_shardings(abstract, shardings))
    return step, jax.device_get(state)


def test_trains_from_any_tfds_dataset_by_name(tmp_path):
    from test_data import TinyRgb

    data_dir = str(tmp_path / "tfds")
    TinyRgb(data_dir=data_dir).download_and_prepare(file_format="array_record")
    config = tiny_config(total_steps=2)
    config.model.image_size = 16
    config.model.patch_size = 4
    config.data.dataset = "tiny_rgb"
    config.data.data_dir = data_dir
    config.log_every = 1
    state = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert int(state.step) == 2
    rows = read_metrics(str(tmp_path / "run"))
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)


@pytest.mark.slow
def test_resume_after_restart_is_exact(tmp_path, mnist_data_dir):
    """2k steps straight == k steps, a new process, k more steps on the same workdir."""
    k = 2
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    train.train_and_evaluate(tiny_mnist_config(mnist_data_dir, total_steps=2 * k), straight)
    train.train_and_evaluate(
        tiny_mnist_config(mnist_data_dir, total_steps=2 * k), split, max_steps=k
    )
    assert checkpointing.Checkpointer(split, async_save=False).latest_step() == k
    script = (
        "import sys; sys.path.insert(0, 'tests'); from helpers import tiny_mnist_config; "
        f"from jepa import train; train.train_and_evaluate(tiny_mnist_config({mnist_data_dir!r}, "
        f"total_steps={2 * k}), {split!r})"
    )
    env = dict(os.environ)  # the same XLA flags (device count, optimization level) as here
    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True
    )

    step_a, a = restore_final(straight, tiny_mnist_config(mnist_data_dir, total_steps=2 * k))
    step_b, b = restore_final(split, tiny_mnist_config(mnist_data_dir, total_steps=2 * k))
    assert step_a == step_b == 2 * k
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    jax.tree.map(np.testing.assert_array_equal, a.target_params, b.target_params)
    jax.tree.map(np.testing.assert_array_equal, a.opt_state, b.opt_state)
    seen_a = [r["data_checksum"] for r in read_metrics(straight)]
    seen_b = [r["data_checksum"] for r in read_metrics(split)]
    assert len(seen_a) == 2 * k and seen_a == seen_b  # the very same batches, in order


@pytest.mark.parametrize("target_mesh", [(1, 1, 1), (2, 4, 1)])
def test_checkpoint_from_8_devices_restores_on_other_meshes(tmp_path, target_mesh):
    config = tiny_config()
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 8, 1, 1
    mesh8 = sharding.make_mesh(config)
    tx = optim.make_optimizer(config)
    state, _ = state_lib.create_train_state(config, tx, mesh8)
    ckpt = checkpointing.Checkpointer(str(tmp_path), async_save=True)
    ckpt.save(1, state, None, config, force=True)
    ckpt.wait()

    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = target_mesh
    n = int(np.prod(target_mesh))
    mesh = sharding.make_mesh(config, jax.devices()[:n])
    abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
    restored = ckpt.restore_state(1, checkpointing.with_shardings(abstract, shardings))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), jax.device_get(restored))
    kernel = restored.params["encoder"]["block_0"]["mlp"]["fc1"]["kernel"]
    assert kernel.sharding == shardings.params["encoder"]["block_0"]["mlp"]["fc1"]["kernel"]
    assert len(kernel.sharding.device_set) == n


def test_restore_into_another_model_lists_the_differing_paths(tmp_path):
    config = tiny_config()
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    tx = optim.make_optimizer(config)
    state, _ = state_lib.create_train_state(config, tx, mesh)
    ckpt = checkpointing.Checkpointer(str(tmp_path), async_save=False)
    ckpt.save(1, state, None, config, force=True)
    other = tiny_config()
    other.model.width = 32
    other.model.depth = 3
    abstract, shardings = state_lib.state_shardings(
        other, optim.make_optimizer(other), mesh, jax.random.PRNGKey(0)
    )
    with pytest.raises(checkpointing.CheckpointMismatchError) as err:
        ckpt.restore_state(1, checkpointing.with_shardings(abstract, shardings))
    message = str(err.value)
    assert "block_2" in message and "missing in checkpoint" in message
    assert "shape (64,) in checkpoint" in message or "(64," in message


def test_config_is_saved_as_json(tmp_path, mnist_data_dir):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(tiny_mnist_config(mnist_data_dir, total_steps=2), workdir)
    stored = checkpointing.Checkpointer(workdir, async_save=False).read_config()
    assert stored["model"]["width"] == 32 and stored["data"]["dataset"] == "mnist5k"
    assert os.path.exists(os.path.join(workdir, "loss.png"))
    json.dumps(stored)


def test_relative_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_config()
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    tx = optim.make_optimizer(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    ckpt = checkpointing.Checkpointer("runs/relative", async_save=True)
    ckpt.save(1, state, None, config, force=True)
    ckpt.close()
    assert (tmp_path / "runs" / "relative" / "checkpoints" / "1").is_dir()


def test_multiview_objective_trains_and_probes_end_to_end(tmp_path, mnist_data_dir):
    """mnist5k through the grain path with 2 global and 2 local views, 2 steps, then the
    probe reads the online encoder (the multiview objective's own) from the checkpoint."""
    from jepa.evaluate import main as eval_main

    config = tiny_mnist_config(
        mnist_data_dir,
        total_steps=2,
        **TINY_MULTIVIEW,
    )
    workdir = str(tmp_path / "mv")
    state = train.train_and_evaluate(config, workdir)
    assert set(state.params) == {"encoder", "projector"}
    rows = read_metrics(workdir)
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) and r["sigreg"] > 0 for r in rows)
    (result,) = eval_main.main(["--workdir", workdir])
    # Ten balanced classes: chance is 10 %; two steps from a random init already separate
    # digits far better (a probe fed shuffled labels or the wrong split reads ~10 %).
    assert result["weights"] == "context" and result["top1"] > 40.0
    (knn,) = eval_main.main(["--workdir", workdir, "--protocol", "knn", "--config.eval.knn_k=5"])
    assert (knn["protocol"], knn["k"]) == ("knn", 5) and knn["top1"] > 40.0
    # The kNN vote recomputed from the cached features: cosine similarity, the 5 nearest
    # training images, each voting for its label with weight exp(similarity / 0.07).
    cached = sorted(os.listdir(os.path.join(workdir, "eval", "features")))
    assert len(cached) == 2  # one file per split, shared by both protocols
    split = {
        name.split("_")[1]: np.load(os.path.join(workdir, "eval", "features", name))
        for name in cached
    }
    train_x, train_y = split["train"]["features"], split["train"]["labels"]
    test_x, test_y = split["test"]["features"], split["test"]["labels"]
    bank = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    correct = 0
    for x, y in zip(test_x, test_y, strict=True):
        sims = bank @ (x / np.linalg.norm(x))
        votes = {}
        for i in np.argsort(-sims)[:5]:
            votes[train_y[i]] = votes.get(train_y[i], 0.0) + np.exp(sims[i] / 0.07)
        correct += max(votes, key=votes.get) == y
    assert knn["top1"] == pytest.approx(100 * correct / len(test_y), abs=0.006)


def _health_rows(workdir):
    return [r for r in read_metrics(workdir) if "rankme" in r]


def test_collapse_alarms_at_the_default_floors_end_to_end(tmp_path, mnist_data_dir, caplog):
    """At the default ``health`` floors. No EMA (targets from the online encoder, gradients on
    both sides) and a trivial predictor (depth 0: position only) let the encoder map every
    image to the same tokens: the std alarm must fire at the first health reading below its
    floor and never before. The control has VICReg's variance and covariance terms, which hold
    every dimension's spread up and decorrelate them by construction: silent throughout."""
    import logging

    from jepa import config as config_lib

    floors = config_lib.base_config().health
    assert (floors.min_std, floors.min_rank) == (1e-2, 1.5)
    common = {
        "total_steps": 40,
        "optim.lr": 3e-3,
        "optim.start_lr": 3e-3,
        "optim.final_lr": 3e-3,
        "optim.warmup_steps": 0,
        "eval.weights": "context",  # watch the encoder being trained
        "health_every": 2,
        "log_every": 2,
        "checkpoint_every": 1000,
    }
    collapsing = tiny_mnist_config(
        mnist_data_dir,
        **common,
        **{"method.loss.target_encoder": "online", "method.predictor.depth": 0},
    )
    with caplog.at_level(logging.WARNING):
        train.train_and_evaluate(collapsing, str(tmp_path / "collapse"))
    rows = _health_rows(str(tmp_path / "collapse"))
    assert len(rows) == 20 and rows[0]["feature_std"] > 5 * floors.min_std  # healthy at first
    assert rows[-1]["feature_std"] < 0.7 * floors.min_std  # it did collapse, past the floor
    below = [
        r["feature_std"] < floors.min_std or r["rankme_centered"] < floors.min_rank for r in rows
    ]
    assert [r["collapse_alarms"] > 0 for r in rows] == below
    first = rows[below.index(True)]["step"]
    assert f"step {first}: collapse alarm: feature std" in caplog.text
    assert f"step {first - 2}: collapse alarm" not in caplog.text

    healthy = tiny_mnist_config(
        mnist_data_dir, **common, **{"method.loss.vicreg_var": 1.0, "method.loss.vicreg_cov": 0.04}
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train.train_and_evaluate(healthy, str(tmp_path / "healthy"))
    rows = _health_rows(str(tmp_path / "healthy"))
    assert len(rows) == 20 and all(r["collapse_alarms"] == 0 for r in rows)
    assert "collapse alarm" not in caplog.text.lower()
    assert min(r["feature_std"] for r in rows) > 5 * floors.min_std
    assert min(r["rankme_centered"] for r in rows) > 2 * floors.min_rank


def test_rank_alarm_fires_on_a_one_direction_encoder_and_not_on_its_healthy_original():
    """The training loop's health reading (mean-pooled tokens of the watched encoder) at the
    default floors. A freshly initialized ViT varies its features in many directions: no alarm.
    The same encoder with its final LayerNorm's scale and offset zeroed in every dimension but
    one (×100) varies in that one direction only (dimensional collapse): the rank alarm fires
    alone, the per-dimension std staying above its floor."""
    from jepa import config as config_lib

    config = tiny_mnist_config("")
    floors = config_lib.base_config().health
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    params = state_lib.init_train_state(config, optim.make_optimizer(config), jax.random.key(0))
    params = params.params["encoder"]
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, (64, 28, 28, 1)).astype(np.float32)
    health_fn = train.make_health_fn(config, mesh)
    with jax.set_mesh(mesh):
        h = jax.device_get(health_fn(params, images))
    assert h["rankme_centered"] > 5 * floors.min_rank and h["feature_std"] > 1.5 * floors.min_std
    assert health.collapse_alarms(h, floors.min_std, floors.min_rank) == []

    one_axis = np.zeros(config.model.width, np.float32)
    one_axis[0] = 100.0
    norm = params["norm"]
    collapsed = {**params, "norm": {"scale": one_axis, "bias": np.zeros_like(one_axis)}}
    assert set(norm) == {"scale", "bias"}
    with jax.set_mesh(mesh):
        h = jax.device_get(health_fn(collapsed, images))
    alarms = health.collapse_alarms(h, floors.min_std, floors.min_rank)
    assert h["feature_std"] > 2 * floors.min_std
    assert len(alarms) == 1 and alarms[0].startswith("effective rank (centred) 1.00 < 1.5")


def test_init_takes_the_named_parts_of_another_run_or_export(tmp_path, mnist_data_dir):
    """The one load order's middle step: no checkpoint of its own, so a run starts from a fresh
    init into which ``init.take``'s parts of ``init.path`` (a run, or an encoder export) are
    copied exactly; the parts not named stay freshly initialized."""
    from jepa import hub

    source = str(tmp_path / "source")
    train.train_and_evaluate(tiny_mnist_config(mnist_data_dir, total_steps=2), source)
    _, _, trained, trained_target = hub.load_model_params(source)
    hub.export_encoder(source, str(tmp_path / "export"))  # the target encoder, as probes read

    def start(path, take):
        config = tiny_mnist_config(mnist_data_dir, **{"init.path": path, "init.take": take})
        mesh = sharding.make_mesh(config)
        tx = optim.make_optimizer(config)
        abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
        ckpt = checkpointing.Checkpointer(str(tmp_path / "new"), async_save=False)
        state, step = hub.initial_state(config, ckpt, None, tx, mesh, abstract, shardings)
        ckpt.close()
        return step, jax.device_get(state)

    step, state = start(source, ("params/encoder", "target_params"))
    assert step == 0
    jax.tree.map(np.testing.assert_array_equal, state.params["encoder"], trained["encoder"])
    jax.tree.map(np.testing.assert_array_equal, state.target_params, trained_target)
    _, fresh = start("", ("params",))  # no init.path: a fresh init, the same seed
    jax.tree.map(
        np.testing.assert_array_equal, state.params["predictor"], fresh.params["predictor"]
    )
    pairs = zip(
        jax.tree.leaves(trained["predictor"]),
        jax.tree.leaves(fresh.params["predictor"]),
        strict=True,
    )
    assert any(not np.array_equal(a, b) for a, b in pairs)  # the predictor was not taken

    _, from_export = start(str(tmp_path / "export"), ("params/encoder",))
    jax.tree.map(np.testing.assert_array_equal, from_export.params["encoder"], trained_target)
    with pytest.raises(ValueError, match="is an encoder export; valid init.take entries"):
        start(str(tmp_path / "export"), ("params",))
