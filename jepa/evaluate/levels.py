"""Per-level evaluation of a hierarchical JEPA (``jepa-eval --level N``).

On the labelled sequences of a video dataset (stochastic Moving MNIST: ``digits``,
``position``, ``velocity`` per frame), with every encoder frozen:

- **identity** (level 1): linear-probe top-1 of the digit from one frame's embedding;
- **regressions** (any level): ridge regression, R² on the test split, of the digit's position,
  its velocity (the last displacement, ``position[t] − position[t−1]``, which the frames up to
  t show) and its position ``k`` frames ahead; a level-k step is labelled by the last frame of
  its window. Level 1 sees one frame, so its velocity R² is the baseline the upper levels must
  beat;
- **long horizon** (levels ≥ 2): the prediction error at every horizon of the level, measured in
  one common space — level 1's view of the true future frame (its LayerNorm'd target tokens,
  averaged) — for (a) the level's own prediction mapped back by a ridge probe fitted on true
  (level state → level-1 embedding) pairs of the train split, (b) rolling the level-1 predictor
  forward one frame at a time, its predictions fed back as context, and (c) copying the last
  frame (no prediction at all);
- a PNG: for a few test sequences, the true future frames beside the nearest test frames (in
  the common space) of each level's predictions, at each horizon.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jepa import config as config_lib
from jepa import hierarchy, hub, methods, objectives, plots
from jepa import state as state_lib
from jepa.data import pipeline, sequences
from jepa.data.normalization import normalize_frames
from jepa.evaluate import linear_probe
from jepa.evaluate.features import batched
from jepa.evaluate.ridge import ridge_map, ridge_r2
from jepa.methods import hjepa

POSITION_AHEAD = (2, 4, 6, 8)  # frames ahead for the "future position" regression


# ----------------------------------------------------------------------------- regressions
def step_frames(config, level: int, steps: int) -> np.ndarray:
    """The frame that labels each step of ``level``: the last frame of the step's window."""
    f = hierarchy.frames_per_step(config)[level - 1]
    return (np.arange(steps) + 1) * f - 1


def regression_rows(features, labels, frames_of_step, min_frame: int = 1, ahead: int = 0):
    """(x [rows, d], y [rows, 2]) over every sequence and step whose labelled frame ``t`` has
    t ≥ min_frame and t + ahead inside the sequence; y = the first digit's label at t + ahead."""
    js = np.flatnonzero((frames_of_step >= min_frame) & (frames_of_step + ahead < labels.shape[1]))
    ts = frames_of_step[js]
    x = features[:, js].reshape(-1, features.shape[-1])
    y = labels[:, ts + ahead, 0].reshape(-1, labels.shape[-1])
    return x, y.astype(np.float64)


def observed_velocity(position: np.ndarray) -> np.ndarray:
    """[n, T, digits, 2] → the displacement that brought each digit to frame t (0 at t = 0)."""
    v = np.zeros_like(position, dtype=np.float64)
    v[:, 1:] = position[:, 1:] - position[:, :-1]
    return v


def identity_probe(config, train_x, train_digits, test_x, test_digits, every: int = 4) -> dict:
    """The digit-identity linear probe on level-1 per-frame embeddings [n, T, d] of sequences
    whose digit is ``*_digits`` [n]: frames 0, every, 2·every, … of each sequence (consecutive
    frames are near-duplicates), multinomial logistic regression solved to convergence on
    whitened features (``linear_probe.converged_linear_probe``; the held-out part of train
    is whole sequences). Not the SGD grid of the image probes: on these frame embeddings it
    stopped far from the optimum (a random width-256 encoder: 42 % after its 30 epochs, 49 %
    after 100, 79 % converged). Returns its dict (top1, val_top1, l2, grid)."""
    x_tr, x_te = train_x[:, ::every], test_x[:, ::every]
    return linear_probe.converged_linear_probe(
        x_tr.reshape(-1, x_tr.shape[-1]),
        np.repeat(train_digits, x_tr.shape[1]),
        x_te.reshape(-1, x_te.shape[-1]),
        np.repeat(test_digits, x_te.shape[1]),
        val_fraction=config.eval.val_fraction,
        groups=np.repeat(np.arange(len(train_x)), x_tr.shape[1]),
        seed=config.seed,
    )


