"""Hierarchical JEPA (LeCun 2022, section 4.6): levels stacked over time.

Level 1 is a video JEPA over frames: the image ViT encodes every frame on its own, and
its predictor maps the tokens of ``level1.context_frames`` frames to the target encoder's tokens
of the frame ``level1.horizon`` steps later — a short-range, detailed prediction made from every
window of the sequence at once. Level k+1 reads level k's embeddings, one vector per time step
(level 1: its tokens averaged per frame, or per G × G regions with ``level1.pool_grid``)
averaged over windows of ``window`` steps, encodes them with a causal transformer over time
(``models/sequence.py``: its state at step t summarizes steps ≤ t, so context = the past by
construction) and predicts its own state ``horizons`` steps later: further ahead, in a coarser
space.

Anti-collapse per level: level 1 has the EMA target encoder (+ ``method.loss`` regularizers, as
the future objective); levels ≥ 2 predict stop-gradient copies of their own states and keep
them informative with their own VICReg terms. Level 1 may also learn what its frames share —
the digit's shape, which predicting the next frame does not reward — from frames of one
sequence as warped views (``level1.views_weight``, ``frame_views.py``; with ``model.stem="conv"``).

Training modes (``method.mode``; their optimizer mask lives in ``methods/hjepa.py``):
- ``joint``: every level learns; level k+1's gradients flow into level k scaled by
  ``method.joint_weight`` (0 = levels learn side by side on stop-gradient inputs);
- ``greedy``: the lowest ``method.frozen_levels`` levels are loaded from a trained run
  (``config.init``: its ``path``, and in ``take`` the parameters of those levels) and frozen;
  the levels above learn on their outputs.

Params: ``{"encoder", "predictor"[, "views_projector"]}`` for level 1 (so every image tool —
probes, ``load_encoder``, the health monitor — sees level 1's encoder where it always is) and
``{"levels": {"level2": {"encoder", "predictor"[, "recall"]}, ...}}`` above it.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jepa import frame_views, objectives, sharding
from jepa.models import build_encoder, build_predictor, build_projector
from jepa.models.sequence import SequenceEncoder, StepPredictor

MODES = ("joint", "greedy")


@dataclasses.dataclass(frozen=True)
class UpperLevel:
    """One level above the first (``config.method.levels[i]`` is level i + 2)."""

    width: int = 128
    depth: int = 2
    num_heads: int = 4
    window: int = 1  # level-below steps averaged into one step of this level
    horizons: tuple[int, ...] = (4,)  # steps of *this* level ahead that are predicted
    predictor_hidden: int = 256
    predictor_depth: int = 2
    weight: float = 1.0
    vicreg_var: float = 1.0
    vicreg_gamma: float = 1.0
    vicreg_cov: float = 0.04
    # Steps back (0 = now) of this level's own *input* that a small head must read back from
    # the state at t, e.g. (0, 1, 2, 3): the state then has to carry the recent trajectory of
    # what it reads (velocity is a difference of positions a few frames apart), which
    # predicting the future alone leaves to chance. The targets are the stop-gradient pooled
    # inputs, so the head cannot move them.
    recall: tuple[int, ...] = ()
    recall_weight: float = 1.0


def upper_levels(config) -> list[UpperLevel]:
    out = []
    for i, level in enumerate(config.method.levels):
        fields = {f.name for f in dataclasses.fields(UpperLevel)}
        unknown = sorted(set(level) - fields)
        if unknown:
            raise ValueError(
                f"method.levels[{i}] (level {i + 2}) has unknown keys {unknown}; "
                f"valid: {sorted(fields)}"
            )
        values = dict(level)
        values["horizons"] = tuple(int(h) for h in values.get("horizons", (4,)))
        values["recall"] = tuple(int(r) for r in values.get("recall", ()))
        out.append(UpperLevel(**values))
    return out


def num_levels(config) -> int:
    return 1 + len(config.method.levels)


def frames_per_step(config) -> list[int]:
    """How many frames one step of each level spans (1 at level 1)."""
    out = [1]
    for level in upper_levels(config):
        out.append(out[-1] * level.window)
    return out


def predictor_grid(config) -> tuple[int, int, int]:
    """Level 1's (time, h, w): its context frames through its target frame."""
    g = config.model.image_size // config.model.patch_size
    level1 = config.method.level1
    return level1.context_frames + level1.horizon, g, g


