"""I-JEPA on ImageNet-1k (Assran et al., CVPR 2023, and ``configs/in1k_vith14_ep300.yaml``).

``variant=H/14`` is the paper's recipe: batch 2048, 300 epochs, predictor 12 × 384, LR 2e-4 →
1e-3 (40 warmup epochs) → 1e-6 cosine, WD 0.04 → 0.4, EMA 0.996 → 1.0, schedules laid out over
1.25× the run, bf16 compute. Other variants (``S/16``, ``B/16``, ``L/16``, ``g/16``) keep the
recipe with the predictor depth the paper's smaller models use (6). ``res=`` changes the input
size; mask token counts scale with the patch grid. ``runlocal`` shrinks the run for a laptop.

  jepa-train --config experiments/ijepa_in1k.py:variant=H/14 --workdir gs://bucket/ijepa_h14
"""

from jepa import config as config_lib
from jepa import masking, methods


def get_config(arg=None):
    args = config_lib.parse_arg(arg, variant="H/14", res=224, runlocal=False, data_dir="")
    c = methods.with_method(config_lib.base_config(), "masked")
    config_lib.apply_variant(c, args.variant)
    c.model.image_size = args.res
    c.model.channels = 3
    # bfloat16 on GPUs and TPUs; on a CPU whichever dtype runs the step faster there.
    c.model.dtype = "auto"
    huge = args.variant.split("/")[0] in ("H", "g")
    p, mask = c.method.predictor, c.method.mask
    p.width, p.depth, p.num_heads = 384, 12 if huge else 6, c.model.num_heads

    grid = args.res // c.model.patch_size
    mask.context_tokens, mask.target_tokens = masking.default_token_counts((grid, grid))

    c.batch_size = 2048
    c.epochs = 300.0
    c.optim.lr = 1e-3
    c.optim.start_lr = 2e-4
    c.optim.final_lr = 1e-6
    c.optim.warmup_epochs = 40.0
    c.optim.weight_decay = 0.04
    c.optim.final_weight_decay = 0.4
    c.optim.ema_momentum = (0.996, 1.0)
    c.optim.schedule_scale = 1.25

    c.data.dataset = "imagenet2012"
    c.data.data_dir = args.data_dir
    c.data.train_split = "train"
    c.data.test_split = "validation"
    c.data.crop_scale = (0.3, 1.0)
    c.data.worker_count = 16

    c.log_every = 50
    c.checkpoint_every = 2500
    if args.runlocal:
        c.batch_size = 16
        c.epochs = 0.0
        c.total_steps = 20
        c.optim.warmup_steps = 5
        c.data.worker_count = 0
        c.log_every = 1
    return config_lib.finalize(c)
