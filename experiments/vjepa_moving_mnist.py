"""V-JEPA on stochastic Moving MNIST: the masked objective on clips.

A tubelet ViT (V-JEPA's video encoder) reads 8-frame windows of the 64 × 64 videos as 2-frame
× 16 × 16-px tubelets: a (4, 4, 4) token grid. Each step draws V-JEPA's two tube-mask
generators (8 short-range blocks of 15 % of the frame, 2 long-range blocks of 70 %, both over
every frame); for each, the context encoder sees the unmasked tubelets and the predictor
predicts the EMA target encoder's LayerNorm'd tokens of the masked ones; the loss is the mean
of the two energies.

  jepa-train --config experiments/vjepa_moving_mnist.py --workdir /tmp/vjepa
  jepa-train --config experiments/vjepa_moving_mnist.py:steps=20,data_dir=/tmp/tfds \\
      --workdir /tmp/vjepa_smoke

Args (``:key=value,...``): ``steps``, ``digits`` (the SM-MNIST config: ``1``, ``2`` or ``1-2``),
``data_dir``. Only training is wired for video encoders so far: watch the health monitor's
feature std / rank in metrics.jsonl (the probes read images).
"""

from jepa import config as config_lib
from jepa import methods, presets


def get_config(arg=None):
    args = config_lib.parse_arg(arg, steps=2000, digits="1", data_dir="")
    c = methods.with_method(config_lib.base_config(), "masked")
    presets.smmnist_video(
        c, digits=args.digits, data_dir=args.data_dir, steps=args.steps, batch_size=32
    )
    c.model.variant = "vjepa-smmnist"
    c.model.patch_size = 16
    c.model.num_frames = 8
    c.model.tubelet_size = 2
    c.model.width = 64
    c.model.depth = 3

    # V-JEPA's generators (method.mask.tube's defaults), token counts from the (4, 4, 4) grid.
    c.method.mask.kind = "tube"

    c.health_every = 250
    return config_lib.finalize(c)
