"""Small configs and batches shared by the tests."""

import ml_collections
import numpy as np

from jepa import config as config_lib
from jepa import masking, methods
from jepa.methods import ijepa

# A multiview run small enough for the tests: 2 global and 2 local views, SIGReg, a tiny projector.
TINY_MULTIVIEW = {
    "objective": "multiview",
    "method.num_views": 2,
    "method.local_views": 2,
    "method.local_size": 14,
    "method.loss.energy": "l2",
    "method.loss.sigreg": 0.05,
    "method.loss.sigreg_slices": 16,
    "method.projector.hidden": 16,
    "method.projector.out": 8,
}


def with_overrides(c, overrides: dict):
    """Set dotted keys (``"model.width"``) to already-typed values; returns ``c``."""
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def tiny_parts(c):
    """The method's predictor and masks, where it has them, sized for the tiny encoders."""
    if "predictor" in c.method:
        c.method.predictor.width = 32
        c.method.predictor.depth = 1
        c.method.predictor.num_heads = 2
    if "mask" in c.method:
        c.method.mask.context_tokens = 6
        c.method.mask.target_tokens = 3
        c.method.mask.min_keep = 2
    return c


def tiny_config(objective="masked", **overrides):
    """A 32×32 RGB ViT (8×8 patches, 4×4 grid) small enough to compile in seconds."""
    c = config_lib.base_config()
    c.method_file = overrides.pop("method_file", "")  # before the method is looked up
    methods.with_method(c, objective)
    c.model.image_size = 32
    c.model.patch_size = 8
    c.model.width = 64
    c.model.depth = 2
    c.model.num_heads = 4
    tiny_parts(c)
    c.batch_size = 8
    c.total_steps = 10
    c.optim.warmup_steps = 2
    return with_overrides(c, overrides)


def tiny_world_model_config(**overrides):
    """The Two Rooms world model at 17 px: an 8-number embedding, 3-action trajectories, a
    planner of 8 candidates over 6 steps (validation needs a horizon of at least
    ``replan_every``), 2 episodes."""
    c = config_lib.base_config()
    methods.with_method(c, "world_model")
    c.data.dataset = ""
    c.model.image_size = 17
    c.model.channels = 2
    c.method.env.window = 3
    c.method.world_model.update(
        embed_dim=8, encoder_features=(8, 8), predictor_hidden=16, idm_hidden=16
    )
    c.method.planning.update(horizon=6, iterations=2, samples=8, elites=4, episodes=2)
    c.batch_size = 8
    c.total_steps = 10
    c.optim.warmup_steps = 2
    c.health_every = 0
    return with_overrides(c, overrides)


def synthetic_batch(config, step: int, seed: int = 0) -> dict:
    """Images and masks for one step, deterministic in (seed, step)."""
    rng = np.random.default_rng([seed, step, 7])
    m = config.model
    images = rng.standard_normal((config.batch_size, m.image_size, m.image_size, m.channels))
    masks = masking.masks_for_step(seed, step, config.batch_size, ijepa.mask_spec(config))
    return {"image": images.astype(np.float32), "context": masks.context, "targets": masks.targets}


def tiny_smm_overrides(data_dir: str) -> dict:
    """A 32-wide one-block ViT on 16-px patches of the tiny stochastic Moving-MNIST config,
    3 steps of 8 clips, logging, health and a checkpoint at every step that matters."""
    return {
        "model.image_size": 64,
        "model.patch_size": 16,
        "model.channels": 1,
        "model.width": 32,
        "model.depth": 1,
        "model.num_heads": 2,
        "method.predictor.width": 32,
        "method.predictor.depth": 1,
        "method.predictor.num_heads": 2,
        "data.dataset": "stochastic_moving_mnist/tiny",
        "data.data_dir": data_dir,
        "data.test_split": "test",
        "batch_size": 8,
        "total_steps": 3,
        "log_every": 1,
        "health_every": 3,
        "checkpoint_every": 3,
    }


def tiny_mnist_config(data_dir: str, objective="masked", **overrides):
    """mnist5k at 28 px with 7-px patches (4×4 grid) and a one-block ViT: seconds per step."""
    c = config_lib.base_config()
    c.method_file = overrides.pop("method_file", "")  # before the method is looked up
    methods.with_method(c, objective)
    c.model.image_size = 28
    c.model.channels = 1
    c.model.patch_size = 7
    c.model.width = 32
    c.model.depth = 1
    c.model.num_heads = 2
    tiny_parts(c)
    if "predictor" in c.method:
        c.method.predictor.width = 16
    if "mask" in c.method:
        c.method.mask.num_targets = 2
    c.batch_size = 16
    c.total_steps = 4
    c.optim.warmup_steps = 1
    c.data.dataset = "mnist5k"
    c.data.data_dir = data_dir
    c.data.test_split = "test"
    c.log_every = 1
    c.health_every = 2
    c.checkpoint_every = 2
    c.eval.probe_epochs = 3
    c.eval.lrs = (1e-2,)
    c.eval.wds = (0.0, 1e-3)
    return with_overrides(c, overrides)


def mnist_pipeline_config(**overrides) -> ml_collections.ConfigDict:
    """What ``pipeline.make_train_iterator`` reads, for mnist5k at 28 px (``data_dir`` None:
    TFDS's default directory)."""
    cfg = dict(
        dataset="mnist5k",
        data_dir=None,
        train_split="train",
        image_size=28,
        crop_scale=(0.3, 1.0),
        hflip=False,
        mean=None,
        std=None,
        worker_count=0,
        read_threads=4,
    )
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


def train_on_mesh(config, mesh_shape, make_batch, steps: int = 3, keep_params: bool = False):
    """``steps`` jitted train steps of ``config`` on a ``mesh_shape`` mesh over the first
    devices, batch ``s`` from ``make_batch(config, s)``. Returns (per-step metrics as floats,
    final state, the jitted step, params snapshots — initial, then after each step — when
    ``keep_params``)."""
    import jax

    from jepa import optim, sharding
    from jepa import state as state_lib
    from jepa import step as step_lib

    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
    mesh = sharding.make_mesh(config, jax.devices()[: int(np.prod(mesh_shape))])
    tx = optim.make_optimizer(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
    history, params = [], [jax.device_get(state.params)] if keep_params else []
    for s in range(steps):
        batch = sharding.global_batch(make_batch(config, s), mesh)
        with jax.set_mesh(mesh):
            state, metrics = train_step(state, batch)
        history.append({k: float(v) for k, v in metrics.items()})
        if keep_params:
            params.append(jax.device_get(state.params))
    return history, state, train_step, params
