"""I-JEPA on the bundled mnist5k (4,000 train / 1,000 test digits), sized for a 2-core CPU.

The demo's default: about 8 minutes of pretraining on a 2-core CPU, no download. What differs
from the ImageNet recipe, and why (measured on mnist5k, docs/results/mnist.md):
  * ``model.patch_embed_init="fan_in"``: 4×4 grayscale patches have 16 inputs; at the reference
    std 0.02 the tokens are almost pure position embedding, targets become predictable from
    position alone and the run collapses (feature std 0.005, mean cosine 0.9999 by step 250).
  * ``data.crop_scale=(0.8, 1.0)``: I-JEPA's 0.3–1.0 crops show a 28-px digit mostly as
    blown-up stroke fragments, unlike the whole digits the probe sees.
  * ``eval.pooling="flatten"``: a digit's class is in the layout of its strokes; average
    pooling the 7×7 tokens discards it (38% vs 88% top-1 on the same encoder).
  * a smaller ViT (width 96, depth 4) and predictor (48 × 2): more steps per minute.
"""

from jepa import config as config_lib
from jepa import methods


def get_config(arg=None):
    args = config_lib.parse_arg(arg, steps=1200, data_dir="")
    c = methods.with_method(config_lib.base_config(), "masked")
    c.model.variant = "mnist"
    c.model.image_size = 28
    c.model.channels = 1
    c.model.patch_size = 4  # 7 × 7 grid
    c.model.width = 96
    c.model.depth = 4
    c.model.num_heads = 3
    c.model.patch_embed_init = "fan_in"
    c.method.predictor.width = 48
    c.method.predictor.depth = 2
    c.method.predictor.num_heads = 3

    # Multi-block masks on the 7×7 grid: 4 target blocks of 0.15–0.2 of the grid (7–9 patches,
    # padded/trimmed to 8), a context of 16 patches from the 6×6 context block.
    mask = c.method.mask
    mask.num_targets = 4
    mask.context_tokens = 16
    mask.target_tokens = 8
    mask.min_keep = 4

    c.batch_size = 128
    c.total_steps = args.steps
    c.optim.warmup_steps = 100
    c.optim.lr = 1e-3
    c.optim.start_lr = 2e-4

    c.data.dataset = "mnist5k"
    c.data.data_dir = args.data_dir
    c.data.train_split = "train"
    c.data.test_split = "test"
    c.data.crop_scale = (0.8, 1.0)

    c.eval.pooling = "flatten"
    c.eval.probe_epochs = 15

    c.log_every = 25
    c.health_every = 200
    c.checkpoint_every = 400
    return config_lib.finalize(c)
