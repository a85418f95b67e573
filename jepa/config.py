"""The shared core of every config, arg-string parsing, overrides, and the specs derived from
the core (token grids, mesh shape).

A config is this core plus ``config.method``, the section the method ``config.objective`` names
owns (its defaults and their validation live beside its code in ``jepa/methods/``). Experiments
(``experiments/NAME.py``) call ``methods.with_method(base_config(), NAME)``, change what they
need and return a locked ``ConfigDict``, so ``--config.KEY=VALUE`` overrides of unknown keys
(``--config.method.nope=1`` too) fail at the command line. ``jepa.validation.validate`` then
checks keys, types and the combinations a type check cannot see, before anything is traced or
compiled, and names the offending key.
"""

from __future__ import annotations

import ast
import math
import os

import ml_collections

from jepa.models.vit import parse_variant

DTYPES = ("float32", "bfloat16")
MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis → mesh axes. Parameters: FSDP shards the ``embed`` side of every kernel, tensor
# parallelism the ``mlp`` and ``heads`` sides. Activations: the batch is split over both data
# axes; the feature axes of attention and MLP follow tensor parallelism.
DEFAULT_RULES = (
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("patch", None),
)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """big_vision-style ``"variant=S/16,res=224,runlocal"`` → ConfigDict (bare words are True).

    Values are converted to the type of the default given for that key.
    """
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, eq, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"unknown config arg {key!r}; valid: {sorted(defaults)}")
        kind = type(defaults[key])
        if not eq or kind is bool:
            out[key] = not eq or value.lower() in ("1", "true", "yes")
        elif defaults[key] is None:
            out[key] = value
        else:
            try:
                out[key] = kind(value)
            except ValueError:
                raise ValueError(
                    f"config arg {key}={value!r} is not of type {kind.__name__}; valid: e.g. "
                    f"{key}={defaults[key]!r}"
                ) from None
    return ml_collections.ConfigDict(out)


