"""The sharded train step: same losses on every mesh, one compilation, real FSDP splits, EMA."""

import jax
import numpy as np
import pytest
from helpers import synthetic_batch, tiny_config, train_on_mesh

from jepa import methods, objectives, optim, sharding
from jepa import state as state_lib
from jepa import step as step_lib
from jepa.models import build_encoder


def run_steps(config, mesh_shape, n_steps=3):
    history, state, train_step, _ = train_on_mesh(config, mesh_shape, synthetic_batch, n_steps)
    return [m["loss"] for m in history], state, train_step, history[-1]


_RUNS = {}


def cached_run(mesh_shape):
    """Each mesh's 3-step run is compiled and executed once per test module."""
    if mesh_shape not in _RUNS:
        _RUNS[mesh_shape] = run_steps(tiny_config(), mesh_shape)
    return _RUNS[mesh_shape]


@pytest.fixture(scope="module")
def single_device_run():
    return cached_run((1, 1, 1))


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2)])
def test_losses_equal_single_device(single_device_run, mesh_shape):
    reference, *_ = single_device_run
    losses, state, _, _ = cached_run(mesh_shape)
    np.testing.assert_allclose(losses, reference, rtol=1e-5)
    assert losses[2] < losses[0]  # it learns


def test_fsdp_really_splits_kernels():
    _, state, _, _ = cached_run((2, 4, 1))
    kernel = state.params["encoder"]["block_0"]["mlp"]["fc1"]["kernel"]  # [embed=64, mlp=256]
    assert kernel.sharding.spec[0] == "fsdp"
    shard_shapes = {s.data.shape for s in kernel.addressable_shards}
    assert shard_shapes == {(16, 256)}
    # Adam moments are split like their parameters.
    mu = state.opt_state[0].mu["encoder"]["block_0"]["mlp"]["fc1"]["kernel"]
    assert mu.sharding.spec == kernel.sharding.spec
    target = state.target_params["block_0"]["mlp"]["fc1"]["kernel"]
    assert target.sharding.spec == kernel.sharding.spec


def test_tensor_parallel_splits_heads_and_mlp():
    _, state, _, _ = cached_run((2, 2, 2))
    block = state.params["encoder"]["block_0"]
    assert tuple(block["attn"]["qkv_kernel"].sharding.spec) == ("fsdp", None, "tensor", None)
    assert tuple(block["mlp"]["fc2"]["kernel"].sharding.spec) == ("tensor", "fsdp")


def test_step_compiles_once(single_device_run):
    _, _, train_step, _ = single_device_run
    assert train_step._cache_size() == 1


def test_metrics_are_reported(single_device_run):
    *_, metrics = single_device_run
    assert set(metrics) >= {"loss", "lr", "wd", "momentum", "grad_norm", "target_std"}
    assert float(metrics["momentum"]) == pytest.approx(0.996 + 0.004 * 2 / 10)
    assert float(metrics["target_std"]) > 0


def test_ema_update_is_exact():
    """target' = m·target + (1 − m)·params', with params' the updated online encoder."""
    config = tiny_config()
    config.optim.ema_momentum = (0.9, 0.9)
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    tx = optim.make_optimizer(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    state = state.replace(target_params=jax.tree.map(lambda x: x * 0.5, state.target_params))
    before = jax.device_get(state.target_params)
    fn = step_lib.jax.jit(step_lib.make_train_step(config, tx))
    new, _ = fn(state, synthetic_batch(config, 0))
    expected = jax.tree.map(lambda t, p: 0.9 * t + 0.1 * p, before, new.params["encoder"])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        jax.device_get(new.target_params),
        expected,
    )


