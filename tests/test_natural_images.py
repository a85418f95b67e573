"""The small-natural-image recipe (experiments/imagenette_sigreg_jepa.py): LeJEPA's minimal
settings where they can be matched, and a short run on a tiny generated RGB dataset written in
the TFDS format the recipe reads."""

import numpy as np
from test_config import load_experiment

from jepa import methods, train, validation
from jepa.data import folder
from jepa.evaluate import main as eval_main


def test_recipe_matches_lejepa_minimal_where_it_can():
    c = load_experiment("imagenette_sigreg_jepa", "data_dir=/data")
    validation.validate(c, 1)
    m = c.model
    assert (m.width, m.depth, m.num_heads, m.patch_size, m.image_size) == (384, 12, 6, 8, 128)
    assert (c.data.dataset, c.data.train_split, c.data.test_split) == (
        "imagenette/160px",
        "train",
        "validation",
    )
    assert (c.method.num_views, c.method.local_views, tuple(c.data.crop_scale), c.data.hflip) == (
        4,
        0,
        (0.08, 1.0),
        True,
    )
    p = c.method.projector
    assert (p.hidden, p.depth, p.out) == (2048, 2, 16)
    assert (c.method.loss.sigreg, c.method.loss.view_weight, c.method.loss.sigreg_slices) == (
        0.02,
        0.98,
        256,
    )
    assert (c.batch_size, c.epochs, c.optim.lr, c.optim.weight_decay) == (256, 800, 2e-3, 0.05)
    assert (c.optim.start_lr, c.optim.final_lr, c.optim.warmup_epochs) == (2e-5, 1e-3, 1.0)
    assert (c.objective, methods.eval_weights(c), c.eval.pooling) == (
        "multiview",
        "context",
        "avg",
    )


def test_recipe_pretrains_and_probes_a_tiny_tfds_image_dataset(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    # two classes of 40-px RGB images: a bright or a dark square on noise
    images = rng.integers(0, 120, (32, 40, 40, 3)).astype(np.uint8)
    images[labels == 1, 10:30, 10:30] = 230
    data_dir = str(tmp_path / "tfds")
    folder.write_arrays(images, labels, name="tiny_nette", data_dir=data_dir, test_fraction=0.25)
    arg = f"runlocal,data_dir={data_dir},dataset=tiny_nette,test=test"
    config = load_experiment("imagenette_sigreg_jepa", arg)
    assert (config.total_steps, config.method.num_views, config.model.image_size) == (2, 4, 32)
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir)
    (result,) = eval_main.main(["--workdir", workdir, "--baselines"])
    assert (result["step"], result["pooling"], result["weights"]) == (2, "avg", "context")
    assert 0.0 <= result["top1"] <= 100.0
    assert set(result["baselines"]) == {"pixels", "random_encoder"}
