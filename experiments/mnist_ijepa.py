"""I-JEPA on the bundled mnist5k (4,000 train / 1,000 test digits), tuned for a 2-core CPU.

The demo's default: pretrains in under 10 minutes on a laptop-class CPU with no download.
"""

from jepa import config as config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, steps=1500, data_dir="")
    c = config_lib.base_config()
    c.model.variant = "mnist"
    c.model.image_size = 28
    c.model.channels = 1
    c.model.patch_size = 4  # 7 × 7 grid
    c.model.width = 128
    c.model.depth = 4
    c.model.num_heads = 4
    c.model.predictor.width = 64
    c.model.predictor.depth = 2
    c.model.predictor.num_heads = 4

    c.mask.num_targets = 4
    c.mask.context_tokens = 16
    c.mask.target_tokens = 8
    c.mask.min_keep = 4

    c.batch_size = 128
    c.total_steps = args.steps
    c.optim.warmup_steps = 100
    c.optim.lr = 1e-3
    c.optim.start_lr = 2e-4

    c.data.dataset = "mnist5k"
    c.data.data_dir = args.data_dir
    c.data.train_split = "train"
    c.data.test_split = "test"
    c.data.crop_scale = (0.3, 1.0)

    c.log_every = 25
    c.health_every = 250
    c.checkpoint_every = 500
    return config_lib.finalize(c)