# ------------------------------------------------------------------------------- features
def compute_embeddings(
    model: hierarchy.Hierarchy, params, target, frames_u8, batch_size=32, level1_params=None
):
    """(per-level embeddings [[n, T_k, d_k]], common space [n, T, d1], LayerNorm'd online
    tokens [n, T, tokens, d1]) of uint8 sequences [n, T, H, W, C]. Level 1's embedding is
    read from ``level1_params`` (default: the target encoder); the common space is always the
    target encoder's, what level 1's predictor is trained to predict."""
    level1_params = target if level1_params is None else level1_params
    config = model.config
    mean, std = tuple(config.data.mean) or None, tuple(config.data.std) or None

    @jax.jit
    def run(frames):
        levels = model.embeddings(params, frames, level1_params)
        common = objectives.normalize_targets(model.frame_tokens(target, frames)).mean(2)
        online = objectives.normalize_targets(model.frame_tokens(params["encoder"], frames))
        return levels, common, online

    return batched(lambda f: run(normalize_frames(f, mean, std)), frames_u8, size=batch_size)


def rollout_level1(model: hierarchy.Hierarchy, params, online_tokens, horizons):
    """Roll the level-1 predictor forward from every start frame t (context frames t−C+1 … t):
    each prediction becomes the newest context frame. Returns {h: [n, T, d1]}: the mean over
    tokens of the prediction for frame t + h (NaN where t + h or the context leaves the
    sequence)."""
    c, horizon = model.context_frames, model.horizon
    if horizon != 1:
        raise ValueError("rolling level 1 forward needs method.level1.horizon = 1")
    n, t_len, tokens, d = online_tokens.shape
    hmax = max(horizons)

    @jax.jit
    def roll(context):  # [m, C, tokens, d] → [hmax, m, d]
        def body(ctx, _):
            pred = model.level1_predict(params["predictor"], ctx.reshape(len(ctx), -1, d))
            ctx = jnp.concatenate([ctx[:, 1:], pred[:, None]], 1)
            return ctx, pred.mean(1)

        return jax.lax.scan(body, context, None, length=hmax)[1]

    out = {h: np.full((n, t_len, d), np.nan, np.float32) for h in horizons}
    for t in range(c - 1, t_len - 1):
        context = online_tokens[:, t - c + 1 : t + 1]
        preds = batched(lambda x: np.asarray(roll(x)).transpose(1, 0, 2), context)
        for h in horizons:
            if t + h < t_len:
                out[h][:, t] = preds[:, h - 1]
    return out


# ------------------------------------------------------------------------------ the report
def _mse(a, b) -> float:
    """Mean squared error per dimension over the rows where both are defined."""
    ok = ~(np.isnan(a).any(-1) | np.isnan(b).any(-1))
    return float(((a[ok] - b[ok]) ** 2).mean())


def prediction_space_map(config, level, levels_tr, common_tr):
    """The map from level ``level``'s predictions to the common space: a ridge probe fitted on
    true (state → level-1 view of the step's last frame) pairs of the train split: a level
    predicts its own states."""
    space_tr = levels_tr[level - 1]
    frames_tr = step_frames(config, level, space_tr.shape[1])
    return ridge_map(
        space_tr.reshape(-1, space_tr.shape[-1]),
        common_tr[:, frames_tr].reshape(-1, common_tr.shape[-1]),
    )


def long_horizon(
    config, model, params, level, levels_tr, common_tr, levels_te, common_te, online_te
):
    """{horizon in frames: errors of level ``level``, the level-1 rollout and copying the last
    frame}, all in the common space, over the same start frames; plus what the plot needs."""
    f = hierarchy.frames_per_step(config)[level - 1]
    spec = model.levels[level - 2]
    t_len = common_te.shape[1]
    states_te = levels_te[level - 1]
    to_common = prediction_space_map(config, level, levels_tr, common_tr)
    # The level's own predictions from every step: [n, horizons, T_k, d_k].
    predictor = model.step_predictors[level - 2]
    p = params["levels"][f"level{level}"]["predictor"]
    preds = batched(jax.jit(lambda s: predictor.apply({"params": p}, s)), states_te)
    frames_te = step_frames(config, level, states_te.shape[1])
    horizons = [h * f for h in spec.horizons]
    rolled = rollout_level1(model, params, online_te, horizons)
    out, mapped_all = {}, {}
    for i, hf in enumerate(horizons):
        js = np.flatnonzero((frames_te >= model.context_frames - 1) & (frames_te + hf < t_len))
        ts = frames_te[js]
        pred = preds[:, i, js]  # [n, s, d_k]
        mapped = to_common(pred.reshape(-1, pred.shape[-1])).reshape(*pred.shape[:2], -1)
        truth = common_te[:, ts + hf]
        errors = {
            f"level{level}": _mse(mapped, truth),
            "level1_rollout": _mse(rolled[hf][:, ts], truth),
            "copy_last_frame": _mse(common_te[:, ts], truth),
            "variance": float(truth.reshape(-1, truth.shape[-1]).var(0).mean()),
        }
        out[str(hf)] = {k: round(v, 5) for k, v in errors.items()}
        mapped_all[hf] = (ts, mapped)
    return out, mapped_all, rolled


