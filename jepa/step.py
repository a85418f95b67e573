"""The objectives (I-JEPA's masked prediction; the multiview one) and the jitted train step.

One step, as in ``src/train.py`` of facebookresearch/ijepa:
  1. targets: the EMA target encoder on the full image, LayerNorm (no affine) per token,
     gathered at each target block's indices, under ``stop_gradient``;
  2. context: the online encoder on the context tokens only, then the predictor per target block;
  3. energy (smooth-L1 by default) averaged over blocks, tokens and features, plus the optional
     information regularizers on the context embeddings s_x (VICReg variance/covariance,
     SIGReg), which keep s_x informative where the EMA target alone lets it partially collapse;
  4. AdamW update, then the EMA of the updated encoder into the target encoder.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jepa import config as config_lib
from jepa import objectives, optim, sharding
from jepa.models import build_encoder, build_predictor, build_projector
from jepa.models.vit import gather_tokens
from jepa.state import TrainState


def feature_std(features: jax.Array) -> jax.Array:
    """Mean over feature dims of the std across samples; [batch, dim] → scalar.

    Falls towards 0 when the representation collapses to a constant."""
    return jnp.std(features.astype(jnp.float32), axis=0).mean()


def regularizer_samples(context: jax.Array, mode: str) -> jax.Array:
    """The samples the information regularizers see: ``pooled`` = one mean embedding per image
    (information about the image as a whole), ``tokens`` = every context token."""
    if mode == "pooled":
        return context.mean(axis=1)
    return context.reshape(-1, context.shape[-1])


def information_terms(z: jax.Array, loss_config, key: jax.Array) -> dict:
    """The enabled anti-collapse terms on embeddings ``z`` [samples, dim], unweighted, keyed by
    the name of their weight in ``config.loss``."""
    terms = {}
    if loss_config.vicreg_var:
        terms["vicreg_var"] = objectives.vicreg_variance(z, loss_config.vicreg_gamma)
    if loss_config.vicreg_cov:
        terms["vicreg_cov"] = objectives.vicreg_covariance(z)
    if loss_config.sigreg:
        terms["sigreg"] = objectives.sigreg(z, key, loss_config.sigreg_slices)
    return terms


def weighted_sum(terms: dict, loss_config):
    """Σ weight · term, each term weighted by the ``config.loss`` key it is named after."""
    return sum(loss_config[name] * value for name, value in terms.items())


def regularizer_terms(embeddings: jax.Array, loss_config, key: jax.Array):
    """The information terms on ``embeddings`` [batch, tokens, dim], sampled as
    ``loss.regularize`` says: (their weighted sum, {name: value})."""
    samples = regularizer_samples(embeddings, loss_config.regularize)
    terms = information_terms(samples, loss_config, key)
    return weighted_sum(terms, loss_config), terms


def make_loss_fn(config):
    """loss_fn(params, target_params, batch, step) → (loss, aux); pure, for grad and tests."""
    if config.objective == "multiview":
        return make_multiview_loss_fn(config)
    if config.objective == "future":
        return make_future_loss_fn(config)[0]
    if config.objective == "hierarchy":
        from jepa.hierarchy import Hierarchy

        return Hierarchy(config).loss_fn
    return make_masked_loss_fn(config)


def make_future_loss_fn(config):
    """The video objective: tokens of the context frames (frame-wise encoder) predict the target
    encoder's LayerNorm'd tokens of a future frame, through a latent z when ``latent.kind`` is
    set (``jepa/latent.py``: winner-take-all codes or an amortized, information-limited z).
    Returns (loss_fn, latent_model_for(target_params)) — the second builds the ``LatentJEPA``
    whose energy / free_energy / predict / sample_predictions evaluators call, with params
    ``{"model": params, "latent": params.get("latent", {})}``."""
    from jepa import latent

    encoder, predictor = build_encoder(config), build_predictor(config)
    energy = objectives.energy_fn(config.loss.energy)
    rules = sharding.rules_of(config)
    lc = config.loss
    base_key = jax.random.PRNGKey(config.seed)
    context_frames = config.data.clip.context_frames
    steps_ahead, g, _ = config_lib.clip_grid(config)
    n = g * g
    # Time-major raster indices into the predictor's (time, h, w) grid: the context frames are
    # times 0 … C−1, the target is time C−1+horizon (the grid's last).
    ctx_idx = jnp.arange(context_frames * n, dtype=jnp.int32)[None]
    tgt_idx = ((steps_ahead - 1) * n + jnp.arange(n, dtype=jnp.int32))[None, None]
    spec = config_lib.latent_spec(config)
    target_grid = lc.future_target_grid

    def to_target_space(tokens):
        """[b, n, width] → the tokens the energy compares (``loss.future_target_grid``)."""
        return objectives.region_means(tokens, g, target_grid) if target_grid else tokens

    def encode_frames(enc_params, frames):
        """[b, f, H, W, ch] → [b, f·n, width], each frame encoded on its own."""
        b, f = frames.shape[:2]
        tokens, _ = encoder.apply({"params": enc_params}, frames.reshape(b * f, *frames.shape[2:]))
        return tokens.astype(jnp.float32).reshape(b, f * n, -1)

    def predict(pred_params, sx, z_embedding):
        b = sx.shape[0]
        out = predictor.apply(
            {"params": pred_params},
            sx,
            jnp.broadcast_to(ctx_idx, (b, ctx_idx.shape[1])),
            jnp.broadcast_to(tgt_idx, (b, 1, n)),
            None if z_embedding is None else z_embedding[:, None],
        )
        return to_target_space(out[:, 0].astype(jnp.float32))  # [b, n or G², width]

    def latent_model_for(target_params):
        def encode_y(params, frame):
            if lc.target_encoder == "online":
                tokens = encode_frames(params["encoder"], frame[:, None])
                return objectives.normalize_targets(to_target_space(tokens))
            full = to_target_space(encode_frames(target_params, frame[:, None]))
            return jax.lax.stop_gradient(objectives.normalize_targets(full))

        return latent.LatentJEPA(
            spec=spec,
            encode_x=lambda params, x: encode_frames(params["encoder"], x),
            encode_y=encode_y,
            predict_fn=lambda params, sx, ze: predict(params["predictor"], sx, ze),
            energy_fn=lambda pred, sy: energy(pred, sy).mean(-1),  # per sample
            # q(z | s_x, s_y) sees every token: where a digit went is in *which* tokens
            # changed, which a mean over tokens would blur.
            pool=lambda s: s.reshape(s.shape[0], -1),
            width=config.model.predictor.width,
        )

    def loss_fn(params, target_params, batch, step=0):
        frames = batch["image"]  # [b, C + 1, H, W, ch]: context frames, then the target frame
        key = jax.random.fold_in(base_key, step)
        with nn.logical_axis_rules(rules):
            model = latent_model_for(target_params)
            sx = model.encode_x(params, frames[:, :context_frames])
            sy = model.encode_y(params, frames[:, context_frames])
            full = {"model": params, "latent": params.get("latent", {})}
            loss, aux = model.loss_from_embeddings(full, sx, sy, key)
            if "reference" in params:
                # A z-free predictor on the same, frozen embeddings: the baseline min_z E is
                # compared with (its gradients reach only its own parameters).
                ref = predict(params["reference"], jax.lax.stop_gradient(sx), None)
                aux["reference_energy"] = energy(ref, jax.lax.stop_gradient(sy)).mean()
                loss = loss + aux["reference_energy"]
        aux["target_std"] = feature_std(sy.mean(1))
        weighted, terms = regularizer_terms(sx, lc, jax.random.fold_in(key, 1))
        return loss + weighted, {**aux, **terms}

    return loss_fn, latent_model_for


def make_multiview_loss_fn(config):
    """The multiview (LeJEPA-style) loss. Every view v of an image, global or local, gives
    s_v = Proj(mean of Enc(view) tokens); each predicts the mean of the global views' s (no
    stop-gradient, no EMA: LeJEPA's choice), and the information terms (SIGReg, VICReg) on
    each view's batch of s keep the embedding spread out, so that agreeing is not trivial."""
    encoder, projector = build_encoder(config), build_projector(config)
    energy = objectives.energy_fn(config.loss.energy)
    rules = sharding.rules_of(config)
    lc = config.loss
    base_key = jax.random.PRNGKey(config.seed)

    def embed(params, views):
        """[batch, n_views, h, w, c] → [n_views, batch, out]: batch-major reshapes, so the
        batch axis keeps its sharding."""
        b, v = views.shape[:2]
        tokens, _ = encoder.apply(
            {"params": params["encoder"]}, views.reshape(b * v, *views.shape[2:])
        )
        z = projector.apply({"params": params["projector"]}, tokens.astype(jnp.float32).mean(1))
        return jnp.swapaxes(z.astype(jnp.float32).reshape(b, v, -1), 0, 1)

    def loss_fn(params, target_params, batch, step=0):
        del target_params  # the multiview loss has no target encoder
        global_views = batch["image"]
        if global_views.ndim == 4:
            global_views = global_views[:, None]
        with nn.logical_axis_rules(rules):
            z = embed(params, global_views)
            if "local" in batch:
                z = jnp.concatenate([z, embed(params, batch["local"])])
        center = z[: global_views.shape[1]].mean(0)
        view_energy = energy(z, center[None]).mean()
        key = jax.random.fold_in(base_key, step)
        per_view = [information_terms(z[v], lc, jax.random.fold_in(key, v)) for v in range(len(z))]
        terms = {name: jnp.mean(jnp.stack([t[name] for t in per_view])) for name in per_view[0]}
        loss = lc.view_weight * view_energy + weighted_sum(terms, lc)
        return loss, {"energy": view_energy, "embedding_std": feature_std(center), **terms}

    return loss_fn


