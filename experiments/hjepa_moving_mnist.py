"""Hierarchical JEPA on stochastic Moving MNIST.

Level 1: the ViT encodes every 64 × 64 frame (8-px patches, an 8 × 8 grid); its predictor maps
the tokens of 2 frames to the EMA target's tokens of the next frame (short range, detailed),
once from the whole context and once with 90% of the grid hidden in both context frames
(``mask``: it makes level 1's position code and level 2's velocity code markedly better).
Level 2: a causal transformer over level 1's per-frame embeddings predicts its own state 2, 4,
6 and 8 frames ahead (long range, abstract). Optional level 3 (``levels=3``): over pairs of
level-2 steps, 2 and 4 of its steps (4 and 8 frames) ahead.

  jepa-train --config experiments/hjepa_moving_mnist.py --workdir /tmp/hjepa
  jepa-eval --workdir /tmp/hjepa --level 1   # digit identity (linear top-1), position R²
  jepa-eval --workdir /tmp/hjepa --level 2   # velocity R², position k frames ahead, long-horizon

Args (``:key=value,...``): ``levels`` (1, 2 or 3), ``steps``, ``mode`` (joint | greedy |
alternating), ``init_from`` (greedy: the workdir whose lower levels are loaded and frozen),
``digits`` (the SM-MNIST config: ``1``, ``2`` or ``1-2``), ``data_dir``, ``target`` (what the
upper levels predict: ``self`` | ``below``), ``mask`` (level 1's masked-context ratio, 0 = off),
``width`` / ``depth`` / ``patch`` (level 1's ViT), ``pool`` (level 2 reads each frame's tokens
averaged over pool × pool regions: 1 = the whole frame), ``horizons`` (level 2's, in frames,
dash-separated: ``2-4-6-8``), ``blur`` (std in px of the fixed low-pass before level 1's patches,
``model.patch_blur``), ``windows`` (level-1 windows per sequence and step), ``summary`` (weight of
level 1's summary-context term, ``hierarchy.level1.summary_weight``), ``tubelet`` (level 2
reads that many consecutive level-1 steps at once, ``hierarchy.levels[0].input_steps``),
``sigreg`` (SIGReg weight on the upper levels' states, beside their VICReg terms), ``width2``
(level 2's width), ``inpaint`` / ``inpaint_block`` (level 1's in-frame term: its weight and
block side, ``hierarchy.level1.inpaint_*``), ``stem`` (level 1's ``model.stem``: ``patch`` or
``conv``), ``views`` / ``num_views`` (level 1's identity term, frames of a sequence as warped
views: its weight and the views per sequence, ``hierarchy.level1.views_*``), ``batch``
(sequences per step), ``frames`` (frames per training sequence, ``data.sequence.frames``: 20; a
level-1-only run needs no more than its windows and views: 8 nearly halve its step at width 128),
``recall`` (level-2 steps back, dash-separated,
e.g. ``0-1-2-3``, whose inputs level 2's state must read back, ``hierarchy.levels[0].recall``;
empty = off), ``recall_weight`` and ``predict_grad`` (the scale of the gradient level 1's
prediction terms send into its encoder, ``hierarchy.level1.predict_grad``: 0 = the encoder is
shaped by the views and VICReg terms, the predictor learns the dynamics over it), ``vicreg``
(the scale of level 1's VICReg on the frame means: 1 = weights 1.0 / 0.04, 0 = off; the
recipe's level 1 uses 0.25) and ``weights`` (``eval.weights``: the level-1 encoder the probes read,
``target`` or ``context``).
"""

from jepa import config as config_lib
from jepa import presets


def get_config(arg=None):
    args = config_lib.parse_arg(
        arg,
        levels=2,
        steps=2000,
        mode="joint",
        init_from="",
        digits="1",
        data_dir="",
        target="self",
        mask=0.9,
        width=64,
        depth=3,
        patch=8,
        pool=1,
        horizons="2-4-6-8",
        blur=0.0,
        windows=6,
        summary=0.0,
        tubelet=1,
        sigreg=0.0,
        width2=64,
        recall="",
        recall_weight=1.0,
        inpaint=0.0,
        inpaint_block=4,
        stem="patch",
        views=0.0,
        num_views=4,
        batch=16,
        frames=20,
        predict_grad=1.0,
        vicreg=1.0,
        weights="target",
    )
    c = config_lib.base_config()
    # Sequences of 20 frames (``frames``): 16 of them are 320 frames per step.
    presets.smmnist_video(
        c, digits=args.digits, data_dir=args.data_dir, steps=args.steps, batch_size=args.batch
    )
    c.objective = "hierarchy"
    c.model.variant = "hjepa-smmnist"
    c.model.patch_size = args.patch  # 8: an 8 × 8 grid, a digit covers about 4 × 4 patches
    c.model.width = args.width
    c.model.depth = args.depth
    c.model.patch_blur = args.blur
    c.model.stem = args.stem

    c.data.sequence.frames = args.frames

    c.hierarchy.mode = args.mode
    c.hierarchy.init_from = args.init_from
    c.hierarchy.frozen_levels = 1 if args.mode == "greedy" else 0
    c.hierarchy.joint_weight = 0.1
    l1 = c.hierarchy.level1
    l1.context_frames, l1.horizon, l1.windows = 2, 1, args.windows
    l1.mask_ratio = args.mask
    l1.summary_weight = args.summary
    l1.pool_grid = args.pool
    l1.inpaint_weight, l1.inpaint_block = args.inpaint, args.inpaint_block
    l1.views_weight, l1.views = args.views, args.num_views
    l1.predict_grad = args.predict_grad
    # Small VICReg weights: the energy, not the variance term, must shape the states.
    upper = [
        dict(
            width=args.width2,
            depth=2,
            num_heads=4,
            window=1,
            horizons=tuple(int(h) for h in args.horizons.split("-")),
            input_steps=args.tubelet,
            recall=tuple(int(r) for r in str(args.recall).split("-") if r != ""),
            recall_weight=args.recall_weight,
            vicreg_var=0.5,
            vicreg_cov=0.02,
            sigreg=args.sigreg,
            target=args.target,
        ),
        dict(
            width=64,
            depth=2,
            num_heads=4,
            window=2,
            horizons=(2, 4),
            vicreg_var=0.5,
            vicreg_cov=0.02,
            sigreg=args.sigreg,
            target=args.target,
        ),
    ]
    c.hierarchy.levels = tuple(upper[: args.levels - 1])

    # Level 1's anti-collapse: the EMA target, plus VICReg on each frame's mean token (the EMA
    # target alone drifts towards the black background on these mostly empty frames, see
    # smmnist_latent.py; on the pooled embedding, the background tokens need not vary).
    c.loss.energy = "l2"
    c.loss.regularize = "pooled"
    # A smaller scale (``vicreg``) keeps more of the digit's identity (docs/results/hjepa.md).
    c.loss.vicreg_var = 1.0 * args.vicreg
    c.loss.vicreg_cov = 0.04 * args.vicreg

    c.eval.weights = args.weights
    c.health_every = 250
    return config_lib.finalize(c)
