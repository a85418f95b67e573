"""Multiview JEPA with SIGReg on a small natural-image dataset: LeJEPA's minimal recipe
(Balestriero & LeCun 2025, the repository's ``MINIMAL.md``: ViT-S/8 on Imagenette at 128 px,
90.7 % linear probe after 800 epochs, about 200 GPU-minutes), for a GPU and data you supply.

Matched: ViT-S/8 (width 384, depth 12, 6 heads) at 128 px; V = 4 views of each image, all at
128 px from random resized crops of scale 0.08–1.0 with horizontal flips, and every view
predicting the mean of the 4 (squared L2); SIGReg with 256 slices and λ = 0.02 (loss
0.98 · prediction + 0.02 · SIGReg); projector 2048-2048-16; batch 256, AdamW at LR 2e-3, weight
decay 0.05, a linear warm-up from 1 % of the LR over one epoch, then cosine down to 1e-3 (PyTorch's
``eta_min``, an absolute LR: half the peak), 800 epochs; ImageNet mean/std.
Not matched: LeJEPA's views also get colour jitter, grayscale, blur and solarization (this
pipeline crops and flips only); its probe reads a 512-d linear head on the class token, ours
the mean of the patch tokens (``eval.pooling=avg``, what ``jepa.load_encoder`` returns as
``pooled``) and is trained after pretraining, not online; its projector uses BatchNorm, ours
LayerNorm; its drop-path rate 0.1 (this ViT has none).

Data: TFDS ``imagenette/160px`` (train / validation), prepared by you (e.g.
``tfds build imagenette --config 160px --data_dir DIR`` where the download is allowed), or any
labelled TFDS image dataset (``dataset=cifar10``, ``stl10``, or your own from ``jepa-data``)
with ``test=`` its held-out split:

  jepa-train --config experiments/imagenette_sigreg_jepa.py:data_dir=DIR --workdir W
  jepa-eval --workdir W --protocol linear --baselines

``runlocal`` shrinks everything (a 32-px, 2-block ViT, batch 8, a few steps) to check a
dataset and the pipeline on a CPU.
"""

from jepa import config as config_lib
from jepa import methods


def get_config(arg=None):
    args = config_lib.parse_arg(
        arg,
        dataset="imagenette/160px",
        test="validation",
        data_dir="",
        res=128,
        epochs=800.0,
        steps=0,
        runlocal=False,
    )
    c = methods.with_method(config_lib.base_config(), "multiview")
    config_lib.apply_variant(c, "S/8")
    c.model.image_size = args.res
    c.model.channels = 3
    c.model.dtype = "bfloat16"
    c.method.projector.hidden = 2048
    c.method.projector.depth = 2
    c.method.projector.out = 16

    c.data.dataset = args.dataset
    c.data.data_dir = args.data_dir
    c.data.train_split = "train"
    c.data.test_split = args.test
    c.data.crop_scale = (0.08, 1.0)
    c.data.hflip = True
    c.data.worker_count = 8
    c.method.num_views = 4
    c.method.local_views = 0

    lam = 0.02
    loss = c.method.loss
    loss.energy = "l2"
    loss.view_weight = 1.0 - lam
    loss.sigreg = lam
    loss.sigreg_slices = 256

    c.batch_size = 256
    c.epochs = args.epochs
    c.total_steps = args.steps  # 0: from epochs and the dataset's size
    c.optim.lr = 2e-3
    c.optim.start_lr = 2e-5
    c.optim.final_lr = 1e-3
    c.optim.warmup_epochs = 1.0
    c.optim.weight_decay = 0.05
    c.optim.final_weight_decay = 0.05

    c.eval.pooling = "avg"  # the pooled embedding, as jepa.load_encoder returns it

    c.log_every = 50
    c.health_every = 1000
    c.checkpoint_every = 2000
    if args.runlocal:
        c.model.image_size = 32
        c.model.width, c.model.depth, c.model.num_heads = 32, 2, 2
        c.model.dtype = "float32"
        c.method.projector.hidden = 64
        c.batch_size = 8
        c.epochs = 0.0
        c.total_steps = args.steps or 2
        c.optim.warmup_epochs = 0.0
        c.optim.warmup_steps = 1
        c.data.worker_count = 0
        loss.sigreg_slices = 16
        c.eval.probe_epochs = 2
        c.log_every = 1
        c.health_every = c.checkpoint_every = c.total_steps
    return config_lib.finalize(c)