def test_target_encoder_gets_no_gradient():
    config = tiny_config()
    tx = optim.make_optimizer(config)
    state = state_lib.init_train_state(config, tx, jax.random.PRNGKey(0))
    loss_fn = methods.of(config).make_loss_fn(config)
    batch = synthetic_batch(config, 0)
    grads = jax.jit(jax.grad(lambda t: loss_fn(state.params, t, batch)[0]))(state.target_params)
    assert all(float(abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_information_regularizers_add_to_the_energy_with_their_weights():
    """loss = energy + 0.5·vicreg_var + 0.02·vicreg_cov + 0.1·sigreg, the regularizers
    computed on the per-image mean of the context encoder's tokens; weights of 0 leave the
    plain I-JEPA loss."""
    config = tiny_config(
        **{
            "method.loss.vicreg_var": 0.5,
            "method.loss.vicreg_cov": 0.02,
            "method.loss.sigreg": 0.1,
        }
    )
    config.method.loss.sigreg_slices = 16
    tx = optim.make_optimizer(config)
    state = state_lib.init_train_state(config, tx, jax.random.PRNGKey(0))
    batch = synthetic_batch(config, 0)
    loss, aux = jax.jit(methods.of(config).make_loss_fn(config))(
        state.params, state.target_params, batch, 3
    )
    context, _ = build_encoder(config).apply(
        {"params": state.params["encoder"]}, batch["image"], batch["context"]
    )
    z = context.mean(axis=1)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
    expected = {
        "vicreg_var": objectives.vicreg_variance(z),
        "vicreg_cov": objectives.vicreg_covariance(z),
        "sigreg": objectives.sigreg(z, key, 16),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(aux[name], value, rtol=1e-4, err_msg=name)
    total = aux["energy"] + 0.5 * aux["vicreg_var"] + 0.02 * aux["vicreg_cov"]
    total += 0.1 * aux["sigreg"]
    np.testing.assert_allclose(loss, total, rtol=1e-6)
    assert float(aux["vicreg_var"]) > 0  # fresh-init pooled embeddings have std < 1

    plain = tiny_config()
    plain_loss, plain_aux = methods.of(plain).make_loss_fn(plain)(
        state.params, state.target_params, batch
    )
    assert set(plain_aux) == {"energy", "target_std"}
    np.testing.assert_allclose(plain_loss, aux["energy"], rtol=1e-5)


def multiview_config(**overrides):
    """tiny_config with the multiview objective: 2 global views, 2 local 16-px views."""
    base = {
        "objective": "multiview",
        "method.num_views": 2,
        "method.local_views": 2,
        "method.local_size": 16,
        "method.loss.energy": "l2",
        "method.loss.view_weight": 0.9,
        "method.loss.sigreg": 0.1,
        "method.loss.sigreg_slices": 16,
        "method.projector.hidden": 32,
        "method.projector.out": 8,
        "model.depth": 1,  # compile time: the objective, not the depth, is under test
    }
    return tiny_config(**{**base, **overrides})


def multiview_batch(config, step: int):
    rng = np.random.default_rng([step, 11])
    m, d = config.model, config.method
    shape = (config.batch_size, d.num_views, m.image_size, m.image_size, m.channels)
    local = (config.batch_size, d.local_views, d.local_size, d.local_size, m.channels)
    return {
        "image": rng.standard_normal(shape).astype(np.float32),
        "local": rng.standard_normal(local).astype(np.float32),
    }


def test_multiview_loss_matches_its_definition():
    """s_v = Proj(mean_tokens(Enc(view v))); energy = mean over views, images and features of
    (s_v − mean of the global s)²; SIGReg averaged over views, each with its own directions;
    loss = 0.9·energy + 0.1·SIGReg. Identical views have zero energy."""
    from jepa.models import build_projector

    config = multiview_config()
    tx = optim.make_optimizer(config)
    state = state_lib.init_train_state(config, tx, jax.random.PRNGKey(0))
    assert set(state.params) == {"encoder", "projector"}
    batch = multiview_batch(config, 0)
    loss, aux = jax.jit(methods.of(config).make_loss_fn(config))(
        state.params, state.target_params, batch, 5
    )

    encoder, projector = build_encoder(config), build_projector(config)

    @jax.jit
    def embed(view):
        tokens, _ = encoder.apply({"params": state.params["encoder"]}, view)
        return projector.apply({"params": state.params["projector"]}, tokens.mean(axis=1))

    views = [batch["image"][:, 0], batch["image"][:, 1], batch["local"][:, 0], batch["local"][:, 1]]
    z = np.stack([np.asarray(embed(v)) for v in views])  # [4 views, batch, 8]
    center = z[:2].mean(0)
    energy = np.mean((z - center) ** 2)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 5)
    sig = np.mean([objectives.sigreg(z[v], jax.random.fold_in(key, v), 16) for v in range(4)])
    np.testing.assert_allclose(aux["energy"], energy, rtol=1e-4)
    np.testing.assert_allclose(aux["sigreg"], sig, rtol=1e-4)
    np.testing.assert_allclose(loss, 0.9 * energy + 0.1 * sig, rtol=1e-4)

    same = {"image": np.repeat(batch["image"][:, :1], 2, axis=1)}
    no_local = multiview_config(**{"method.local_views": 0})
    _, same_aux = jax.jit(methods.of(no_local).make_loss_fn(no_local))(
        state.params, state.target_params, same, 5
    )
    assert float(same_aux["energy"]) == 0.0


def test_multiview_losses_equal_single_device():
    """The multiview step on 8 devices (FSDP × data) equals one device: global-batch SIGReg."""
    results = []
    for mesh_shape in [(1, 1, 1), (2, 4, 1)]:
        history, *_ = train_on_mesh(multiview_config(), mesh_shape, multiview_batch, 3)
        results.append([m["loss"] for m in history])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5)
    assert results[0][2] < results[0][0]  # it learns


def test_bfloat16_train_step_matches_float32():
    """model.dtype=bfloat16 against float32 from the same float32 state: the loss within 1e-3
    relative, every parameter's gradient within 3 % (relative L2; bf16 keeps 8 bits, 2⁻⁸ ≈
    0.4 %, and the measured errors are 0.2–1.4 %), the step's grad norm within 1 %; params,
    Adam moments and the EMA target stay float32 through the bf16 step."""
    f32 = tiny_config(**{"model.depth": 1})
    bf16 = tiny_config(**{"model.depth": 1, "model.dtype": "bfloat16"})
    tx = optim.make_optimizer(f32)
    state = state_lib.init_train_state(f32, tx, jax.random.PRNGKey(0))
    batch = synthetic_batch(f32, 0)
    results = {}
    for name, config in (("f32", f32), ("bf16", bf16)):
        loss_fn = methods.of(config).make_loss_fn(config)
        value_and_grad = jax.value_and_grad(
            lambda p, c=loss_fn: c(p, state.target_params, batch)[0]
        )
        results[name] = jax.jit(value_and_grad)(state.params)
    (loss32, grads32), (loss16, grads16) = results["f32"], results["bf16"]
    np.testing.assert_allclose(loss16, loss32, rtol=1e-3)

    def relative_error(a, b):
        assert b.dtype == np.float32
        return float(np.linalg.norm(np.asarray(b) - a) / np.linalg.norm(np.asarray(a)))

    errors = jax.tree.map(relative_error, grads32, grads16)
    worst = max(jax.tree.leaves(errors))
    assert worst < 0.03, errors

    new, metrics = jax.jit(step_lib.make_train_step(bf16, tx))(state, batch)
    norm32 = np.sqrt(sum(float(np.square(g).sum()) for g in jax.tree.leaves(grads32)))
    np.testing.assert_allclose(metrics["grad_norm"], norm32, rtol=1e-2)
    trees = (new.params, new.target_params, new.opt_state)
    assert {x.dtype for t in trees for x in jax.tree.leaves(t) if x.ndim} == {np.dtype("float32")}


def test_sharded_step_equals_single_device_with_batch_statistic_terms():
    """With VICReg and SIGReg on (statistics over the global batch, which a per-device
    reduction would change), 3 steps on 8 devices (data 2 × FSDP 4) equal one device: the
    losses, the terms, the grad norms and the params after every step."""
    overrides = {
        "model.depth": 1,
        "method.loss.vicreg_var": 0.5,
        "method.loss.vicreg_cov": 0.02,
        "method.loss.sigreg": 0.1,
        "method.loss.sigreg_slices": 8,
    }
    runs = [
        train_on_mesh(tiny_config(**overrides), mesh, synthetic_batch, 3, keep_params=True)
        for mesh in [(1, 1, 1), (2, 4, 1)]
    ]
    (single, *_, single_params), (sharded, *_, sharded_params) = runs
    for name in ("loss", "vicreg_var", "vicreg_cov", "sigreg", "grad_norm"):
        np.testing.assert_allclose(
            [m[name] for m in sharded], [m[name] for m in single], rtol=2e-5, err_msg=name
        )
    for a, b in zip(sharded_params[1:], single_params[1:], strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=2e-6), a, b)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), *single_params[::3])
    assert max(jax.tree.leaves(moved)) > 1e-4  # the params did change
