"""Settings that several experiments share, as functions that fill in a config (the core of
``base_config()`` and the method's section ``method``).

Each experiment file keeps what makes it itself (objective, encoder, masks, losses); what is
the same for every run on a dataset lives here once.
"""

from __future__ import annotations


def smmnist_video(c, *, digits: str, data_dir: str, steps: int, batch_size: int) -> None:
    """Stochastic Moving MNIST (64 × 64 one-channel frames, ``digits`` = its builder config):
    the splits, a 64-wide 2-block predictor, the fan-in patch embedding, and the short-run
    AdamW schedule (warm-up 100 steps from 1e-4 to 1e-3, cosine to 1e-5, weight decay 0.05)
    that the SM-MNIST experiments (V-JEPA, latent z, hierarchy) were tuned with."""
    m = c.model
    m.image_size, m.channels = 64, 1
    m.num_heads = 4
    m.patch_embed_init = "fan_in"  # see experiments/mnist_ijepa.py
    p = c.method.predictor
    p.width, p.depth, p.num_heads = 64, 2, 4

    d = c.data
    d.dataset = f"stochastic_moving_mnist/{digits}" if digits else "stochastic_moving_mnist"
    d.data_dir = data_dir
    d.train_split, d.test_split = "train", "test"

    c.batch_size = batch_size
    c.total_steps = steps
    o = c.optim
    o.warmup_steps, o.lr, o.start_lr, o.final_lr = 100, 1e-3, 1e-4, 1e-5
    o.weight_decay = o.final_weight_decay = 0.05
    c.log_every = 50
    c.checkpoint_every = 500
