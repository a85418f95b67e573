"""Memory and scale: rematerialization changes no number, gradient accumulation equals one big
batch (on one device and on a sharded mesh, without moving the batch), and FSDP divides the
per-device state."""

import functools
import re

import jax
import numpy as np
import pytest
from helpers import synthetic_batch, tiny_config

from jepa import memory, methods, optim, sharding, validation
from jepa import state as state_lib
from jepa import step as step_lib
from jepa.models.layers import REMAT_POLICIES

BATCH = 48  # no model dimension is 48 or 24, so a gathered batch would show in the HLO
# Unoptimized XLA:CPU code generation halves these tests' compile time; every comparison
# below is between programs compiled the same way.
FAST = {"xla_backend_optimization_level": 0}
_STATE = {}


def initial_state():
    """The tiny model's initial train state, on the host; every run below starts from it."""
    if not _STATE:
        config = tiny_config()
        rng = jax.random.PRNGKey(config.seed)
        init = jax.jit(
            functools.partial(state_lib.init_train_state, config, optim.make_optimizer(config))
        )
        _STATE["state"] = jax.device_get(init.lower(rng).compile(FAST)(rng))
    return _STATE["state"]


# ---------------------------------------------------------------------------------------------
# Rematerialization
# ---------------------------------------------------------------------------------------------

_GRADS = {}


def loss_and_grads(remat: str):
    """(loss, grads) of the masked loss with ``model.remat=remat``, same params and batch."""
    if remat not in _GRADS:
        config = tiny_config(batch_size=BATCH, **{"model.remat": remat})
        state = initial_state()
        fn = jax.value_and_grad(methods.of(config).make_loss_fn(config), has_aux=True)
        args = (state.params, state.target_params, synthetic_batch(config, 0), 1)
        (loss, _), grads = jax.jit(fn).lower(*args).compile(FAST)(*args)
        _GRADS[remat] = (loss, grads)
    return _GRADS[remat]


def test_remat_changes_no_loss_and_no_gradient():
    """``full`` recomputes every block (encoder and predictor) in the backward pass: the loss
    and every gradient are those without remat. (``dots`` runs in the sharded accumulation
    test below.)"""
    loss, grads = loss_and_grads("full")
    ref_loss, ref_grads = loss_and_grads("none")
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    ref = dict(jax.tree_util.tree_leaves_with_path(ref_grads))
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        np.testing.assert_allclose(g, ref[path], rtol=1e-5, atol=1e-9, err_msg=str(path))


@pytest.mark.parametrize("remat", sorted(REMAT_POLICIES))
def test_every_remat_policy_wraps_encoder_and_predictor_blocks(remat):
    """Each named policy traces, and wraps the 2 context-encoder blocks, the 2 target-encoder
    blocks and the predictor block (5 checkpointed calls in the gradient's jaxpr)."""
    config = tiny_config(batch_size=BATCH, **{"model.remat": remat})
    state = initial_state()
    batch = synthetic_batch(config, 0)
    fn = jax.grad(
        lambda p: methods.of(config).make_loss_fn(config)(p, state.target_params, batch, 1)[0]
    )
    jaxpr = str(jax.make_jaxpr(fn)(state.params))
    wrapped = jaxpr.count("remat2[") + jaxpr.count("checkpoint[")
    assert wrapped == (0 if remat == "none" else 5)


def test_unknown_remat_policy_fails_in_validation_with_the_valid_names():
    with pytest.raises(ValueError, match="model.remat='sometimes'; valid:.*'full'.*'dots'"):
        validation.validate(tiny_config(**{"model.remat": "sometimes"}))
    for name in REMAT_POLICIES:
        validation.validate(tiny_config(**{"model.remat": name}))


# ---------------------------------------------------------------------------------------------
# Gradient accumulation
# ---------------------------------------------------------------------------------------------

_RUNS = {}


def accumulated_run(mesh_shape, steps: int, remat: str = "none"):
    """Two train steps at batch 48 from the same initial state with ``steps`` micro-batches:
    (losses, grad norms, final params, compiled step, abstract state, state shardings)."""
    key = (mesh_shape, steps, remat)
    if key not in _RUNS:
        overrides = {"optim.grad_accum_steps": steps, "model.remat": remat}
        config = tiny_config(batch_size=BATCH, **overrides)
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
        validation.validate(config, int(np.prod(mesh_shape)))
        mesh = sharding.make_mesh(config, jax.devices()[: int(np.prod(mesh_shape))])
        tx = optim.make_optimizer(config)
        abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
        state = jax.device_put(initial_state(), shardings)
        batches = [sharding.global_batch(synthetic_batch(config, s), mesh) for s in range(2)]
        losses, norms = [], []
        with jax.set_mesh(mesh):
            train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
            compiled = train_step.lower(state, batches[0]).compile(FAST)
            for batch in batches:
                state, metrics = compiled(state, batch)
                losses.append(float(metrics["loss"]))
                norms.append(float(metrics["grad_norm"]))
        _RUNS[key] = (losses, norms, jax.device_get(state.params), compiled, abstract, shardings)
    return _RUNS[key]


@pytest.mark.parametrize("mesh_shape,steps,remat", [((1, 1, 1), 4, "none"), ((2, 4, 1), 2, "dots")])
def test_accumulated_step_equals_one_big_batch(mesh_shape, steps, remat):
    """I-JEPA's loss is a mean over samples: k micro-batches give the one-big-batch loss,
    gradient norm and updated parameters (after two steps), on one device and on a data × FSDP
    mesh (there also with the ``dots`` remat policy)."""
    losses, norms, params, *_ = accumulated_run(mesh_shape, steps, remat)
    ref_losses, ref_norms, ref_params, *_ = accumulated_run((1, 1, 1), 1)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-5)
    ref = dict(jax.tree_util.tree_leaves_with_path(ref_params))
    for path, p in jax.tree_util.tree_leaves_with_path(params):
        np.testing.assert_allclose(p, ref[path], rtol=1e-5, atol=1e-7, err_msg=str(path))