def plot_levels(path, frames_u8, common_te, level, mapped_all, rolled, num_sequences: int = 3):
    """Rows per sequence: the true frames at t + h, the nearest test frames to the level-1
    rollout and to level ``level``'s mapped predictions; columns: horizons (h frames), each from
    the first start frame t that reaches it."""
    n, t_len = common_te.shape[:2]
    bank = common_te.reshape(n * t_len, -1)
    images = frames_u8.reshape(n * t_len, *frames_u8.shape[2:])[..., 0]

    def nearest(v):
        return images[int(np.argmin(((bank - v) ** 2).sum(-1)))]

    columns = [(int(mapped_all[hf][0][0]), hf) for hf in sorted(mapped_all)]  # (t, h)
    rows, labels = [], []
    for s in range(num_sequences):
        rows.append([frames_u8[s, t + hf, ..., 0] for t, hf in columns])
        rows.append([nearest(rolled[hf][s, t]) for t, hf in columns])
        rows.append([nearest(mapped_all[hf][1][s, 0]) for _, hf in columns])
        labels += [f"seq {s}\n{name}" for name in ("true", "level 1 rolled", f"level {level}")]
    titles = [f"t={t}+{hf}" for t, hf in columns]
    suptitle = "true future frames vs nearest frames to each level's prediction"
    plots.image_grid(path, rows, titles, suptitle, labels, vmin=0, vmax=255)


def evaluate(
    workdir: str,
    step: int | None,
    level: int,
    overrides: dict | None = None,
    png: bool = True,
) -> dict:
    """The per-level report of one checkpoint (module docstring); a PNG for levels ≥ 2."""
    t0 = time.perf_counter()
    config, step, params, target = hub.load_model_params(workdir, step)
    config_lib.apply_overrides(config, overrides or {})
    if methods.get(config.objective) is not hjepa.METHOD:
        raise ValueError(
            f"--level needs a hierarchy run; {workdir} has objective={config.objective!r}"
        )
    if not 1 <= level <= hierarchy.num_levels(config):
        raise ValueError(f"--level={level}; this run has levels 1 … {hierarchy.num_levels(config)}")
    model = hierarchy.Hierarchy(config)
    data_dir = config.data.data_dir or None
    load = functools.partial(pipeline.load_data_source, config.data.dataset, data_dir=data_dir)
    train = sequences.load_sequences(load(split=config.data.train_split))
    test = sequences.load_sequences(load(split=config.data.test_split))
    # Level 1's probes read the encoder eval.weights names: "context" for a level 1 shaped by
    # its views term alone (LeJEPA has no EMA teacher; it is also what level 2 reads).
    config.eval.weights = methods.eval_weights(config)
    probed = state_lib.select_encoder(config.eval.weights, params, target)
    embed = functools.partial(compute_embeddings, model, params, target, level1_params=probed)
    levels_tr, common_tr, _ = embed(train["frames"])
    levels_te, common_te, online_te = embed(test["frames"])

    def regressions(k):
        feats_tr, feats_te = levels_tr[k - 1], levels_te[k - 1]
        fs = step_frames(config, k, feats_tr.shape[1])

        def r2(labels_tr, labels_te, min_frame, ahead=0):
            fit = regression_rows(feats_tr, labels_tr, fs, min_frame, ahead)
            held_out = regression_rows(feats_te, labels_te, fs, min_frame, ahead)
            return round(ridge_r2(*fit, *held_out)["r2"], 4)

        pos_tr, pos_te = train["position"], test["position"]
        return {
            "position_r2": r2(pos_tr, pos_te, 0),
            "velocity_r2": r2(observed_velocity(pos_tr), observed_velocity(pos_te), 1),
            "position_ahead_r2": {str(a): r2(pos_tr, pos_te, 0, a) for a in POSITION_AHEAD},
        }

    result = {"protocol": "levels", "level": level, "step": step, "dataset": config.data.dataset}
    result |= {"level1_weights": config.eval.weights, **regressions(level)}
    if level == 1:
        probe = identity_probe(
            config, levels_tr[0], train["digits"][:, 0], levels_te[0], test["digits"][:, 0]
        )
        result["top1"] = round(100 * float(probe["top1"]), 2)
        result["identity_probe"] = {k: probe[k] for k in ("l2", "val_top1")}
    else:
        result["level1"] = regressions(1)
        lh, mapped_all, rolled = long_horizon(
            config, model, params, level, levels_tr, common_tr, levels_te, common_te, online_te
        )
        result["long_horizon"] = lh
        if png:
            path = os.path.join(workdir, "eval", f"level{level}_predictions_step{step}.png")
            plot_levels(path, test["frames"], common_te, level, mapped_all, rolled)
            result["png"] = path
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result