def validate(config) -> None:
    """Raise ``ValueError`` naming the key for an impossible hierarchy (before compilation)."""
    h, l1 = config.method, config.method.level1
    if h.mode not in MODES:
        raise ValueError(f"method.mode={h.mode!r}; valid: {MODES}")
    frames = h.sequence.frames
    grid = config.model.image_size // config.model.patch_size
    checks = {  # key of method.level1: (its value is valid, what is valid)
        "windows": (l1.windows >= 0, ">= 0 (0 = all)"),
        "mask_ratio": (0.0 <= l1.mask_ratio < 1.0, "in [0, 1)"),
        "mask_weight": (l1.mask_weight >= 0, ">= 0"),
        "views_weight": (l1.views_weight >= 0, ">= 0"),
        "pool_grid": (l1.pool_grid >= 1 and not grid % l1.pool_grid, f"a divisor of {grid}"),
        "context_frames": (l1.context_frames >= 1, ">= 1"),
        "horizon": (l1.horizon >= 1, ">= 1"),
    }
    if l1.views_weight:  # the views term's keys are read only when it is on
        checks.update(
            views=(2 <= l1.views <= frames, f"in [2, method.sequence.frames={frames}]"),
            views_sigreg=(0.0 <= l1.views_sigreg <= 1.0, "in [0, 1]"),
            views_rotate=(l1.views_rotate >= 0, ">= 0 (degrees)"),
            views_scale=(0.0 <= l1.views_scale < 1.0, "in [0, 1)"),
            views_dilate=(0.0 <= l1.views_dilate <= 1.0, "in [0, 1]"),
        )
    for key, (ok, valid) in checks.items():
        if not ok:
            raise ValueError(f"method.level1.{key}={l1[key]}; valid: {valid}")
    if l1.context_frames + l1.horizon > frames:
        raise ValueError(
            f"method.level1: {l1.context_frames} context frames + horizon {l1.horizon} do "
            f"not fit in method.sequence.frames={frames}"
        )
    if h.mode == "greedy" and not (1 <= h.frozen_levels < num_levels(config)):
        raise ValueError(
            f"method.frozen_levels={h.frozen_levels}: greedy mode freezes 1 … "
            f"{num_levels(config) - 1} of the {num_levels(config)} levels"
        )
    if h.mode == "greedy" and not config.init.path:
        raise ValueError("method.mode='greedy' needs init.path and init.take: its frozen levels")
    steps = frames
    for i, level in enumerate(upper_levels(config)):
        name = f"method.levels[{i}] (level {i + 2})"
        if level.window < 1:
            raise ValueError(f"{name}.window={level.window} must be >= 1")
        steps //= level.window
        if not level.horizons or min(level.horizons) < 1 or max(level.horizons) >= steps:
            raise ValueError(
                f"{name}.horizons={level.horizons}: each must be in [1, {steps - 1}] "
                f"(this level has {steps} steps of method.sequence.frames={frames})"
            )
        if level.recall and (min(level.recall) < 0 or max(level.recall) >= steps):
            raise ValueError(
                f"{name}.recall={level.recall}: each must be in [0, {steps - 1}] (steps back)"
            )
        if level.recall_weight < 0:
            raise ValueError(f"{name}.recall_weight={level.recall_weight} must be >= 0")
        if level.width % level.num_heads or level.width % 2:
            raise ValueError(f"{name}.width={level.width}: even and divisible by num_heads")


def scale_gradient(x: jax.Array, weight: float) -> jax.Array:
    """x in the forward pass; weight × the gradient in the backward pass (0: stop-gradient)."""
    if weight == 0:
        return jax.lax.stop_gradient(x)
    if weight == 1:
        return x
    return jax.lax.stop_gradient(x) + weight * (x - jax.lax.stop_gradient(x))


def pool_windows(x: jax.Array, window: int) -> jax.Array:
    """[batch, steps, dim] → [batch, steps // window, dim]: mean over consecutive windows (a
    trailing partial window is dropped)."""
    if window == 1:
        return x
    b, steps, d = x.shape
    n = steps // window
    return x[:, : n * window].reshape(b, n, window, d).mean(2)