def make_masked_loss_fn(config):
    """The I-JEPA loss (module docstring) with the optional information terms."""
    encoder, predictor = build_encoder(config), build_predictor(config)
    energy = objectives.energy_fn(config.loss.energy)
    rules = sharding.rules_of(config)
    lc = config.loss
    base_key = jax.random.PRNGKey(config.seed)

    def target_embeddings(params, target_params, images):
        """s_y: the EMA target encoder under stop-gradient (I-JEPA), or with
        ``loss.target_encoder="online"`` the online encoder itself, gradients on both sides (no
        EMA: the information terms must then prevent collapse)."""
        if lc.target_encoder == "online":
            return encoder.apply({"params": params["encoder"]}, images)[0].astype(jnp.float32)
        full, _ = encoder.apply({"params": target_params}, images)
        return jax.lax.stop_gradient(full.astype(jnp.float32))

    if config.mask.kind == "tube":
        return make_tube_loss_fn(config, encoder, predictor, energy, target_embeddings)

    def loss_fn(params, target_params, batch, step=0):
        images, ctx_idx, tgt_idx = batch["image"], batch["context"], batch["targets"]
        b, n_blocks, n_tgt = tgt_idx.shape
        # Logical-axis rules are read while tracing; entering them here keeps the function pure.
        with nn.logical_axis_rules(rules):
            full = target_embeddings(params, target_params, images)
            h = objectives.normalize_targets(full)
            targets = gather_tokens(h, tgt_idx.reshape(b, n_blocks * n_tgt))
            targets = targets.reshape(b, n_blocks, n_tgt, -1)

            context, _ = encoder.apply({"params": params["encoder"]}, images, ctx_idx)
            preds = predictor.apply({"params": params["predictor"]}, context, ctx_idx, tgt_idx)
            pred_energy = energy(preds.astype(jnp.float32), targets).mean()
            context = context.astype(jnp.float32)
            aux = {"energy": pred_energy, "target_std": feature_std(full.mean(axis=1))}
        # SIGReg directions: re-drawn every step, the same on every device (one key per step).
        key = jax.random.fold_in(base_key, step)
        weighted, terms = regularizer_terms(context, lc, key)
        return pred_energy + weighted, {**aux, **terms}

    return loss_fn


