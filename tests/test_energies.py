"""The step's losses recomputed from their definitions: the networks' outputs are taken from the
models, everything after them (target LayerNorm, gathering, energy, averaging, the information
terms, their weights) is recomputed by the slow NumPy references of ``tests/references.py``."""

import jax
import numpy as np
import pytest
import references as ref
from helpers import synthetic_batch, tiny_config, with_overrides

from jepa import config as config_lib
from jepa import methods, optim
from jepa import state as state_lib
from jepa.methods import video
from jepa.models import build_encoder, build_predictor


def sigreg_directions(config, step: int, dim: int, fold=None) -> np.ndarray:
    """The SIGReg directions the step draws: normal [dim, slices] from the key (seed, step),
    folded once more by ``fold`` where the objective does; the reference normalizes them."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
    if fold is not None:
        key = jax.random.fold_in(key, fold)
    return np.asarray(jax.random.normal(key, (dim, config.method.loss.sigreg_slices)))


@pytest.mark.parametrize("regularize", ["pooled", "tokens"])
def test_masked_loss_equals_the_ijepa_energy_plus_weighted_terms(regularize):
    """loss = mean smooth-L1(pred, LayerNorm(target encoder tokens)[target indices])
    + 0.5·VICReg variance + 0.02·VICReg covariance + 0.1·SIGReg, recomputed."""
    weights = {"vicreg_var": 0.5, "vicreg_cov": 0.02, "sigreg": 0.1}
    config = tiny_config(**{f"method.loss.{k}": v for k, v in weights.items()})
    config.method.loss.sigreg_slices = 4
    config.method.loss.regularize = regularize
    config.method.mask.num_targets = 2
    step = 3
    tx = optim.make_optimizer(config)
    state = state_lib.init_train_state(config, tx, jax.random.PRNGKey(0))
    # A target encoder unlike the online one, as after training: a copy would hide a swap.
    target = jax.tree.map(lambda x: x * 1.5 + 0.01, state.target_params)
    batch = synthetic_batch(config, step)
    loss, aux = jax.jit(methods.of(config).make_loss_fn(config))(state.params, target, batch, step)

    encoder = build_encoder(config)
    predictor = build_predictor(config, config_lib.grid_of(config))
    full = np.asarray(encoder.apply({"params": target}, batch["image"])[0])
    ctx_idx, tgt_idx = batch["context"], batch["targets"]
    context, _ = encoder.apply({"params": state.params["encoder"]}, batch["image"], ctx_idx)
    preds = np.asarray(
        predictor.apply({"params": state.params["predictor"]}, context, ctx_idx, tgt_idx)
    )
    context = np.asarray(context, np.float64)

    h = ref.layer_norm(full)
    b, blocks, k = tgt_idx.shape
    targets = np.empty((b, blocks, k, h.shape[-1]))
    for i in range(b):
        for j in range(blocks):
            for t in range(k):
                targets[i, j, t] = h[i, tgt_idx[i, j, t]]
    energy = ref.smooth_l1(preds, targets)
    pooled_context = context.mean(1)
    z = pooled_context if regularize == "pooled" else context.reshape(-1, context.shape[-1])
    directions = sigreg_directions(config, step, z.shape[1])
    terms = {
        "vicreg_var": ref.vicreg_variance(z),
        "vicreg_cov": ref.vicreg_covariance(z),
        "sigreg": ref.sigreg(z, directions),
    }
    np.testing.assert_allclose(aux["energy"], energy, rtol=1e-5)
    for name, value in terms.items():
        np.testing.assert_allclose(aux[name], value, rtol=1e-4, err_msg=name)
    expected = energy + sum(weights[n] * terms[n] for n in ("vicreg_var", "vicreg_cov", "sigreg"))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # A degenerate reference would make the comparison vacuous: every term is felt.
    assert min(energy, *terms.values()) > 1e-3


def test_multiview_loss_equals_its_definition_recomputed():
    """LeJEPA-style multiview: s_v = Proj(mean tokens(Enc(view v))); energy = mean over views,
    images and features of (s_v − mean of the global views' s)²; SIGReg per view with
    directions (step, v), averaged; VICReg likewise; loss = weighted sum."""
    from test_step import multiview_batch, multiview_config

    from jepa.models import build_projector

    config = multiview_config(**{"method.loss.vicreg_var": 0.5, "method.loss.vicreg_cov": 0.02})
    config.method.loss.sigreg_slices = 4
    step = 5
    tx = optim.make_optimizer(config)
    state = state_lib.init_train_state(config, tx, jax.random.PRNGKey(0))
    batch = multiview_batch(config, 0)
    loss, aux = jax.jit(methods.of(config).make_loss_fn(config))(
        state.params, state.target_params, batch, step
    )
    encoder, projector = build_encoder(config), build_projector(config)

    def embed(view):
        tokens, _ = encoder.apply({"params": state.params["encoder"]}, view)
        pooled = np.asarray(tokens, np.float64).mean(1)
        out = projector.apply({"params": state.params["projector"]}, pooled.astype(np.float32))
        return np.asarray(out, np.float64)

    views = [batch["image"][:, 0], batch["image"][:, 1], batch["local"][:, 0], batch["local"][:, 1]]
    z = [embed(v) for v in views]
    center = (z[0] + z[1]) / 2
    energy = float(np.mean([ref.squared_error(zv, center) for zv in z]))
    sig = var = cov = 0.0
    for v, zv in enumerate(z):
        sig += ref.sigreg(zv, sigreg_directions(config, step, zv.shape[1], fold=v)) / 4
        var += ref.vicreg_variance(zv) / 4
        cov += ref.vicreg_covariance(zv) / 4
    np.testing.assert_allclose(aux["energy"], energy, rtol=1e-4)
    np.testing.assert_allclose(aux["sigreg"], sig, rtol=1e-4)
    np.testing.assert_allclose(aux["vicreg_var"], var, rtol=1e-4)
    np.testing.assert_allclose(aux["vicreg_cov"], cov, rtol=1e-4)
    np.testing.assert_allclose(loss, 0.9 * energy + 0.1 * sig + 0.5 * var + 0.02 * cov, rtol=1e-5)


def test_future_discrete_latent_loss_equals_winner_take_all_plus_code_usage():
    """Video objective, K discrete codes: E_k(i) = mean smooth-L1 between the prediction under
    code k and LayerNorm(the target encoder's tokens of the future frame); loss = mean_i min_k
    E_k(i) + usage_weight · KL(mean_i softmax(−E(i)/T) ‖ uniform) + the reference predictor's
    z-free energy on the same embeddings."""
    c = methods.with_method(config_lib.base_config(), "future")
    config = with_overrides(
        c,
        {
            "model.image_size": 32,
            "model.patch_size": 16,
            "model.channels": 1,
            "model.width": 32,
            "model.depth": 1,
            "model.num_heads": 2,
            "method.predictor.width": 32,
            "method.predictor.depth": 1,
            "method.predictor.num_heads": 2,
            "data.dataset": "stochastic_moving_mnist/tiny",
            "batch_size": 4,
            "method.latent.kind": "discrete",
            "method.latent.num_codes": 3,
            "method.latent.usage_weight": 0.7,
            # Cold enough that the codes' small energy gaps give a usage far from uniform.
            "method.latent.usage_temperature": 1e-3,
            "method.latent.reference": True,
        },
    )
    params = state_lib.init_train_state(config, optim.make_optimizer(config), jax.random.key(0))
    params = params.params
    target = jax.tree.map(lambda x: x * 1.5 + 0.01, params["encoder"])
    frames = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (4, 3, 32, 32, 1)))
    loss_fn, model_for = video.make_loss_and_model(config)
    loss, aux = jax.jit(loss_fn)(params, target, {"image": frames}, 2)

    encoder = build_encoder(config)
    target_tokens = np.asarray(encoder.apply({"params": target}, frames[:, 2])[0])
    sy = ref.layer_norm(target_tokens)  # [b, 4 tokens, width]
    model = model_for(target)
    full = {"model": params, "latent": params["latent"]}
    b, k = frames.shape[0], config.method.latent.num_codes
    energies = np.empty((b, k))
    for code in range(k):
        pred = np.asarray(model.predict(full, frames[:, :2], np.full((b,), code)))
        for i in range(b):
            energies[i, code] = ref.smooth_l1(pred[i], sy[i])
    wta = energies.min(1).mean()
    soft = np.exp(-(energies - energies.min(1, keepdims=True)) / 1e-3)
    usage = (soft / soft.sum(1, keepdims=True)).mean(0)
    kl = float(sum(p * np.log(p * k) for p in usage))
    reference = build_predictor(config, video.predictor_grid(config))
    sx = model.encode_x(params, frames[:, :2])
    n = target_tokens.shape[1]
    # Positions on the predictor's (time, h, w) grid: context frames at times 0 and 1, the
    # target 3 steps (method.clip.horizon) after the last of them, at time 4.
    ref_pred = reference.apply(
        {"params": params["reference"]},
        sx,
        np.arange(2 * n, dtype=np.int32)[None].repeat(b, 0),
        (4 * n + np.arange(n, dtype=np.int32))[None, None].repeat(b, 0),
    )
    reference_energy = ref.smooth_l1(np.asarray(ref_pred)[:, 0], sy)
    np.testing.assert_allclose(aux["energy"], wta, rtol=1e-5)
    np.testing.assert_allclose(aux["code_usage_kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(aux["reference_energy"], reference_energy, rtol=1e-5)
    np.testing.assert_allclose(loss, wta + 0.7 * kl + reference_energy, rtol=1e-5)
    # The codes' energies differ, so a mean (not a min) over codes would not pass.
    assert np.ptp(energies, axis=1).min() > 1e-5 and kl > 1e-2


def test_hierarchy_loss_equals_level1_next_frame_plus_level2_self_prediction():
    """Two levels, level 1 predicting the frame 2 steps after 2 context frames, level 2 (target
    "self") predicting its own state 1 and 3 steps later. loss = 1.3 · (mean smooth-L1(pred,
    LayerNorm(target tokens of frame s + 3)) over every window s + 0.5 · VICReg variance of the
    online tokens) + 0.7 · (per-sequence mean over the (horizon h, step t) with t + h inside the
    sequence of smooth-L1(pred_h(t), state(t + h)) + 0.4 · variance + 0.03 · covariance of the
    states). The target state is a constant: the gradient into level 2 is the reference's with
    the targets frozen."""
    import jax.numpy as jnp
    from flax import linen as nn
    from test_hierarchy import LEVEL2, frames_batch, tiny_hierarchy_config

    from jepa import hierarchy

    level2 = dict(LEVEL2, horizons=(1, 3), vicreg_var=0.4, vicreg_cov=0.03, weight=0.7)
    config = tiny_hierarchy_config(
        levels=(level2,),
        **{
            "method.sequence.frames": 6,
            "method.level1.horizon": 2,
            "method.level1.weight": 1.3,
            "method.loss.energy": "smooth_l1",
            "method.loss.vicreg_var": 0.5,
        },
    )
    model = hierarchy.Hierarchy(config)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    target_params = jax.tree.map(lambda x: x * 1.1 + 0.01, params["encoder"])  # EMA ≠ online
    frames = jnp.asarray(frames_batch(config)["image"][:2])  # [2 sequences, 6 frames, ...]
    loss_fn = methods.of(config).make_loss_fn(config)
    p2 = params["levels"]["level2"]

    def level2_energy_of(encoder_params):  # one program: the loss, its parts and a gradient
        full = {**params, "levels": {"level2": {**p2, "encoder": encoder_params}}}
        loss, aux = loss_fn(full, target_params, {"image": frames}, 0)
        return aux["level2/energy"], (loss, aux)

    grad_fn = jax.jit(jax.grad(level2_energy_of, has_aux=True))
    level2_grad, (loss, aux) = grad_fn(p2["encoder"])

    # The networks' outputs, each frame through the ViT on its own.
    encoder = build_encoder(config)

    def tokens(p):
        out = [encoder.apply({"params": p}, frames[:, t])[0] for t in range(frames.shape[1])]
        return np.stack([np.asarray(o, np.float64) for o in out], 1)  # [b, T, n, d]

    online, target = tokens(params["encoder"]), tokens(target_params)
    b, frames_n, n, d = online.shape
    context_frames, horizon = 2, 2
    preds, targets = [], []
    for s in range(frames_n - context_frames - horizon + 1):
        ctx = ref.layer_norm(online[:, s : s + context_frames]).reshape(b, -1, d)
        # Predictor positions: the context frames' tokens at time slots 0, 1, the target frame's
        # tokens `horizon` slots after the last context frame.
        ctx_idx = np.arange(context_frames * n, dtype=np.int32)[None].repeat(b, 0)
        tgt_idx = (context_frames - 1 + horizon) * n + np.arange(n, dtype=np.int32)
        pred = model.predictor.apply(
            {"params": params["predictor"]},
            ctx.astype(np.float32),
            ctx_idx,
            tgt_idx[None, None].repeat(b, 0),
        )
        preds.append(np.asarray(pred)[:, 0])
        targets.append(ref.layer_norm(target[:, s + context_frames - 1 + horizon]))
    energy1 = ref.smooth_l1(np.stack(preds), np.stack(targets))
    var1 = ref.vicreg_variance(online.reshape(-1, d))
    loss1 = energy1 + 0.5 * var1

    seq_encoder, step_predictor = model.seq_encoders[0], model.step_predictors[0]
    below = online.mean(2).astype(np.float32)  # level 1's online frame means

    def level2_energy(encoder_params, state_targets):
        states = seq_encoder.apply({"params": encoder_params}, below)
        pred = step_predictor.apply({"params": p2["predictor"]}, states)  # [b, H, T, width]
        per_sequence = []
        for i in range(b):
            errors = []
            for j, h in enumerate(level2["horizons"]):
                for t in range(frames_n - h):
                    e = jnp.abs(pred[i, j, t] - state_targets[i, t + h])
                    errors.append(jnp.where(e < 1.0, 0.5 * e * e, e - 0.5).mean())
            per_sequence.append(jnp.mean(jnp.stack(errors)))
        return jnp.mean(jnp.stack(per_sequence))

    states = np.asarray(seq_encoder.apply({"params": p2["encoder"]}, below), np.float64)
    energy2 = float(level2_energy(p2["encoder"], states.astype(np.float32)))
    var2, cov2 = (
        ref.vicreg_variance(states.reshape(-1, 32)),
        ref.vicreg_covariance(states.reshape(-1, 32)),
    )
    loss2 = energy2 + 0.4 * var2 + 0.03 * cov2

    np.testing.assert_allclose(aux["level1/energy"], energy1, rtol=1e-5)
    np.testing.assert_allclose(aux["level1/vicreg_var"], var1, rtol=1e-5)
    np.testing.assert_allclose(aux["level2/energy"], energy2, rtol=1e-5)
    np.testing.assert_allclose(aux["level2/vicreg_var"], var2, rtol=1e-5)
    np.testing.assert_allclose(aux["level2/vicreg_cov"], cov2, rtol=1e-4)
    np.testing.assert_allclose(loss, 1.3 * loss1 + 0.7 * loss2, rtol=1e-5)
    assert min(energy1, var1, energy2, var2, cov2) > 1e-4  # every term is felt

    # Gradient into level 2's encoder: the predictions' path only, the targets held fixed.
    want = jax.jit(jax.grad(level2_energy))(p2["encoder"], jnp.asarray(states, jnp.float32))
    flat_got, flat_want = jax.tree.leaves(level2_grad), jax.tree.leaves(want)
    for g, w in zip(flat_got, flat_want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)
    assert max(float(np.abs(w).max()) for w in flat_want) > 1e-4
