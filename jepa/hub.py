"""Reuse a pretrained encoder in your own code.

  enc = jepa.load_encoder("/path/to/workdir")           # latest step, EMA target weights
  tokens, pooled = enc(images_uint8_nhwc)                 # [b, patches, width], [b, width]

Only the encoder's parameters are read (no optimizer state), onto whatever devices this process
has. Loading is strict: a checkpoint whose parameters differ from the config's model raises
with the differing paths and shapes, never a silent partial load.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jepa import checkpointing
from jepa import config as config_lib
from jepa.data import augment
from jepa.models import build_encoder
from jepa.state import init_boxed_params

WEIGHTS = {"target": ("target_params",), "context": ("params", "encoder")}


def _nest(keys, value):
    for k in reversed(keys):
        value = {k: value}
    return value


def abstract_encoder_params(config):
    boxed = jax.eval_shape(functools.partial(init_boxed_params, config), jax.random.PRNGKey(0))
    return nn.unbox(boxed["encoder"])


def restore_encoder_params(ckpt: checkpointing.Checkpointer, config, step: int, weights: str):
    """Read one encoder's params from a train-state checkpoint, replicated on local devices."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}; valid: {sorted(WEIGHTS)}")
    keys = WEIGHTS[weights]
    expected = abstract_encoder_params(config)
    saved = ckpt.manager.item_metadata(step)["state"]
    for k in keys:
        saved = saved[k]
    checkpointing.check_tree_matches(saved, expected, f"checkpoint step {step} ({weights})")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), expected
    )
    # A partial read of the 'state' item: only this encoder's arrays leave the disk.
    item = _nest(keys, target)
    with ocp.PyTreeCheckpointer() as reader:
        restored = reader.restore(
            ckpt.directory / str(step) / "state",
            args=ocp.args.PyTreeRestore(
                item=item,
                restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                partial_restore=True,
            ),
        )
    for k in keys:
        restored = restored[k]
    return restored


class PretrainedEncoder:
    """A frozen encoder: ``__call__(images) -> (tokens, pooled)``.

    images: [batch, H, W, C], uint8 in [0, 255] or float in [0, 1]; normalized here exactly as
    in training. tokens: [batch, patches, width] (final-norm output); pooled: [batch, width].
    """

    def __init__(self, config, params, step: int | None = None):
        self.config = config
        self.params = params
        self.step = step
        self.module = build_encoder(config)
        mean, std = augment.resolve_mean_std(
            tuple(config.data.mean) or None, tuple(config.data.std) or None, config.model.channels
        )
        self._mean, self._std = mean, std
        self._apply = jax.jit(self._forward)

    def _forward(self, params, images):
        x = augment.normalize_images(images, self._mean, self._std)
        tokens, aux = self.module.apply({"params": params}, x)
        return tokens, tokens.mean(axis=1), aux

    def __call__(self, images):
        tokens, pooled, _ = self._apply(self.params, jnp.asarray(images))
        return tokens, pooled

    def features(self, images):
        """(tokens, pooled, per-block outputs) for evaluators that pick intermediate layers."""
        return self._apply(self.params, jnp.asarray(images))


def load_encoder(path_or_workdir: str, step: int | None = None, weights: str = "target"):
    """Load the encoder of a run directory (or its ``checkpoints/`` folder) at ``step``."""
    workdir = str(path_or_workdir).rstrip("/")
    if workdir.endswith("/checkpoints"):
        workdir = workdir[: -len("/checkpoints")]
    ckpt = checkpointing.Checkpointer(workdir, async_save=False)
    steps = ckpt.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoints under {workdir}/checkpoints")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(f"step {step} not in {workdir}/checkpoints (have {steps})")
    config = config_lib.from_stored(ckpt.read_config(step))
    params = restore_encoder_params(ckpt, config, step, weights)
    return PretrainedEncoder(config, params, step)