def test_accumulation_keeps_activation_memory_to_the_micro_batch():
    """Only one micro-batch's activations are alive at a time: XLA's temporary bytes shrink."""
    big = memory.compiled_memory(accumulated_run((1, 1, 1), 1)[3])["temp_bytes"]
    micro = memory.compiled_memory(accumulated_run((1, 1, 1), 4)[3])["temp_bytes"]
    assert micro < 0.6 * big


def test_micro_batches_stay_on_their_devices():
    """On a (2, 4, 1) mesh each device loops over its own rows (6 per device → 2 micro-batches
    of 3), and the only all-gathers are FSDP's parameter gathers: no gathered array has a batch
    dimension (48 or 24). The compiled step's argument bytes are the state's per-device bytes,
    from its shardings, plus one device's rows of the batch (to a few bytes of alignment)."""
    *_, compiled, abstract, shardings = accumulated_run((2, 4, 1), 2, "dots")
    text = compiled.as_text()
    # One loop carries the per-device micro-batches [micro-batches, rows, h, w, c] (XLA may
    # emit other while loops of its own, e.g. for the random masks).
    loops = [line for line in text.splitlines() if " while(" in line]
    assert len([line for line in loops if "f32[2,3,32,32,3]" in line]) == 1, loops
    gathered = re.findall(r"= \w+\[([\d,]*)\]\S* all-gather(?:-start)?\(", text)
    assert gathered  # FSDP gathers the parameters
    assert not {"48", "24"} & {d for shape in gathered for d in shape.split(",")}
    batch = synthetic_batch(tiny_config(batch_size=BATCH), 0)
    batch_bytes = sum(x.nbytes for x in batch.values()) // 8
    parts = memory.state_bytes(abstract, shardings)
    extra = memory.compiled_memory(compiled)["argument_bytes"] - sum(parts.values()) - batch_bytes
    assert 0 <= extra < 64  # a scalar's alignment at most


def test_accumulation_config_is_validated():
    with pytest.raises(ValueError, match="optim.grad_accum_steps=4 does not divide"):
        validation.validate(tiny_config(**{"optim.grad_accum_steps": 4}), 8)  # 1 row per device
    with pytest.raises(ValueError, match="optim.grad_accum_steps=3"):
        validation.validate(tiny_config(**{"optim.grad_accum_steps": 3}))
    with pytest.warns(UserWarning, match=r"optim.grad_accum_steps=2 .*'method.loss.sigreg'"):
        validation.validate(tiny_config(**{"optim.grad_accum_steps": 2, "method.loss.sigreg": 0.1}))


# ---------------------------------------------------------------------------------------------
# FSDP
# ---------------------------------------------------------------------------------------------


def test_fsdp_divides_parameter_and_optimizer_bytes():
    """From the real state shardings: on a (1, 8, 1) mesh one device holds at most 1/7 of the
    parameter + optimizer-state bytes it holds alone (what is left whole — biases of the
    tensor-parallel axes — costs the rest)."""
    per_device = {}
    for fsdp in (1, 8):
        config = tiny_config()
        config.mesh.data, config.mesh.fsdp = 1, fsdp
        mesh = sharding.make_mesh(config, jax.devices()[:fsdp])
        tx = optim.make_optimizer(config)
        abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
        parts = memory.state_bytes(abstract, shardings)
        per_device[fsdp] = parts["params"] + parts["opt_state"]
    # Alone: the params and Adam's two moments, plus a few scalar counters.
    param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract.params))
    assert 0 <= per_device[1] - 3 * param_bytes < 64
    assert per_device[8] <= per_device[1] / 7


def test_fsdp_divides_the_compiled_steps_argument_bytes_ema_target_included():
    """XLA's own figure: the compiled train step's per-device argument bytes (online params,
    EMA target encoder, Adam moments, counters and the device's rows of the batch) on a
    (1, 8, 1) mesh are at most 1/7 of those on one device. Each figure is the sum of the
    state's per-device bytes from its shardings (EMA target included: it is an argument of its
    own, not a view of the params) and the device's rows of the batch."""
    arguments, target = {}, {}
    for fsdp in (1, 8):
        config = tiny_config()
        config.mesh.data, config.mesh.fsdp = 1, fsdp
        mesh = sharding.make_mesh(config, jax.devices()[:fsdp])
        tx = optim.make_optimizer(config)
        abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
        state = jax.device_put(initial_state(), shardings)
        host_batch = synthetic_batch(config, 0)
        batch = sharding.global_batch(host_batch, mesh)
        with jax.set_mesh(mesh):
            train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
            compiled = train_step.lower(state, batch).compile(FAST)
        arguments[fsdp] = memory.compiled_memory(compiled)["argument_bytes"]
        parts = memory.state_bytes(abstract, shardings)
        target[fsdp] = parts["target_params"]
        rows = sum(x.nbytes for x in host_batch.values()) // fsdp
        assert 0 <= arguments[fsdp] - sum(parts.values()) - rows < 64, (arguments, parts, rows)
    param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract.params))
    encoder_bytes = sum(
        x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract.params["encoder"])
    )
    assert target[1] == encoder_bytes and target[8] <= target[1] / 7
    assert arguments[1] > 4 * param_bytes  # params, EMA encoder, two moments, the batch
    assert arguments[8] <= arguments[1] / 7, arguments
