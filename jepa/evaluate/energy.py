"""Energies of true futures on held-out clips: does the latent variable z model uncertainty?

  jepa-eval --workdir DIR --protocol energy [--step N] [--config.eval.test_split=SPLIT]

For every clip of the test videos (every start t0), with the run's own target embedding s_y of
the true future frame:
  - F(x, y) = min_z E(x, y, z) of the run's predictor (``method.latent.kind``: exact min over the K
    codes, or gradient descent on z; for ``none`` simply E);
  - E_ref(x, y): the z-free reference predictor trained on the same, stop-gradient embeddings
    in the same run (``method.latent.reference``), so the two live in one representation space;
split by whether a digit bounces (takes a random new direction) between the last context frame
and the target. Reported: mean F, mean E_ref and their ratio per split, the reference's skill
over two predictors without dynamics — the mean s_y and the last context frame's s_y
(1 − E_ref / E_baseline: near 0 on clips without a bounce means it learned no dynamics in
this representation, and then z explains what it misses everywhere, not bounces), the
perplexity of the argmin code (discrete z), and ``DIR/eval/latent_modes.png``: for a few clips
with a bounce, the context, the true future, and the test frame whose embedding is nearest to
the prediction made with each code (or each prior sample of z) — the modes, where a person can
see them.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jepa import hub, methods, plots
from jepa.data import augment, pipeline
from jepa.data.builders import stochastic_moving_mnist as smm
from jepa.data.normalization import normalize_frames
from jepa.evaluate.features import batched
from jepa.methods import video


def test_clips(config, split: str):
    """(clips [n, C + 1, H, W, ch] normalized, uncertain [n] bool, (sequence, t0) [n, 2]) for
    every start of every sequence of ``split``."""
    d, c = config.data, config.method.clip
    source = pipeline.load_data_source(d.dataset, split, d.data_dir or None)
    mean, std = tuple(d.mean) or None, tuple(d.std) or None
    clips, flags, where = [], [], []
    for i in range(len(source)):
        record = source[i]
        frames = np.asarray(record["frames"])
        for t0 in range(len(frames) - c.context_frames - c.horizon + 1):
            clips.append(augment.make_clip(frames, t0, c.context_frames, c.horizon, mean, std))
            flags.append(
                augment.clip_is_uncertain(record["bounce"], t0, c.context_frames, c.horizon)
            )
            where.append((i, t0))
    return np.stack(clips), np.array(flags), np.array(where)


def _latent_model(config, params, target_params):
    """(the run's ``LatentJEPA`` around its target encoder, the params it takes)."""
    _, model_for = video.make_loss_and_model(config)
    return model_for(target_params), {"model": params, "latent": params.get("latent", {})}


def _reference_prediction(model, params, x):
    """The z-free reference predictor's s_y for the context frames ``x``."""
    return model.predict_fn({"predictor": params["reference"]}, model.encode_x(params, x), None)


def clip_energies(config, params, target_params, clips: np.ndarray):
    """Per clip: free energy F, the reference energy E_ref (NaN without a reference predictor),
    the minimizing code (−1 unless z is discrete), and {baseline: energy} of two predictors
    without dynamics: ``mean_target`` (every clip's s_y predicted by the mean s_y of all clips)
    and ``copy_last`` (by the s_y of the last context frame)."""
    model, full = _latent_model(config, params, target_params)
    context_frames = config.method.clip.context_frames

    @jax.jit
    def batch_energies(clip):
        x, y = clip[:, :context_frames], clip[:, context_frames]
        free, z = model.free_energy(full, x, y)
        code = z if config.method.latent.kind == "discrete" else jnp.full(free.shape, -1)
        sy = model.encode_y(params, y)
        if "reference" in params:
            ref = model.energy_fn(_reference_prediction(model, params, x), sy)
        else:
            ref = jnp.full(free.shape, jnp.nan)
        # A predictor that knows no dynamics: the last context frame's s_y, copied.
        copy = model.energy_fn(model.encode_y(params, clip[:, context_frames - 1]), sy)
        return free, ref, code, copy, sy

    free, ref, code, copy, sy = batched(batch_energies, clips)
    # The other: every clip's s_y predicted by the mean s_y over all clips.
    mean = model.energy_fn(jnp.broadcast_to(sy.mean(0), sy.shape), jnp.asarray(sy))
    return free, ref, code, {"mean_target": np.asarray(mean), "copy_last": copy}


def summarize(free, ref, uncertain, codes, num_codes: int, baselines=None) -> dict:
    """Per split (bounce / no bounce): mean F, mean E_ref, their ratio, and for each of
    ``baselines`` ({name: per-clip energy}) its mean ``{name}_energy`` and the reference's
    skill over it, ``skill_vs_{name}`` = 1 − E_ref / E_name (the module docstring says what a
    low one on clips without a bounce means)."""

    def split(mask):
        f, r = float(free[mask].mean()), float(ref[mask].mean())
        out = {"clips": int(mask.sum()), "free_energy": f, "reference_energy": r, "ratio": f / r}
        for name, energies in (baselines or {}).items():
            out[f"{name}_energy"] = b = float(energies[mask].mean())
            out[f"skill_vs_{name}"] = 1.0 - r / b
        return out

    out = {"bounce": split(uncertain), "no_bounce": split(~uncertain)}
    if (codes >= 0).all():
        freq = np.bincount(codes, minlength=num_codes) / len(codes)
        nz = freq[freq > 0]
        out["code_frequencies"] = [round(float(f), 4) for f in freq]
        out["perplexity"] = float(np.exp(-(nz * np.log(nz)).sum()))
    return out


def own_digit_bank(config, record, t0: int, stride: int = 2) -> np.ndarray | None:
    """For a record with one digit: that digit (cut from frame ``t0``) drawn at every position
    of a ``stride``-px grid, normalized like the clips ([P, H, W, 1]); None for other records.
    Nearest neighbours among these show *where* a prediction puts the digit, which nearest
    test frames (other digits, other shapes) blur with what it looks like."""
    digits = np.asarray(record["digits"])
    if (digits >= 0).sum() != 1:
        return None
    frame = np.asarray(record["frames"])[t0, ..., 0]
    x, y = np.asarray(record["position"])[t0, 0].astype(int)
    d = smm.DIGIT_SIZE
    sprite = frame[y : y + d, x : x + d]
    size = frame.shape[0]
    grid = np.arange(0, size - d + 1, stride)
    positions = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 1, 2)  # [P, 1, (x, y)]
    frames = smm.render_frames(sprite[None], np.array([0]), positions, size)
    return normalize_frames(frames, tuple(config.data.mean), tuple(config.data.std))


