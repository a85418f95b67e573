"""A video JEPA with a latent variable on stochastic Moving MNIST.

Two context frames of 64 × 64 (one digit by default) predict the target encoder's tokens of
the frame 3 steps after the last one. When a digit hits a wall in between, it leaves in a
random new direction: the future is multimodal, and a predictor without z can only predict
the average.

  jepa-train --config experiments/smmnist_latent.py:z=discrete --workdir /tmp/smm_discrete
  jepa-train --config experiments/smmnist_latent.py:z=none --workdir /tmp/smm_none
  jepa-eval --workdir /tmp/smm_discrete --protocol energy   # F vs E, by bounce; PNG

Args (``:key=value,...``): ``z`` = none | discrete | continuous, ``steps``, ``codes`` (K),
``data_dir``, ``digits`` (the builder config: 1, 2 or 1-2), ``blur`` (``model.patch_blur``),
``target_grid`` (``method.loss.target_grid``). Every run also trains a z-free reference
predictor on the same (stop-gradient) embeddings, so min_z E and the energy without z are
compared in one representation space.
"""

from jepa import config as config_lib
from jepa import methods, presets


def get_config(arg=None):
    args = config_lib.parse_arg(
        arg, z="discrete", steps=3000, codes=4, data_dir="", target_grid=0, digits="1", blur=5.0
    )
    c = methods.with_method(config_lib.base_config(), "future")
    presets.smmnist_video(
        c, digits=args.digits, data_dir=args.data_dir, steps=args.steps, batch_size=32
    )
    c.model.variant = "smmnist"
    c.model.patch_size = 16  # a 4 × 4 grid per frame; a digit covers about 2 × 2 patches
    c.model.width = 64
    c.model.depth = 2
    # A Gaussian low-pass (std 5 px) before the 16-px patches: without it every token changes
    # completely when the digit moves a few pixels, the z-free predictor learns no motion, and
    # z only quantizes what it misses everywhere (docs/results/latent.md).
    c.model.patch_blur = args.blur

    c.method.clip.context_frames = 2  # two frames: position and velocity are visible
    c.method.clip.horizon = 3

    z = c.method.latent
    z.kind = args.z
    z.num_codes = args.codes
    z.dim = 8
    # Two thirds of the clips have no bounce: a usage term at full weight would force each code
    # to win a quarter of them, and no code could stand for "keeps going straight".
    z.usage_weight = 0.1
    z.reference = True

    # 0: the energy compares every target token; G: G × G region means of them (1 = the frame's
    # mean embedding). Measured on SM-MNIST, neither gives a space in which the z-free
    # predictor learns the motion in 2,500 CPU steps; the low-pass above does.
    loss = c.method.loss
    loss.target_grid = args.target_grid
    loss.energy = "l2"  # squared distance: the energy a mode-averaging predictor pays most
    # The EMA target alone drifts towards the empty background (target std 0.069 → 0.033 and
    # the energy to 0.02 in 350 steps: every frame looks alike); VICReg on the context tokens
    # keeps them informative (RankMe 4.9 → 10.4 over 500 steps, std rising).
    loss.regularize = "tokens"
    loss.vicreg_var = 1.0
    loss.vicreg_cov = 0.04

    c.eval.weights = "target"
    c.health_every = 100
    return config_lib.finalize(c)