def tube_mask_keys(config) -> list[tuple[str, str]]:
    """The batch keys of each tube-mask generator's (context [batch, Kc_g], targets
    [batch, 1, Kt_g]) pair: one pair of keys per generator, as their token counts differ."""
    return [(f"context_{g}", f"targets_{g}") for g in range(len(config.mask.tube.num_blocks))]


def make_tube_loss_fn(config, encoder, predictor, energy, target_embeddings):
    """V-JEPA's loss on clips ``[batch, T, H, W, C]`` (``mask.kind="tube"``): the targets are
    the EMA target encoder's LayerNorm'd tokens of the whole clip, computed once; for each mask
    generator g, the context encoder sees g's context tokens and the predictor (on the tubelet
    grid) predicts g's target tokens; the energy is averaged over the generators, as V-JEPA
    averages its per-mask losses. The information terms, if any, are likewise the mean over
    the generators' context embeddings."""
    rules = sharding.rules_of(config)
    lc = config.loss
    base_key = jax.random.PRNGKey(config.seed)
    keys = tube_mask_keys(config)

    def loss_fn(params, target_params, batch, step=0):
        clips = batch["image"]
        key = jax.random.fold_in(base_key, step)
        energies, contexts = [], []
        with nn.logical_axis_rules(rules):
            full = target_embeddings(params, target_params, clips)
            h = objectives.normalize_targets(full)
            for ctx_key, tgt_key in keys:
                ctx_idx, tgt_idx = batch[ctx_key], batch[tgt_key]  # [b, Kc], [b, 1, Kt]
                targets = gather_tokens(h, tgt_idx[:, 0])[:, None]  # [b, 1, Kt, width]
                context, _ = encoder.apply({"params": params["encoder"]}, clips, ctx_idx)
                preds = predictor.apply({"params": params["predictor"]}, context, ctx_idx, tgt_idx)
                energies.append(energy(preds.astype(jnp.float32), targets).mean())
                contexts.append(context.astype(jnp.float32))
        pred_energy = jnp.mean(jnp.stack(energies))
        aux = {"energy": pred_energy, "target_std": feature_std(full.mean(axis=1))}
        aux.update({f"energy_{g}": e for g, e in enumerate(energies)})
        # Generator g's SIGReg directions: key (step, 2 + g).
        per_gen = [
            information_terms(
                regularizer_samples(c, lc.regularize), lc, jax.random.fold_in(key, 2 + g)
            )
            for g, c in enumerate(contexts)
        ]
        terms = {name: jnp.mean(jnp.stack([t[name] for t in per_gen])) for name in per_gen[0]}
        return pred_energy + weighted_sum(terms, lc), {**aux, **terms}

    return loss_fn


