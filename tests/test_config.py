"""Configs: experiments load and validate (bad settings: tests/test_bad_inputs.py)."""

import importlib.util
import json
import os

import pytest

from jepa import config as config_lib
from jepa import methods, validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_experiment(name, arg=None):
    path = os.path.join(ROOT, "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_paper_recipe_h14():
    c = load_experiment("ijepa_in1k", "variant=H/14")
    assert (c.model.width, c.model.depth, c.model.num_heads, c.model.patch_size) == (
        1280,
        32,
        16,
        14,
    )
    assert c.batch_size == 2048 and c.epochs == 300
    assert (c.method.predictor.depth, c.method.predictor.width) == (12, 384)
    assert (c.optim.start_lr, c.optim.lr, c.optim.final_lr) == (2e-4, 1e-3, 1e-6)
    assert (c.optim.weight_decay, c.optim.final_weight_decay) == (0.04, 0.4)
    assert tuple(c.optim.ema_momentum) == (0.996, 1.0) and c.optim.schedule_scale == 1.25
    assert (c.method.mask.context_tokens, c.method.mask.target_tokens) == (
        78,
        43,
    )  # 16×16 grid, scaled
    validation.validate(c, device_count=256)
    resolved = config_lib.resolve_steps(c, 1_281_167)
    assert resolved.total_steps == 300 * (1_281_167 // 2048)
    assert resolved.optim.warmup_steps == 40 * (1_281_167 // 2048)


def test_variants_and_resolution_args():
    c = load_experiment("ijepa_in1k", "variant=S/16,res=448")
    assert c.model.image_size == 448 and c.model.width == 384
    assert (c.method.mask.context_tokens, c.method.mask.target_tokens) == (240, 132)  # 28×28 grid
    validation.validate(c, 8)
    with pytest.raises(ValueError, match="unknown config arg 'size'"):
        load_experiment("ijepa_in1k", "size=3")
    with pytest.raises(ValueError, match="model variant"):
        load_experiment("ijepa_in1k", "variant=X/16")


def test_mnist_experiment_is_valid():
    c = load_experiment("mnist_ijepa")
    validation.validate(c, 1)
    # The VICReg variant is the demo's multiview run with SIGReg swapped for VICReg, no EMA.
    v = load_experiment("mnist_vicreg_jepa", "steps=300")
    s = load_experiment("mnist_sigreg_jepa", "steps=300")
    validation.validate(v, 1)
    assert (
        v.method.loss.vicreg_var,
        v.method.loss.vicreg_cov,
        v.method.loss.sigreg,
        v.total_steps,
    ) == (
        1.0,
        0.04,
        0.0,
        300,
    )
    assert v.model.to_dict() == s.model.to_dict() and v.objective == "multiview"


def test_multiview_experiment_is_valid():
    c = load_experiment("mnist_sigreg_jepa", "steps=50")
    validation.validate(c, 1)
    assert (c.objective, c.total_steps, c.method.loss.sigreg, methods.eval_weights(c)) == (
        "multiview",
        50,
        0.05,
        "context",
    )


def test_locked_configs_reject_unknown_keys():
    c = load_experiment("mnist_ijepa")
    with pytest.raises(AttributeError):
        c.model.widht = 3
    with pytest.raises(KeyError, match="model.widht"):
        config_lib.apply_overrides(c, {"model.widht": "3"})


def test_arg_parsing():
    args = config_lib.parse_arg(
        "variant=B/16,res=256,runlocal", variant="H/14", res=224, runlocal=False
    )
    assert (args.variant, args.res, args.runlocal) == ("B/16", 256, True)


def test_hjepa_experiment_defaults_are_the_documented_recipe():
    """docs/results/hjepa.md, "The recipe": level 1 alone, then a greedy level 2 on it, each
    from the short command; the schedule follows ``levels`` unless given."""
    l1 = load_experiment("hjepa_moving_mnist", "levels=1")
    validation.validate(l1, 1)
    m, h, lv1 = l1.model, l1.method, l1.method.level1
    assert (m.stem, m.patch_blur, m.width, m.depth, m.patch_size) == ("conv", 0.0, 128, 3, 8)
    assert (lv1.views_weight, lv1.views, lv1.windows, lv1.pool_grid) == (3.0, 8, 2, 4)
    assert (lv1.mask_ratio, lv1.context_frames, lv1.horizon) == (0.9, 2, 1)
    assert (l1.method.loss.vicreg_var, l1.method.loss.vicreg_cov, l1.eval.weights) == (
        0.25,
        0.01,
        "context",
    )
    assert (l1.method.sequence.frames, l1.batch_size, l1.total_steps) == (8, 32, 1600)
    assert (h.mode, h.frozen_levels, len(h.levels)) == ("joint", 0, 0)
    l2 = load_experiment("hjepa_moving_mnist", "levels=2,mode=greedy,init_from=/tmp/l1")
    validation.validate(l2, 1)
    level2 = l2.method.levels[0]
    assert (l2.method.sequence.frames, l2.batch_size, l2.total_steps) == (20, 16, 12000)
    assert (l2.method.frozen_levels, l2.init.path) == (1, "/tmp/l1")
    assert (level2["width"], tuple(level2["recall"])) == (256, (0, 1, 2, 3))
    assert tuple(level2["horizons"]) == (2, 4, 6, 8)
    # Level 1's keys are the same in both runs, so level 2 loads exactly the level 1 trained.
    assert l2.model.to_dict() == l1.model.to_dict()
    assert l2.method.level1.to_dict() == l1.method.level1.to_dict()
    short = load_experiment("hjepa_moving_mnist", "levels=2,steps=3000,batch=8,frames=12")
    assert (short.total_steps, short.batch_size, short.method.sequence.frames) == (3000, 8, 12)
    with pytest.raises(ValueError, match="method.level1.views=8"):
        validation.validate(load_experiment("hjepa_moving_mnist", "frames=6"), 1)
    with pytest.raises(ValueError, match="unknown config arg 'width2'"):
        load_experiment("hjepa_moving_mnist", "width2=256")


def test_a_config_stored_before_the_method_section_is_refused_whole(tmp_path):
    """A run written before each method's keys moved under ``config.method`` does not load,
    in part or with defaults filled in: the error says what changed and what to do."""
    from helpers import tiny_config
    from test_bad_inputs import save_checkpoint

    import jepa
    from jepa import checkpointing

    config = tiny_config()
    workdir = str(tmp_path / "old")
    save_checkpoint(config, workdir)
    stored = config.to_dict()
    section = stored.pop("method")
    stored.update(mask=section["mask"], loss=section["loss"])  # the layout before config.method
    stored["model"]["predictor"] = section["predictor"]
    with open(os.path.join(workdir, "checkpoints", "1", "config", "metadata"), "w") as f:
        json.dump(stored, f)
    match = r"this checkpoint's config predates config\.method .*\['loss', 'mask'\].*re-train"
    with pytest.raises(checkpointing.CheckpointMismatchError, match=match):
        methods.from_stored(stored)
    with pytest.raises(checkpointing.CheckpointMismatchError, match=match):
        jepa.load_encoder(workdir)
    # The same config as written today loads, every value as stored.
    written = json.loads(config.to_json())
    assert json.loads(methods.from_stored(written).to_json()) == written