def plot_modes(
    config, params, target_params, clips, uncertain, path: str, num_clips: int = 4, banks=None
):
    """Context | true future | nearest frame to each z's prediction (and to the reference's)
    for ``num_clips`` clips with a bounce. ``banks(clip_index)`` → frames to search (e.g.
    ``own_digit_bank``), or None for every test clip's true future."""
    model, full = _latent_model(config, params, target_params)
    c = config.method.clip.context_frames
    embed = jax.jit(lambda y: model.encode_y(params, y).reshape(len(y), -1))

    @functools.cache
    def test_bank():  # the default: every clip's true future frame, embedded when first needed
        return clips[:, c], batched(embed, clips[:, c])

    picks = np.flatnonzero(uncertain)[:: max(1, uncertain.sum() // num_clips)][:num_clips]
    x = jnp.asarray(clips[picks, :c])
    spec = config.method.latent
    if spec.kind == "discrete":
        zs = jnp.broadcast_to(jnp.arange(spec.num_codes)[:, None], (spec.num_codes, len(picks)))
        preds = jax.vmap(lambda z: model.predict(full, x, z))(zs)
        labels = [f"code {k}" for k in range(spec.num_codes)]
    elif spec.kind == "continuous":
        preds = model.sample_predictions(full, x, jax.random.PRNGKey(0), 4)
        labels = [f"z ~ prior #{k}" for k in range(4)]
    else:
        preds = model.predict(full, x)[None]
        labels = ["prediction"]
    if "reference" in params:
        preds = jnp.concatenate([preds, _reference_prediction(model, params, x)[None]])
        labels.append("no z (reference)")
    flat = np.asarray(preds).reshape(len(preds), len(picks), -1)
    shown, own = [], 0
    for row, clip_i in enumerate(picks):
        frames = None if banks is None else banks(clip_i)
        own += frames is not None
        frames, bank = test_bank() if frames is None else (frames, batched(embed, frames))
        # squared distances [preds, bank] without materializing the differences
        dist = (flat[:, row] ** 2).sum(-1)[:, None] - 2 * flat[:, row] @ bank.T
        shown.append(frames[(dist + (bank**2).sum(-1)).argmin(-1)])
    rows = [[*clips[i, : c + 1, ..., 0], *shown[row][..., 0]] for row, i in enumerate(picks)]
    titles = [*(f"context t{t}" for t in range(c)), "true future", *labels]
    searched = "the clip's own digit drawn at every position" if own else "all test frames"
    suptitle = f"clips with a bounce; each prediction shown as the nearest of {searched}"
    return plots.image_grid(path, rows, titles, suptitle, cell=(1.6, 1.7))


def evaluate(workdir: str, step: int | None = None, split: str | None = None) -> dict:
    config, step, params, target = hub.load_model_params(workdir, step)
    if methods.get(config.objective) is not video.METHOD:
        raise ValueError(
            f"{workdir} was trained with objective={config.objective!r}, not {video.METHOD.name!r}"
        )
    split = split or config.data.test_split
    clips, uncertain, where = test_clips(config, split)
    free, ref, codes, baselines = clip_energies(config, params, target, clips)
    result = {"step": step, "latent": config.method.latent.kind, "dataset": config.data.dataset}
    result.update(summarize(free, ref, uncertain, codes, config.method.latent.num_codes, baselines))
    source = pipeline.load_data_source(config.data.dataset, split, config.data.data_dir or None)
    result["png"] = plot_modes(
        config,
        params,
        target,
        clips,
        uncertain,
        os.path.join(workdir, "eval", "latent_modes.png"),
        banks=lambda i: own_digit_bank(config, source[int(where[i, 0])], int(where[i, 1])),
    )
    return result