def split_microbatches(batch: dict, steps: int, rules=()) -> dict:
    """Every ``[batch, ...]`` array → ``[steps, batch / steps, ...]``; micro-batch j holds rows
    j, j + steps, j + 2·steps, …

    Strided rows, not contiguous blocks, because the batch axis is split over the devices in
    contiguous blocks: the reshape to ``[batch / steps, steps, ...]`` leaves each device's rows
    on that device, and every micro-batch is split over all devices like the full batch, so no
    data moves (``tests/test_scale.py`` checks that the step has no all-gather). The constraint
    says so to XLA (a no-op without a mesh)."""

    def split(x):
        x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)
        with nn.logical_axis_rules(rules):
            return nn.with_logical_constraint(x, (None, "act_batch") + (None,) * (x.ndim - 2))

    return jax.tree.map(split, batch)


def accumulated_value_and_grad(loss_fn, steps: int = 1, rules=()):
    """``jax.value_and_grad(loss_fn, has_aux=True)`` over ``steps`` micro-batches of the batch:
    ``(params, target_params, batch, step) → ((loss, aux), grads)``, each the mean over the
    micro-batches (summed in float32), run one after another in a ``lax.scan`` so that only
    one micro-batch's activations are alive at a time.

    Micro-batch j of step s draws its randomness (SIGReg directions, the latent's noise) as
    step s·steps + j would, so per-sample noise is not repeated across micro-batches. For a
    loss that is a mean over samples and draws nothing (I-JEPA's energy) this equals one big
    batch; a batch statistic (VICReg, SIGReg, code usage, ``target_std``) becomes the mean of
    per-micro-batch statistics (see ``config.optim.grad_accum_steps``)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if steps == 1:
        return grad_fn

    def accumulated(params, target_params, batch, step):
        micro = split_microbatches(batch, steps, rules)

        def add(total, inputs):
            mb, j = inputs
            out = grad_fn(params, target_params, mb, step * steps + j)
            return jax.tree.map(lambda t, x: t + x.astype(jnp.float32), total, out), None

        first = jax.tree.map(lambda x: x[0], micro)
        shapes = jax.eval_shape(grad_fn, params, target_params, first, step)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)
        total, _ = jax.lax.scan(add, zeros, (micro, jnp.arange(steps)))
        return jax.tree.map(lambda t, s: (t / steps).astype(s.dtype), total, shapes)

    return accumulated


def unless_nonfinite(nonfinite: jax.Array, updated, previous):
    """``previous`` where the scalar ``nonfinite`` is set, else ``updated``, array by array: a
    select inside the jitted step (no host round trip), so the donated state stays donated."""
    return jax.tree.map(lambda new, old: jnp.where(nonfinite, old, new), updated, previous)


def make_train_step(config, tx: optax.GradientTransformation):
    """The un-jitted step ``(state, batch) → (state, metrics)``."""
    loss_fn = make_loss_fn(config)
    grad_fn = accumulated_value_and_grad(
        loss_fn, config.optim.grad_accum_steps, sharding.rules_of(config)
    )
    schedules = optim.schedules_from_config(config)

    def train_step(state: TrainState, batch):
        (loss, aux), grads = grad_fn(state.params, state.target_params, batch, state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        momentum = schedules["momentum"](state.step)
        # target ← m·target + (1 − m)·online
        ema_step = 1.0 - momentum
        if config.objective == "hierarchy":  # a frozen / off-duty level 1 keeps its target too
            from jepa.hierarchy_modes import active_levels

            ema_step = ema_step * active_levels(config, state.step)[0]
        target = optax.incremental_update(params["encoder"], state.target_params, ema_step)
        grad_norm = optax.tree.norm(grads)
        # One flag for the host's guard (jepa/train.py), which stops the run at the first such
        # step unless config.skip_nonfinite.
        nonfinite = ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm))
        skipped = state.nonfinite_skipped
        if config.skip_nonfinite:
            params, opt_state, target = unless_nonfinite(
                nonfinite,
                (params, opt_state, target),
                (state.params, state.opt_state, state.target_params),
            )
            skipped = skipped + nonfinite.astype(jnp.int32)
        metrics = {
            "loss": loss,
            "lr": schedules["lr"](state.step),
            "wd": schedules["wd"](state.step),
            "momentum": momentum,
            "grad_norm": grad_norm,
            "nonfinite": nonfinite,
            "nonfinite_skipped": skipped,
            **aux,
        }
        # The step counter advances either way: the batch was consumed and the schedules and
        # mask seeds follow the step, as in an uninterrupted run.
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            target_params=target,
            opt_state=opt_state,
            nonfinite_skipped=skipped,
        )
        return new_state, metrics

    return train_step


def batch_shardings(mesh, config) -> dict:
    """One batch-axis sharding per key of the batch that ``config`` makes."""
    d = config.data
    # [batch, frames, h, w, c]: the video objectives' clips, and clips of a video encoder
    video = config.objective in ("future", "hierarchy") or config.model.num_frames > 0
    out = {"image": sharding.batch_sharding(mesh, 4 + (d.num_views > 1 or video))}
    if d.local_views:
        out["local"] = sharding.batch_sharding(mesh, 5)
    if config.objective == "masked" and config.mask.kind == "tube":
        for ctx_key, tgt_key in tube_mask_keys(config):
            out[ctx_key] = sharding.batch_sharding(mesh, 2)
            out[tgt_key] = sharding.batch_sharding(mesh, 3)
    elif config.objective == "masked":
        out["context"] = sharding.batch_sharding(mesh, 2)
        out["targets"] = sharding.batch_sharding(mesh, 3)
    return out


def jit_train_step(config, tx, mesh, state_shardings: TrainState):
    """``jax.jit`` of the step with the state donated and every input/output sharding fixed,
    so the step compiles exactly once per run."""
    return jax.jit(
        make_train_step(config, tx),
        in_shardings=(state_shardings, batch_shardings(mesh, config)),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
