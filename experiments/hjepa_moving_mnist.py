"""Hierarchical JEPA on stochastic Moving MNIST: the recipe of docs/results/hjepa.md.

Level 1: the ViT (width 128, depth 3, a convolutional stem to 8-px cells: an 8 × 8 grid)
encodes every 64 × 64 frame; its predictor maps the tokens of 2 frames to the EMA target's
tokens of the next frame (short range, detailed), once from the whole context and once with
90 % of the grid hidden in both context frames, on 2 windows per sequence. The frames of a
sequence, warped (rotated, rescaled, thickened), are also views of one digit that must agree
(weight 3, 8 views): that term is there for the digit's identity. Level 2: a causal
transformer (width 256) over level 1's frames, each read as 4 × 4 region means, predicts its
own state 2, 4, 6 and 8 frames ahead and reads its inputs 0 … 3 steps back (long range,
abstract). Optional level 3 (``levels=3``): over pairs of level-2 steps, 2 and 4 of its steps
(4 and 8 frames) ahead.

  jepa-train --config experiments/hjepa_moving_mnist.py:levels=1 --workdir /tmp/hj1
  jepa-train --config experiments/hjepa_moving_mnist.py:levels=2,mode=greedy,init_from=/tmp/hj1 \\
      --workdir /tmp/hj2
  jepa-eval --workdir /tmp/hj2 --level 1   # digit identity (linear top-1), position R²
  jepa-eval --workdir /tmp/hj2 --level 2   # velocity R², position k frames ahead, long-horizon

Args (``:key=value,...``): ``levels`` (1, 2 or 3), ``mode`` (``joint`` | ``greedy``: level 1
is frozen), ``init_from`` (a workdir whose level 1 and its EMA target the run starts from:
``config.init``), ``steps``, ``batch`` (sequences per step), ``frames`` (frames per training
sequence, ``method.sequence.frames``), ``digits`` (the SM-MNIST config: ``1``, ``2`` or
``1-2``) and ``data_dir``. ``steps``, ``batch`` and ``frames`` at 0 take the recipe's values
for ``levels``: a level-1-only run 1,600 steps of 32 sequences of 8 frames (it needs no more
frames than its windows and views, and 8 nearly halve its step), a run with levels above
12,000 steps of 16 sequences of 20 frames (level 2 needs the long schedule).
"""

from jepa import config as config_lib
from jepa import methods, presets


def get_config(arg=None):
    args = config_lib.parse_arg(
        arg,
        levels=2,
        mode="joint",
        init_from="",
        steps=0,
        batch=0,
        frames=0,
        digits="1",
        data_dir="",
    )
    top = args.levels == 1  # level 1 alone: short sequences, big batches, a short schedule
    c = methods.with_method(config_lib.base_config(), "hierarchy")
    presets.smmnist_video(
        c,
        digits=args.digits,
        data_dir=args.data_dir,
        steps=args.steps or (1600 if top else 12000),
        batch_size=args.batch or (32 if top else 16),
    )
    c.model.variant = "hjepa-smmnist"
    c.model.patch_size = 8  # an 8 × 8 grid, a digit covers about 4 × 4 cells
    c.model.width = 128
    c.model.depth = 3
    # Convolutional features move with the image; a fixed patch grid turns a few pixels of
    # motion into different tokens (docs/results/hjepa.md, "Why these settings").
    c.model.stem = "conv"

    h = c.method
    h.sequence.frames = args.frames or (8 if top else 20)

    h.mode = args.mode
    h.frozen_levels = 1 if args.mode == "greedy" else 0
    h.joint_weight = 0.1
    # Level 1 (encoder, predictor, the views term's projector) and its EMA target encoder from
    # the trained run init_from; the levels above start fresh.
    c.init.path = args.init_from
    level1 = ("encoder", "predictor", "views_projector")
    c.init.take = (*(f"params/{name}" for name in level1), "target_params")
    l1 = h.level1
    l1.context_frames, l1.horizon, l1.windows = 2, 1, 2
    # The masked context makes level 1's position code and level 2's velocity code markedly
    # better.
    l1.mask_ratio = 0.9
    l1.pool_grid = 4  # level 2 reads 4 × 4 region means: where the digit is survives pooling
    l1.views_weight, l1.views = 3.0, 8
    # Small VICReg weights: the energy, not the variance term, must shape the states.
    upper = [
        dict(
            width=256,
            depth=2,
            num_heads=4,
            window=1,
            horizons=(2, 4, 6, 8),
            recall=(0, 1, 2, 3),
            recall_weight=1.0,
            vicreg_var=0.5,
            vicreg_cov=0.02,
        ),
        dict(
            width=64,
            depth=2,
            num_heads=4,
            window=2,
            horizons=(2, 4),
            vicreg_var=0.5,
            vicreg_cov=0.02,
        ),
    ]
    h.levels = tuple(upper[: args.levels - 1])

    # Level 1's anti-collapse: the EMA target, plus VICReg on each frame's mean token (the EMA
    # target alone drifts towards the black background on these mostly empty frames, see
    # smmnist_latent.py; on the pooled embedding, the background tokens need not vary). At a
    # quarter of the weights 1.0 / 0.04 it keeps more of the digit's identity
    # (docs/results/hjepa.md).
    h.loss.energy = "l2"
    h.loss.regularize = "pooled"
    h.loss.vicreg_var = 0.25
    h.loss.vicreg_cov = 0.01

    c.eval.weights = "context"  # level 1's probes read its online encoder
    c.health_every = 250
    return config_lib.finalize(c)