def base_config() -> ml_collections.ConfigDict:
    """The shared core: run, encoder (``model``), optimizer, mesh, data, initialization,
    evaluation, checkpoint and logging keys. ``objective`` and ``method`` (that method's own
    section) are filled by ``jepa.methods.with_method``, from the method's defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.batch_size = 16  # global, across all hosts
    # The method (``jepa/methods/``, its registry) and its own keys under ``method``.
    c.objective = ""
    c.method = ml_collections.ConfigDict()
    # A .py file that defines and registers ``objective`` when it is not one of jepa's (e.g.
    # tests/toy_method.py): imported before the method is looked up, by jepa-train, jepa-eval
    # and load_encoder alike, as it is stored with the run's config.
    c.method_file = ""
    c.total_steps = 0  # 0: derive from ``epochs`` and the dataset size
    c.epochs = 0.0

    # The encoder: what the probes, load_encoder and the health monitor read. The variant sets
    # width, depth, num_heads, mlp_ratio and patch_size (models/vit.py VARIANTS).
    c.model = ml_collections.ConfigDict()
    apply_variant(c, "S/16")
    c.model.image_size = 224
    c.model.channels = 3
    # Compute dtype: float32, bfloat16, or auto (chosen for the backend by measured speed,
    # jepa/hardware.py). Parameters and optimizer state stay float32.
    c.model.dtype = "float32"
    # Rematerialization of every transformer block (encoder and predictor): "none", "full"
    # (keep only block inputs, recompute the rest in the backward pass), "dots" (keep matmul
    # outputs), "dots_no_batch" (keep only matmuls without batch dims, i.e. none of the
    # activations): jepa/models/layers.py REMAT_POLICIES. Less memory, more FLOPs.
    c.model.remat = "none"
    c.model.patch_embed_init = "reference"  # or "fan_in" for small patches (see models/vit.py)
    c.model.patch_blur = 0.0  # std (px) of a fixed Gaussian low-pass before patches (models/vit.py)
    c.model.stem = "patch"  # "patch" (ViT) or "conv": log2(patch) stride-2 convs (models/vit.py)
    c.model.attention_impl = ""  # "": einsum attention; "xla" or "cudnn" (fused, NVIDIA GPUs)
    # through jax.nn.dot_product_attention
    # Video (clips [batch, T, H, W, C]; jepa/models/vit.py). num_frames: frames per clip, 0 for
    # an image model; V-JEPA's 3D patches of tubelet_size frames × p × p, one transformer over
    # the (num_frames / tubelet_size, h, w) grid.
    c.model.num_frames = 0
    c.model.tubelet_size = 2

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.start_lr = 2e-4
    c.optim.final_lr = 1e-6
    c.optim.warmup_steps = 0
    c.optim.warmup_epochs = 0.0  # used when warmup_steps == 0 and the run is set in epochs
    c.optim.weight_decay = 0.04
    c.optim.final_weight_decay = 0.4
    c.optim.ema_momentum = (0.996, 1.0)
    c.optim.schedule_scale = 1.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.grad_clip = 0.0  # 0 disables global-norm clipping
    # Split each step's batch into this many micro-batches, run one after another inside the
    # step (gradients summed in float32, then averaged): activation memory follows the
    # micro-batch, at the cost of one float32 gradient-sized running sum (a gain where
    # activations outweigh the parameters: ViT-L/16, batch 64, bf16, k=4: 6.6 → 3.3 GiB of
    # temporaries on an H200); the update is the one-big-batch update. Exactly so for
    # per-sample losses (I-JEPA's energy); a batch statistic (method.loss.vicreg_var /
    # vicreg_cov / sigreg, the discrete latent's code usage, the target_std metric) is computed
    # per micro-batch and averaged, so it sees batch_size / grad_accum_steps samples
    # (validate() warns).
    c.optim.grad_accum_steps = 1

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = DEFAULT_RULES

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "imagenet2012"
    c.data.data_dir = ""
    c.data.train_split = "train"
    c.data.test_split = "validation"
    c.data.crop_scale = (0.3, 1.0)
    c.data.hflip = False
    c.data.mean = ()  # () = ImageNet statistics for RGB, 0.5 for grayscale
    c.data.std = ()
    c.data.worker_count = 0
    # Corrupt training records (an image that does not decode or has the wrong shape) one host
    # may skip, each logged with its index, before the run stops; 0 = stop at the first.
    c.data.max_bad_records = 100
    c.data.num_train_examples = 0  # 0 = read from the TFDS builder info

    # Where a run's parameters come from, in this order: the workdir's newest good checkpoint
    # (a resume); else, with ``path`` set, the parts ``take`` of the newest good checkpoint of
    # that workdir (or of an export_encoder directory), the rest freshly initialized; else a
    # fresh init (jepa.hub.initial_state). ``take``: paths into the train state, e.g.
    # "params/encoder", "target_params", "params/levels/level2"; each must exist in both runs
    # with the same shapes, else the run stops naming the paths (never a partial load).
    c.init = ml_collections.ConfigDict(dict(path="", take=("params", "target_params")))

    c.eval = ml_collections.ConfigDict()
    # The encoder the probes (and load_encoder, and the health monitor) read: "target" (the EMA
    # copy) or "context" (the online encoder). "": the method's own (``jepa.methods.eval_weights``).
    c.eval.weights = ""
    c.eval.layers = "last"  # last | last4
    c.eval.pooling = "avg"  # avg | flatten | none
    c.eval.dataset = ""  # "" = the pretraining dataset; set it to probe a labelled one
    c.eval.data_dir = ""  # "" = data.data_dir
    c.eval.train_split = ""  # "" = data.train_split
    c.eval.test_split = ""  # "" = data.test_split
    c.eval.batch_size = 256
    c.eval.probe_epochs = 30
    c.eval.probe_batch_size = 256
    c.eval.lrs = (1e-3, 3e-3, 1e-2)
    c.eval.wds = (0.0, 1e-3, 1e-2, 1e-1)
    c.eval.val_fraction = 0.1
    c.eval.knn_k = 20  # --protocol knn: neighbours and vote temperature (DINO's values)
    c.eval.knn_temperature = 0.07
    c.eval.dtype = ""  # feature compute dtype; "" = model.dtype (bfloat16 halves eval time on TPU)
    c.eval.batchnorm = True  # BatchNorm without affine on features (linear, few-shot probes)
    # --protocol attentive (V-JEPA): its own AdamW grid; heads 0 = model.num_heads.
    c.eval.attentive_lrs = (1e-3, 3e-3, 1e-2)
    c.eval.attentive_wds = (0.01, 0.1)
    c.eval.attentive_epochs = 20
    c.eval.attentive_batch_size = 64  # small batches, as V-JEPA's probe (16 per GPU)
    c.eval.attentive_heads = 0
    # --protocol fewshot: closed-form ridge on N labels per class ("N-shot") or P % of train
    # ("P%"), each drawn fewshot_seeds times; the first entry is the reported top-1.
    c.eval.fewshot = ("10-shot", "1%", "10%")
    c.eval.fewshot_seeds = 3

    c.log_every = 50
    c.health_every = 500  # steps between health readings (RankMe, feature std); 0 disables
    c.health = ml_collections.ConfigDict(dict(min_std=1e-2, min_rank=1.5))  # collapse alarms
    # jepa-eval protocols run during training (e.g. ("knn",)) every eval_every steps (0 = off),
    # on the encoder the probes read; their numbers go to the metrics as NAME/KEY.
    c.evals = ()
    c.eval_every = 0
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    # A step whose loss or gradient is NaN/inf: False = stop with an error naming the step (the
    # last good checkpoint is kept); True = leave params, optimizer and target encoder as they
    # were, count it (metric ``nonfinite_skipped``) and go on.
    c.skip_nonfinite = False
    return c


def apply_overrides(config, overrides: dict[str, str]) -> None:
    """Apply ``{"eval.pooling": "flatten"}``-style string overrides, typed like the existing
    value; an unknown key raises naming it."""
    for dotted, raw in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            if p not in node:
                raise KeyError(f"unknown config key {dotted!r} (no {p!r})")
            node = node[p]
        if leaf not in node:
            raise KeyError(f"unknown config key {dotted!r}; valid here: {sorted(node.keys())}")
        if isinstance(node[leaf], str):
            node[leaf] = raw
        elif isinstance(node[leaf], bool):
            node[leaf] = raw.lower() in ("1", "true", "yes")
        else:  # ConfigDict casts an int set on a float key to float
            node[leaf] = ast.literal_eval(raw)


# Keys holding local paths that a run stores with its checkpoints.
PATH_KEYS = ("data.data_dir", "eval.data_dir", "init.path", "method_file")


def absolute_paths(config) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose relative ``PATH_KEYS`` are made absolute against the working
    directory, so that what a workdir stores means the same from any directory. Empty values
    (TFDS's default), remote paths (``gs://…``) and keys a stored config lacks are kept."""
    config = ml_collections.ConfigDict(config.to_dict())
    for dotted in PATH_KEYS:
        value = config.get(dotted)
        if isinstance(value, str) and value and "://" not in value and not os.path.isabs(value):
            config.update_from_flattened_dict({dotted: os.path.abspath(value)})
    return config


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Lock the config so that overrides of unknown keys fail with the key's name."""
    config.lock()
    return config


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> None:
    """Set width/depth/heads/mlp ratio/patch from a name like ``"H/14"``."""
    config.model.variant = variant
    config.model.update(parse_variant(variant))