def level1_windows(frames: int, context: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (context frames, target frame) window of a ``frames``-long sequence:
    ([windows, context] frame indices, [windows] target frame)."""
    starts = np.arange(frames - context - horizon + 1)
    ctx = starts[:, None] + np.arange(context)[None]
    return ctx, ctx[:, -1] + horizon


def shifted_targets(x: jax.Array, offsets) -> jax.Array:
    """[b, T, d] → [b, len(offsets), T, d + 1], stop-gradient: slot (o, t) holds x at step
    t + o (o < 0: the past) and a last channel 1 where that step exists, else zeros."""
    b, t, _ = x.shape
    out = []
    for o in offsets:
        shifted = jnp.roll(x, -o, axis=1)
        valid = ((jnp.arange(t) + o >= 0) & (jnp.arange(t) + o < t)).astype(x.dtype)
        valid = jnp.broadcast_to(valid[None, :, None], (b, t, 1))
        out.append(jnp.concatenate([shifted * valid, valid], -1))
    return jax.lax.stop_gradient(jnp.stack(out, 1))


def _masked_energy(energy, pred, sy):
    """Per-sample energy over valid (horizon, step) slots: ``sy`` = [targets | validity] along
    the last axis (``shifted_targets``)."""
    target, mask = sy[..., :-1], sy[..., -1]
    e = energy(pred, target) * mask  # [batch, horizons, steps]
    return e.sum((-2, -1)) / jnp.maximum(mask.sum((-2, -1)), 1.0)


class Hierarchy:
    """The modules and pure functions of one hierarchy config; params layout in the module
    docstring. Built once per config (cheap: no parameters live here)."""

    def __init__(self, config):
        validate(config)
        self.config = config
        self.levels = upper_levels(config)
        self.encoder = build_encoder(config)
        self.views_projector = build_projector(config)
        m = config.model
        self.grid = m.image_size // m.patch_size
        self.tokens_per_frame = self.grid**2
        l1 = config.method.level1
        self.context_frames, self.horizon = l1.context_frames, l1.horizon
        self.predictor = build_predictor(config, predictor_grid(config))
        self.frames = config.method.sequence.frames
        self.energy = objectives.energy_fn(config.method.loss.energy)
        self.seq_encoders = [
            SequenceEncoder(lv.width, lv.depth, lv.num_heads, m.mlp_ratio) for lv in self.levels
        ]
        first_input = m.width * config.method.level1.pool_grid**2  # level 1's pooled tokens
        self.input_widths = [first_input, *(lv.width for lv in self.levels)][: len(self.levels)]
        self.recall_heads = [
            StepPredictor(width_in, lv.recall, lv.predictor_hidden, 1) if lv.recall else None
            for lv, width_in in zip(self.levels, self.input_widths, strict=True)
        ]
        self.step_predictors = [
            StepPredictor(lv.width, lv.horizons, lv.predictor_hidden, lv.predictor_depth)
            for lv in self.levels
        ]
        n = self.tokens_per_frame
        self.ctx_idx = jnp.arange(self.context_frames * n, dtype=jnp.int32)[None]
        self.tgt_idx = ((self.context_frames - 1 + self.horizon) * n + jnp.arange(n))[None, None]

    # ------------------------------------------------------------------------- level 1
    def frame_tokens(self, enc_params, frames: jax.Array) -> jax.Array:
        """[b, T, H, W, ch] → [b, T, n, width] float32, every frame encoded on its own."""
        b, t = frames.shape[:2]
        flat = frames.reshape(b * t, *frames.shape[2:])
        tokens, _ = self.encoder.apply({"params": enc_params}, flat)
        return tokens.astype(jnp.float32).reshape(b, t, self.tokens_per_frame, -1)

    def frame_embedding(self, tokens: jax.Array) -> jax.Array:
        """[b, T, n, width] → what level 2 reads per frame: [b, T, G²·width], the tokens
        averaged over G × G regions of the grid (``level1.pool_grid``; 1 = the whole frame)."""
        g = self.config.method.level1.pool_grid
        if g == 1:
            return tokens.mean(2)
        b, t = tokens.shape[:2]
        return objectives.region_means(tokens, self.grid, g).reshape(b, t, -1)

    def level1_predict(self, pred_params, context_tokens, ctx_idx=None):
        """context [N, C·n, width] (LayerNorm'd tokens of C frames) → [N, n, width]: the tokens
        of the frame ``horizon`` after the last context frame. ``ctx_idx`` [N, K] places a
        context that is not all C·n tokens (a masked one)."""
        b = context_tokens.shape[0]
        if ctx_idx is None:
            ctx_idx = jnp.broadcast_to(self.ctx_idx, (b, self.ctx_idx.shape[1]))
        tgt_idx = jnp.broadcast_to(self.tgt_idx, (b, 1, self.tokens_per_frame))
        out = self.predictor.apply({"params": pred_params}, context_tokens, ctx_idx, tgt_idx)
        return out[:, 0].astype(jnp.float32)

    def train_windows(self, key) -> tuple[jax.Array, jax.Array]:
        """([W, C] context frames, [W] target frame) of the windows a step trains on: all of
        them, or ``level1.windows`` drawn at random with ``key`` (the same for the batch)."""
        ctx, tgt = level1_windows(self.frames, self.context_frames, self.horizon)
        k = self.config.method.level1.windows
        if 0 < k < len(tgt):
            pick = jax.random.permutation(key, len(tgt))[:k]
            return jnp.asarray(ctx)[pick], jnp.asarray(tgt)[pick]
        return jnp.asarray(ctx), jnp.asarray(tgt)

    def level1_pairs(self, online_tokens, target_tokens, ctx, tgt):
        """(s_x [b·W, C·n, width], s_y [b·W, n, width]) for the windows (``ctx``, ``tgt``) of
        the sequence. The context is LayerNorm'd like the targets, so a prediction can be fed
        back in as context (rolling level 1 forward)."""
        b, _, n, d = online_tokens.shape
        sx = objectives.normalize_targets(online_tokens)[:, ctx]  # [b, W, C, n, d]
        sy = target_tokens[:, tgt]  # [b, W, n, d]
        return sx.reshape(-1, ctx.shape[1] * n, d), sy.reshape(-1, n, d)

    def masked_context_energy(self, enc_params, pred_params, frames, ctx, sy, key):
        """The level-1 energy from a masked context (``level1.mask_ratio``): for each window,
        the same random ``mask_ratio`` of the grid is hidden in all C context frames (a tube,
        as VideoMAE / V-JEPA), the encoder sees only the visible tokens, and the predictor
        must still give the whole next frame: the hidden part of a digit has to be inferred
        from the visible part. Token counts are static."""
        b, n = frames.shape[0], self.tokens_per_frame
        w, c = ctx.shape
        kept = n - int(round(self.config.method.level1.mask_ratio * n))
        noise = jax.random.uniform(key, (b * w, n))
        keep = jnp.sort(jnp.argsort(noise, axis=-1)[:, :kept], axis=-1)  # [b·W, kept]
        clips = frames[:, ctx].reshape(b * w * c, *frames.shape[2:])
        tokens, _ = self.encoder.apply({"params": enc_params}, clips, jnp.repeat(keep, c, axis=0))
        sx = objectives.normalize_targets(tokens.astype(jnp.float32))
        sx = sx.reshape(b * w, c * kept, -1)
        ctx_idx = (jnp.arange(c)[None, :, None] * n + keep[:, None, :]).reshape(b * w, -1)
        return self.energy(self.level1_predict(pred_params, sx, ctx_idx=ctx_idx), sy).mean()

    def views_terms(self, params, frames, key):
        """Level 1's identity term (``frame_views``): ``level1.views`` warped frames of each
        sequence, encoded by the online encoder, pooled and projected, must agree; SIGReg on
        each view's batch. Returns (invariance, sigreg)."""
        l1 = self.config.method.level1
        k_pick, k_warp, k_sig = jax.random.split(key, 3)
        views = frame_views.sample_views(frames, l1.views, k_pick)  # [b, V, H, W, ch]
        b, v = views.shape[:2]
        flat = views.reshape(b * v, *views.shape[2:]).astype(jnp.float32)
        flat = frame_views.augment(flat, k_warp, l1.views_rotate, l1.views_scale, l1.views_dilate)
        tokens, _ = self.encoder.apply({"params": params["encoder"]}, flat)
        pooled = tokens.astype(jnp.float32).mean(1)
        z = self.views_projector.apply({"params": params["views_projector"]}, pooled)
        z = z.astype(jnp.float32).reshape(b, v, -1)
        return frame_views.invariance_and_sigreg(z, k_sig, self.config.method.loss.sigreg_slices)

    # -------------------------------------------------------------------- upper levels
    def encode_level(self, params, k: int, inputs: jax.Array) -> jax.Array:
        """Level k ≥ 2's states from the level below's per-step embeddings [b, T_{k-1}, d]."""
        pooled = pool_windows(inputs, self.levels[k - 2].window)
        encoder_params = params["levels"][f"level{k}"]["encoder"]
        states = self.seq_encoders[k - 2].apply({"params": encoder_params}, pooled)
        return states.astype(jnp.float32)

    def embeddings(self, params, frames, level1_params):
        """Per-level, per-step embeddings of whole sequences, for probes and plots:
        [level-1 pooled tokens [b, T, d1] of the encoder ``level1_params`` (the one the probes
        read), level-2 states [b, T_2, d2], …]. Upper levels read the online level-1 encoder,
        as in training."""
        out = [self.frame_tokens(level1_params, frames).mean(2)]
        below = self.frame_embedding(self.frame_tokens(params["encoder"], frames))
        for k in range(2, num_levels(self.config) + 1):
            below = self.encode_level(params, k, below)
            out.append(below)
        return out

    # ---------------------------------------------------------------------------- loss
    def loss_fn(self, params, target_params, batch, step=0):
        """Σ_k weight_k · (level k's energy + its anti-collapse terms); aux has every level's
        parts under ``level{k}/…``. In greedy mode the frozen levels' terms are not computed:
        their gradients would only be zeroed by the optimizer (``level_update_mask``), and
        their outputs reach the levels above as stop-gradient inputs either way."""
        config, h = self.config, self.config.method
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
        cross = h.joint_weight if h.mode == "joint" else 0.0
        frozen = h.frozen_levels if h.mode == "greedy" else 0
        with nn.logical_axis_rules(sharding.rules_of(config)):
            frames = batch["image"]  # [b, T, H, W, ch]
            online = self.frame_tokens(params["encoder"], frames)
            loss, aux = jnp.zeros((), jnp.float32), {}
            if frozen < 1:
                if config.method.loss.target_encoder == "online":
                    target = objectives.normalize_targets(online)
                else:
                    target = jax.lax.stop_gradient(
                        objectives.normalize_targets(self.frame_tokens(target_params, frames))
                    )
                loss1, aux1 = self.level1_loss(params, online, target, frames, key)
                aux.update({f"level1/{k}": v for k, v in aux1.items()})
                aux["target_std"] = jnp.std(target.mean(2).reshape(-1, target.shape[-1]), 0).mean()
                loss = h.level1.weight * loss1
            below = self.frame_embedding(online)  # what level 2 reads of each frame
            for k in range(2, num_levels(config) + 1):
                level = self.levels[k - 2]
                states = self.encode_level(params, k, scale_gradient(below, cross))
                if k > frozen:  # the frozen levels are only run forward
                    # What the encoder read, for the recall term only.
                    inputs = pool_windows(below, level.window) if level.recall else None
                    lk, auxk = self.upper_level_loss(params, k, states, inputs)
                    aux.update({f"level{k}/{name}": v for name, v in auxk.items()})
                    loss = loss + level.weight * lk
                below = states
        return loss, aux

    def level1_loss(self, params, online, target, frames, key):
        """Level 1's energy over its (context frames → next frame) windows, the optional
        masked-context term and the ``method.loss`` regularizers on its tokens."""
        lc, l1 = self.config.method.loss, self.config.method.level1
        ctx, tgt = self.train_windows(jax.random.fold_in(key, 2))
        sx, sy = self.level1_pairs(online, target, ctx, tgt)
        loss1 = self.energy(self.level1_predict(params["predictor"], sx), sy).mean(-1).mean()
        aux1 = {"energy": loss1}
        if l1.mask_ratio:
            aux1["masked_energy"] = self.masked_context_energy(
                params["encoder"], params["predictor"], frames, ctx, sy, jax.random.fold_in(key, 4)
            )
            loss1 = loss1 + l1.mask_weight * aux1["masked_energy"]
        if l1.views_weight:
            inv, sig = self.views_terms(params, frames, jax.random.fold_in(key, 6))
            aux1["views_invariance"], aux1["views_sigreg"] = inv, sig
            lam = l1.views_sigreg  # LeJEPA's trade-off: (1 − λ) · invariance + λ · SIGReg
            loss1 = loss1 + l1.views_weight * ((1.0 - lam) * inv + lam * sig)
        tokens = online.reshape(-1, *online.shape[2:])  # [b·T, tokens, width]
        weighted, terms = objectives.regularizer_terms(tokens, lc, jax.random.fold_in(key, 1))
        loss1 = loss1 + weighted
        return loss1, {**aux1, **terms, "loss": loss1}

    def upper_level_loss(self, params, k: int, states, inputs=None):
        """Level k ≥ 2's energy of predicting its own (stop-gradient) ``states`` ``horizons``
        steps ahead, the recall energy of reading its ``inputs`` [b, T_k, d_in] back (when
        ``recall`` is set), plus its own VICReg terms on the states."""
        level = self.levels[k - 2]
        level_params = params["levels"][f"level{k}"]
        pred = self.step_predictors[k - 2].apply({"params": level_params["predictor"]}, states)
        lk = _masked_energy(self.energy, pred, shifted_targets(states, level.horizons)).mean()
        auxk = {"energy": lk}
        if level.recall:
            recalled = self.recall_heads[k - 2].apply({"params": level_params["recall"]}, states)
            past = shifted_targets(inputs, tuple(-r for r in level.recall))
            auxk["recall_energy"] = _masked_energy(self.energy, recalled, past).mean()
            lk = lk + level.recall_weight * auxk["recall_energy"]
        flat = states.reshape(-1, states.shape[-1])
        if level.vicreg_var:
            auxk["vicreg_var"] = objectives.vicreg_variance(flat, level.vicreg_gamma)
            lk = lk + level.vicreg_var * auxk["vicreg_var"]
        if level.vicreg_cov:
            auxk["vicreg_cov"] = objectives.vicreg_covariance(flat)
            lk = lk + level.vicreg_cov * auxk["vicreg_cov"]
        auxk["loss"] = lk
        auxk["state_std"] = objectives.feature_std(flat)
        return lk, auxk

    # -------------------------------------------------------------------------- params
    def init_params(self, rng) -> dict:
        """Boxed (logically partitioned) params of every level."""
        config, m = self.config, self.config.model
        keys = jax.random.split(rng, 4 + 3 * len(self.levels))
        images = jnp.zeros((1, m.image_size, m.image_size, m.channels), jnp.float32)
        n = self.tokens_per_frame
        context = jnp.zeros((1, self.context_frames * n, m.width), jnp.float32)
        params = {
            "encoder": self.encoder.init(keys[0], images)["params"],
            "predictor": self.predictor.init(
                keys[1], context, self.ctx_idx, jnp.zeros((1, 1, n), jnp.int32)
            )["params"],
        }
        if config.method.level1.views_weight:
            params["views_projector"] = self.views_projector.init(
                keys[3], jnp.zeros((1, m.width), jnp.float32)
            )["params"]
        levels, steps = {}, self.frames
        for i, level in enumerate(self.levels):
            kk = keys[4 + 3 * i : 7 + 3 * i]
            steps //= level.window
            x = jnp.zeros((1, steps, self.input_widths[i]), jnp.float32)  # the pooled input
            s = jnp.zeros((1, steps, level.width), jnp.float32)
            entry = {
                "encoder": self.seq_encoders[i].init(kk[0], x)["params"],
                "predictor": self.step_predictors[i].init(kk[1], s)["params"],
            }
            if level.recall:
                recall_key = jax.random.fold_in(kk[1], 1)
                entry["recall"] = self.recall_heads[i].init(recall_key, s)["params"]
            levels[f"level{i + 2}"] = entry
        if levels:
            params["levels"] = levels
        return params