def grid_of(config) -> tuple[int, int]:
    size = config.model.image_size
    return size // config.model.patch_size, size // config.model.patch_size


def init_parts(take) -> list[tuple[str, ...]]:
    """``init.take``'s entries as key paths into the train state; raises naming a bad one."""
    parts = [tuple(entry.strip("/").split("/")) for entry in take]
    for entry, keys in zip(take, parts, strict=True):
        if keys[0] not in ("params", "target_params"):
            raise ValueError(
                f"init.take entry {entry!r}; valid: 'target_params', 'params' or a path under "
                "it such as 'params/encoder' or 'params/levels/level2'"
            )
    if not parts:
        raise ValueError("init.take=() takes nothing from init.path; valid: e.g. ('params',)")
    return parts


def resolve_steps(config, num_train_examples: int) -> ml_collections.ConfigDict:
    """Fill ``total_steps`` and ``optim.warmup_steps`` from epochs when they are given in epochs
    (``validate`` has checked that one of ``total_steps`` and ``epochs`` is set)."""
    config = ml_collections.ConfigDict(config.to_dict())
    steps_per_epoch = max(1, num_train_examples // config.batch_size)
    if not config.total_steps:
        config.total_steps = int(math.ceil(config.epochs * steps_per_epoch))
    if not config.optim.warmup_steps and config.optim.warmup_epochs:
        config.optim.warmup_steps = int(round(config.optim.warmup_epochs * steps_per_epoch))
    return config


def mesh_shape(config, device_count: int) -> tuple[int, int, int]:
    """``config.mesh`` with one -1 filled so the product is ``device_count``."""
    sizes = [int(config.mesh[a]) for a in MESH_AXES]
    mesh, axes = dict(config.mesh), f"mesh.{{{','.join(MESH_AXES)}}}"
    if sizes.count(-1) > 1:
        raise ValueError(
            f"config.mesh={mesh} has more than one -1; valid: at most one axis of {axes} is -1 "
            "(filled to use every device)"
        )
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"config.mesh={mesh}: valid sizes of {axes} are positive integers or -1")
    if -1 in sizes:
        if device_count % known:
            raise ValueError(
                f"config.mesh={mesh} cannot fill {device_count} devices ({device_count} is not "
                f"divisible by {known}); valid: axis sizes whose product divides {device_count}"
            )
        sizes[sizes.index(-1)] = device_count // known
    if math.prod(sizes) != device_count:
        raise ValueError(
            f"config.mesh={mesh} needs {math.prod(sizes)} devices, {device_count} are available; "
            f"valid: sizes whose product is {device_count}, or -1 on one axis to fill"
        )
    return tuple(sizes)


def video_grid(config) -> tuple[int, int, int]:
    """The encoder's (time, h, w) token grid for clips of ``model.num_frames`` frames."""
    return config.model.num_frames // config.model.tubelet_size, *grid_of(config)
