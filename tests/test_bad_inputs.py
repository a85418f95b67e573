"""Bad input everywhere: every bad config, argument, path or checkpoint fails before anything is
compiled, with a message that names the key or path and says what would be valid.

Each case of the table is run the way a user meets it: command-line overrides through the same
absl / config_flags parsing as ``jepa-train`` (in-process), then ``train.train_and_evaluate``;
configs set in Python straight into ``train_and_evaluate``. A JAX monitoring listener counts
lowerings and backend compilations during the call, and must count none.
"""

import os
import re
import stat

import jax
import ml_collections
import numpy as np
import pytest
from absl import flags
from helpers import tiny_config, tiny_mnist_config
from ml_collections import config_flags

from jepa import checkpointing, optim, preflight, sharding, train
from jepa import state as state_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lowering to MLIR happens for every new jit signature (even on a persistent-cache hit), the
# backend compile on a cache miss: either one means the run got as far as compiling.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@pytest.fixture
def compiles():
    """A list that collects the compile events JAX records while the test runs."""
    seen = []

    def listener(event, duration, **kwargs):
        if event in COMPILE_EVENTS:
            seen.append(kwargs.get("fun_name", event))

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield seen
    jax.monitoring.unregister_event_duration_listener(listener)


def test_the_compile_counter_sees_compiles(compiles):
    """Control: without it, "no compile was seen" could mean "the counter is deaf"."""
    jax.jit(lambda x: x * 3.0 + 1.0)(np.arange(5.0))
    assert compiles


def test_unknown_override_names_the_key_and_the_valid_ones():
    """jepa-train's flag parser turns ml_collections' bare AttributeError into this message."""
    from jepa.main import unknown_override

    msg = unknown_override(["jepa-train", "--config.total_steps=5", "--config.foo=3"])
    assert msg.startswith("unknown config key foo (--config.foo=3); valid at the top level:")
    assert "'model'" in msg and "did you mean" not in msg
    # The method's section is the experiment's: its keys are checked against that config.
    experiment = ["--config", os.path.join(ROOT, "experiments/mnist_ijepa.py")]
    msg = unknown_override([*experiment, "--config.method.predictor.widht=3"])
    assert (
        "did you mean --config.method.predictor.width?" in msg and "under method.predictor" in msg
    )
    msg = unknown_override([*experiment, "--config.method.nope=1"])
    assert msg.startswith("unknown config key method.nope (--config.method.nope=1); valid under")
    assert "['loss', 'mask', 'predictor']" in msg
    assert unknown_override(["--config.model.width=3", "--workdir=/tmp/x"]) is None


def parse_cli(*overrides, experiment="experiments/mnist_ijepa.py"):
    """``jepa-train --config EXPERIMENT OVERRIDES`` parsed as jepa/main.py defines the flag
    (locked config), on a private FlagValues so the global flags stay untouched."""
    argv = ["jepa-train", "--config", os.path.join(ROOT, experiment), *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "experiment", flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    return values.config


# ----------------------------------------------------------------------------- case builders
# Each returns make(tmp_path, data_dir) → the call that must fail. What make() itself does
# (write files, save a checkpoint) is setup, outside the compile count.


def cli(*overrides):
    """Command-line overrides of the MNIST experiment, then training. The workdir lies under
    a regular file, so a config that wrongly passes validation fails at once (wrong message)
    instead of training."""

    def make(tmp, data_dir):
        (tmp / "file").write_text("")
        return lambda: train.train_and_evaluate(parse_cli(*overrides), str(tmp / "file" / "w"))

    return make


def cfg(_edit=None, **overrides):
    """``tiny_config(**overrides)``, optionally edited in Python, into ``train_and_evaluate``.
    Its dataset (imagenet2012) is not prepared here: a config that wrongly passes validation
    stops at the dataset check with a message the case does not expect."""

    def make(tmp, data_dir):
        def call():
            c = tiny_config(**overrides)  # an unknown objective fails here
            if _edit:
                _edit(c)
            return train.train_and_evaluate(c, str(tmp / "w"))

        return call

    return make


def add_latent(c):
    """A latent z on a method without one."""
    c.method.latent = {"kind": "discrete"}


def future(**overrides):
    return cfg(objective="future", **overrides)


def mnist(workdir=None, **overrides):
    """The tiny MNIST config (a valid run) with ``overrides``; ``workdir(tmp)`` picks the
    workdir (default: a new one)."""

    def make(tmp, data_dir):
        c = tiny_mnist_config(data_dir, **overrides)
        w = workdir(tmp) if workdir else str(tmp / "w")
        return lambda: train.train_and_evaluate(c, w)

    return make


def file_at(tmp):
    path = tmp / "a_file"
    path.write_text("not a directory")
    return path


def read_only_dir(tmp):
    path = tmp / "read_only"
    path.mkdir()
    path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:  # root writes anyway: this case cannot be set up with permissions then
        (path / "probe").write_text("")
    except OSError:
        return str(path)
    path.chmod(stat.S_IRWXU)
    pytest.skip("running as root: a read-only directory is still writable")


def save_checkpoint(config, workdir: str, step: int = 1) -> None:
    """A checkpoint of ``config``'s model as the trainer writes it (state tree, config,
    metadata), with zeros for the values: the tree comes from ``eval_shape``, so this costs no
    train-step compile."""
    mesh = sharding.make_mesh(config)
    tx = optim.make_optimizer(config)
    abstract, _ = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
    state = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
    ckpt = checkpointing.Checkpointer(workdir, async_save=False)
    ckpt.save(step, state, None, config, force=True)
    ckpt.close()


def checkpoint_of_another_model(**overrides):
    """A checkpoint of the tiny MNIST model in the workdir, then a run with ``overrides``."""

    def make(tmp, data_dir):
        workdir = str(tmp / "w")
        save_checkpoint(tiny_mnist_config(data_dir), workdir)
        c = tiny_mnist_config(data_dir, **overrides)
        return lambda: train.train_and_evaluate(c, workdir)

    return make


def own_datasets(data_dir: str) -> str:
    """In ``data_dir`` (once): ``own_rgb``, 24 labelled 32-px RGB images, a train split only,
    and ``own_flat``, 16 unlabeled grayscale 28-px images with a test split, both written by
    jepa-data's code path (no compile)."""
    from jepa.data import folder

    rng = np.random.default_rng(0)
    if not os.path.isdir(os.path.join(data_dir, "own_rgb")):
        rgb = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
        folder.write_arrays(rgb, np.arange(24) % 2, name="own_rgb", data_dir=data_dir)
    if not os.path.isdir(os.path.join(data_dir, "own_flat")):
        gray = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
        folder.write_arrays(gray, name="own_flat", data_dir=data_dir, test_fraction=0.25)
    return data_dir


def own(**overrides):
    """The tiny MNIST run on one of ``own_datasets``."""

    def make(tmp, data_dir):
        c = tiny_mnist_config(own_datasets(data_dir), **overrides)
        return lambda: train.train_and_evaluate(c, str(tmp / "w"))

    return make


def jepa_eval(*args, dataset="mnist5k", workdir=None):
    """``jepa-eval ARGS`` on a saved (untrained) tiny run of ``dataset``; ``workdir(tmp)``
    instead points it at a path of the case's choosing."""

    def make(tmp, data_dir):
        from jepa.evaluate import main as eval_main

        run = str(tmp / "run")
        if workdir is None:
            save_checkpoint(
                tiny_mnist_config(own_datasets(data_dir), **{"data.dataset": dataset}), run
            )
        target = workdir(tmp) if workdir else run
        return lambda: eval_main.main(["--workdir", target, *args])

    return make


def jepa_train(*args):
    """``jepa-train ARGS`` through its own flag parsing (one-line errors), on fresh flags."""

    def make(tmp, data_dir):
        from jepa import main as train_main

        argv = ["jepa-train", *args]
        values = flags.FlagValues()
        train_main.define_flags(values, sys_argv=argv)
        return lambda: train_main.parse_flags(argv, values)

    return make


def jepa_data(*args):
    """``jepa-data ARGS`` on a folder of four PNGs, two per class (``FOLDER`` in ARGS)."""

    def make(tmp, data_dir):
        from PIL import Image

        from jepa.data import main as data_main

        for cls in ("a", "b"):
            (tmp / "pics" / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8)).save(tmp / "pics" / cls / f"{i}.png")
        argv = [a.replace("FOLDER", str(tmp / "pics")) for a in args]
        return lambda: data_main.main([*argv, "--data_dir", str(tmp / "tfds")])

    return make


def misspelled_before_lock(c):
    c.model.widht = 48  # an experiment's typo: the config is not locked yet, so it is added


def predictor_of_strings(c):
    c.method.predictor = ml_collections.ConfigDict(dict(width="32", depth=1, num_heads=2))


# ------------------------------------------------------------------------------------ table
# (make, exception type, regex naming the key or path, regex saying what would be valid)
E = ValueError
CASES = [
    # -- command line: parsed like jepa-train's flags
    pytest.param(
        cli("--config.model.widht=3"), AttributeError, "widht", 'mean "width"', id="cli-unknown-key"
    ),
    pytest.param(
        cli("--config.batch_size=abc"),
        flags.IllegalFlagValueError,
        r"config\.batch_size=abc",
        "int",
        id="cli-int-given-text",
    ),
    pytest.param(
        cli("--config.optim.lr=fast"),
        flags.IllegalFlagValueError,
        r"config\.optim\.lr=fast",
        "float",
        id="cli-float-given-text",
    ),
    pytest.param(
        cli("--config.data.hflip=maybe"),
        flags.IllegalFlagValueError,
        r"config\.data\.hflip=maybe",
        "boolean",
        id="cli-bool-given-text",
    ),
    pytest.param(
        cli("--config.method.mask.target_scale=0.2"),
        E,
        r"method\.mask\.target_scale=\(0\.2,\)",
        "pair of numbers",
        id="cli-pair-given-one-number",
    ),
    pytest.param(
        cli("--config.model.patch_size=5"),
        E,
        r"model\.image_size=28 .*model\.patch_size=5",
        "valid: a patch size that divides 28",
        id="cli-patch-not-dividing-image",
    ),
    pytest.param(
        cli("--config.model.dtype=float16"),
        E,
        r"model\.dtype='float16'",
        "bfloat16",
        id="cli-unknown-dtype",
    ),
    # -- types and keys set in Python
    pytest.param(
        cfg(misspelled_before_lock),
        E,
        r"unknown config key model\.widht",
        r"did you mean model\.width\?.*'width'",
        id="py-unknown-key",
    ),
    pytest.param(
        cfg(**{"model.width": None}), E, r"model\.width=None", r"int \(like", id="py-none-for-int"
    ),
    pytest.param(
        cfg(predictor_of_strings),
        E,
        r"method\.predictor\.width='32' is a str",
        "valid: int",
        id="py-string-for-int-in-group",
    ),
    pytest.param(
        cfg(**{"optim.ema_momentum": (0.996, 1.0, 1.0)}),
        E,
        r"optim\.ema_momentum",
        "pair of numbers",
        id="py-triple-for-pair",
    ),
    # -- model and mask geometry
    pytest.param(
        cfg(**{"model.image_size": 30}),
        E,
        r"model\.image_size=30 is not divisible by model\.patch_size=8",
        "valid: a patch size that divides 30",
        id="patch-not-dividing-image",
    ),
    pytest.param(
        cfg(**{"model.num_heads": 5}),
        E,
        r"model\.width=64 .*model\.num_heads=5",
        "divisible",
        id="heads-not-dividing-width",
    ),
    pytest.param(
        cfg(**{"method.predictor.num_heads": 5}),
        E,
        r"method\.predictor\.width=32",
        r"divisible by 4 and by method\.predictor\.num_heads=5",
        id="predictor-heads",
    ),
    pytest.param(
        cfg(**{"method.mask.context_tokens": 40}),
        E,
        r"method\.mask\.context_tokens=40",
        r"\[1, 15\]",
        id="context-tokens-over-grid",
    ),
    pytest.param(
        cfg(**{"method.mask.target_tokens": 17}),
        E,
        r"method\.mask\.target_tokens=17",
        r"\[1, 16\]",
        id="target-tokens-over-grid",
    ),
    pytest.param(
        cfg(**{"method.mask.context_tokens": 12, "method.mask.target_tokens": 8}),
        E,
        r"method\.mask\.context_tokens \+ method\.mask\.target_tokens = 20",
        "16 patches",
        id="context-plus-target-over-grid",
    ),
    pytest.param(
        cfg(**{"method.mask.min_keep": 7}),
        E,
        r"method\.mask\.min_keep=7",
        r"method\.mask\.context_tokens=6",
        id="min-keep-over-context",
    ),
    # -- batch and mesh on the 8 simulated devices
    pytest.param(
        cfg(batch_size=12), E, r"batch_size=12", "multiple of 8", id="batch-not-divisible-by-data"
    ),
    pytest.param(
        cfg(batch_size=6, **{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": -1}),
        E,
        r"batch_size=6 .*mesh\.data × mesh\.fsdp = 4",
        "multiple of 4",
        id="batch-not-divisible-by-data-x-fsdp",
    ),
    pytest.param(
        cfg(**{"mesh.data": 1, "mesh.fsdp": 16}),
        E,
        r"config\.mesh=.*'fsdp': 16",
        "needs 16 devices, 8 are available; valid: sizes whose product is 8",
        id="mesh-larger-than-devices",
    ),
    pytest.param(
        cfg(**{"mesh.fsdp": -1}),
        E,
        r"config\.mesh=.*more than one -1",
        "at most one axis",
        id="mesh-two-fill-axes",
    ),
    pytest.param(
        cfg(**{"mesh.data": 3, "mesh.fsdp": -1}),
        E,
        r"config\.mesh=.*'data': 3",
        "product divides 8",
        id="mesh-not-filling-devices",
    ),
    pytest.param(
        cfg(**{"mesh.tensor": 0}),
        E,
        r"config\.mesh=.*'tensor': 0",
        "positive integers or -1",
        id="mesh-zero-axis",
    ),
    # -- unknown names
    pytest.param(
        cfg(objective="contrastive"), E, "objective='contrastive'", "multiview", id="objective"
    ),
    pytest.param(
        cfg(**{"method.loss.energy": "hinge"}),
        E,
        r"method\.loss\.energy='hinge'",
        "smooth_l1",
        id="energy",
    ),
    pytest.param(cfg(**{"model.dtype": "fp8"}), E, r"model\.dtype='fp8'", "bfloat16", id="dtype"),
    pytest.param(cfg(**{"model.remat": "some"}), E, r"model\.remat='some'", "dots", id="remat"),
    pytest.param(
        cfg(**{"model.attention_impl": "flash"}),
        E,
        r"model\.attention_impl='flash'",
        "cudnn",
        id="attention-impl",
    ),
    pytest.param(cfg(**{"model.stem": "vit"}), E, r"model\.stem='vit'", "conv", id="stem"),
    pytest.param(
        mnist(evals=("svm",), eval_every=2),
        E,
        r"evals='svm'",
        r"valid: \(.*'knn'",
        id="evals-unknown-evaluator",
    ),
    pytest.param(
        cfg(**{"model.stem": "conv", "model.patch_size": 12, "model.image_size": 48}),
        E,
        r"model\.stem='conv'.*model\.patch_size=12",
        "power of 2",
        id="conv-stem-patch",
    ),
    pytest.param(
        cfg(**{"method.loss.regularize": "image"}),
        E,
        r"method\.loss\.regularize='image'",
        "pooled",
        id="regularize",
    ),
    # -- run length and schedules
    pytest.param(
        cfg(total_steps=0, epochs=0.0), E, "total_steps=0, epochs=0.0", "epochs > 0", id="no-steps"
    ),
    pytest.param(cfg(total_steps=-5), E, "total_steps=-5", "total_steps > 0", id="negative-steps"),
    pytest.param(cfg(batch_size=0), E, "batch_size=0", "positive", id="zero-batch"),
    pytest.param(
        cfg(**{"optim.schedule_scale": 0.5}),
        E,
        r"optim\.schedule_scale=0\.5",
        ">= 1",
        id="schedule-scale",
    ),
    # -- objective-specific combinations
    # A key of another method's section is unknown in this one's.
    pytest.param(
        cfg(**{"method.num_views": 2}),
        E,
        r"unknown config key method\.num_views",
        r"valid keys under method: \['loss', 'mask', 'predictor'\]",
        id="num-views",
    ),
    pytest.param(
        cfg(objective="multiview", **{"method.local_views": 2, "method.local_size": 12}),
        E,
        r"method\.local_size=12",
        r"multiple of model\.patch_size=8",
        id="multiview-local-size",
    ),
    pytest.param(
        cfg(objective="multiview", **{"method.num_views": 2, "method.loss.view_weight": 0.0}),
        E,
        r"method\.loss\.view_weight=0",
        "valid: > 0",
        id="multiview-no-view-weight",
    ),
    pytest.param(
        cfg(**{"method.local_views": 2, "method.local_size": 16}),
        E,
        r"unknown config key method\.local_(views|size)",
        "valid keys under method",
        id="local-views-on-masked",
    ),
    pytest.param(
        cfg(objective="multiview"),
        E,
        r"method\.num_views=1, method\.local_views=0",
        "two views in all",
        id="multiview-one-view",
    ),
    # -- latent variable and clips
    pytest.param(
        cfg(add_latent),
        E,
        r"unknown config key method\.latent",
        "valid keys under method",
        id="latent-on-masked",
    ),
    pytest.param(
        future(**{"method.latent.kind": "gaussian"}),
        E,
        r"method\.latent\.kind='gaussian'",
        "continuous",
        id="latent-kind",
    ),
    pytest.param(
        future(**{"method.latent.kind": "continuous", "method.latent.penalty": "l3"}),
        E,
        r"method\.latent\.penalty='l3'",
        "'kl'",
        id="latent-penalty",
    ),
    pytest.param(
        future(**{"method.latent.kind": "discrete", "method.latent.num_codes": 1}),
        E,
        r"method\.latent\.num_codes=1",
        ">= 2",
        id="latent-codes",
    ),
    pytest.param(
        future(**{"method.clip.context_frames": 0}),
        E,
        r"method\.clip\.context_frames=0",
        ">= 1",
        id="clip-context",
    ),
    pytest.param(
        future(**{"method.clip.horizon": 0}),
        E,
        r"method\.clip\.horizon=0",
        ">= 1",
        id="clip-horizon",
    ),
    pytest.param(
        future(**{"method.predictor.width": 36, "method.predictor.num_heads": 2}),
        E,
        r"method\.predictor\.width=36",
        "divisible by 8",
        id="clip-predictor-width",
    ),
    # -- evaluation keys (checked with the rest, before pretraining)
    pytest.param(
        cfg(**{"eval.pooling": "max"}), E, r"eval\.pooling='max'", "flatten", id="eval-pooling"
    ),
    pytest.param(
        cfg(**{"eval.val_fraction": 1.5}), E, r"eval\.val_fraction=1\.5", r"\(0, 1\)", id="eval-val"
    ),
    pytest.param(cfg(**{"eval.knn_k": 0}), E, r"eval\.knn_k=0", "positive", id="eval-knn-k"),
    pytest.param(
        cfg(**{"eval.fewshot": ("10 shots",)}),
        E,
        r"eval\.fewshot entry '10 shots'",
        "'N-shot'",
        id="eval-fewshot",
    ),
    pytest.param(
        cfg(**{"eval.attentive_heads": 3}),
        E,
        r"eval\.attentive_heads=3",
        "divide the feature width 64",
        id="eval-attentive-heads",
    ),
    # -- data, workdir and checkpoint (jepa/preflight.py)
    pytest.param(
        mnist(**{"data.dataset": "mnist_5k"}),
        E,
        r"data\.dataset='mnist_5k'",
        r"\['mnist5k', 'stochastic_moving_mnist'\]",
        id="dataset-unknown",
    ),
    pytest.param(
        mnist(**{"data.dataset": "stochastic_moving_mnist/huge"}),
        E,
        r"data\.dataset='stochastic_moving_mnist/huge'",
        "'stochastic_moving_mnist/tiny'",
        id="dataset-unknown-builder-config",
    ),
    pytest.param(
        mnist(**{"data.dataset": "cifar10"}),
        E,
        r"data\.dataset='cifar10' is not prepared under data\.data_dir=",
        "download_and_prepare",
        id="dataset-not-prepared",
    ),
    pytest.param(
        mnist(**{"data.dataset": "cifar10", "data.data_dir": "/nonexistent/tfds"}),
        E,
        r"data\.data_dir='/nonexistent/tfds' does not exist",
        "TFDS's default",
        id="data-dir-missing",
    ),
    pytest.param(
        mnist(**{"data.data_dir": "/proc/version/tfds"}),
        E,
        r"data\.data_dir='/proc/version/tfds' .*cannot be created",
        "writable",
        id="data-dir-uncreatable",
    ),
    pytest.param(
        mnist(**{"data.train_split": "trian"}),
        E,
        r"data\.train_split='trian'",
        r"\['test', 'train'\]",
        id="train-split-unknown",
    ),
    pytest.param(
        mnist(workdir=lambda tmp: str(file_at(tmp) / "run")),
        E,
        r"workdir='.*a_file/run' cannot be created",
        "a directory you can write to",
        id="workdir-under-a-file",
    ),
    pytest.param(
        mnist(workdir=lambda tmp: str(file_at(tmp))),
        E,
        r"workdir='.*a_file' is a file",
        "a directory you can write to",
        id="workdir-is-a-file",
    ),
    pytest.param(
        mnist(workdir=read_only_dir),
        E,
        r"workdir='.*read_only' is not writable",
        "a directory you can write to",
        id="workdir-read-only",
    ),
    # -- your own data (jepa/data/folder.py, preflight's pixel checks)
    pytest.param(
        mnist(**{"data.dataset": "/home/me/pictures"}),
        E,
        r"data\.dataset='/home/me/pictures' is a path",
        r"jepa-data /home/me/pictures --name pictures --data_dir DIR",
        id="dataset-is-a-folder",
    ),
    pytest.param(
        mnist(**{"data.dataset": "my_pictures"}),
        E,
        r"data\.dataset='my_pictures' is not a dataset jepa or TFDS knows",
        r"jepa-data FOLDER --name NAME --data_dir DIR",
        id="dataset-unknown-points-to-jepa-data",
    ),
    pytest.param(
        own(**{"data.dataset": "own_rgb", "model.image_size": 32, "model.patch_size": 8}),
        E,
        r"data\.dataset='own_rgb' has 3-channel images .* model\.channels=1",
        r"valid: --config\.model\.channels=3",
        id="rgb-images-gray-model",
    ),
    pytest.param(
        mnist(**{"model.channels": 3}),
        E,
        r"data\.dataset='mnist5k' has 1-channel images .* model\.channels=3",
        r"valid: --config\.model\.channels=1",
        id="gray-images-rgb-model",
    ),
    pytest.param(
        mnist(**{"data.mean": (0.5, 0.5, 0.5)}),
        E,
        r"data\.mean=\(0\.5, 0\.5, 0\.5\) has 3 values for 1-channel images",
        r"valid: 1 values, one per channel, or \(\) for the defaults",
        id="mean-length-not-channels",
    ),
    pytest.param(
        mnist(**{"data.std": (0.2, 0.2)}),
        E,
        r"data\.std=\(0\.2, 0\.2\)",
        r"one per channel",
        id="std-length-not-channels",
    ),
    pytest.param(
        jepa_data("FOLDER", "--name", "My Pets!"),
        SystemExit,
        r"--name 'My Pets!' is not a valid dataset name",
        r"e\.g\. 'my_pets'",
        id="jepa-data-bad-name",
    ),
    pytest.param(
        jepa_data("FOLDER", "--name", "mnist"),
        SystemExit,
        r"--name 'mnist' is taken",
        r"another name, e\.g\. 'my_mnist'",
        id="jepa-data-name-taken",
    ),
    pytest.param(
        jepa_data("FOLDER/a/0.png", "--name", "pets"),
        SystemExit,
        r"0\.png is not a folder",
        r"valid: a folder of images",
        id="jepa-data-not-a-folder",
    ),
    pytest.param(
        jepa_data("FOLDER", "--name", "pets", "--test_fraction", "1.5"),
        SystemExit,
        r"--test_fraction 1\.5",
        r"\[0, 1\)",
        id="jepa-data-bad-fraction",
    ),
    # -- jepa-eval: probes need labels; a path that is not a run is left untouched
    pytest.param(
        jepa_eval(dataset="own_flat"),
        SystemExit,
        r"data\.dataset='own_flat' has no 'label' field",
        r"--config\.eval\.dataset=NAME",
        id="eval-unlabeled-dataset",
    ),
    pytest.param(
        jepa_eval("--config.eval.dataset=own_rgb"),
        SystemExit,
        r"data\.test_split='test': eval\.dataset='own_rgb' has no split 'test'",
        r"valid: \['train'\]",
        id="eval-dataset-without-test-split",
    ),
    pytest.param(
        jepa_eval(workdir=lambda tmp: str(tmp / "not_a_run")),
        SystemExit,
        r"not_a_run does not exist: it is not a run",
        r"valid: a jepa-train --workdir",
        id="eval-path-not-a-run",
    ),
    pytest.param(
        jepa_eval("--step", "7"),
        SystemExit,
        r"step 7 not in .*checkpoints",
        r"valid: one of \[1\]",
        id="eval-step-missing",
    ),
    pytest.param(
        jepa_eval("--step=abc"), SystemExit, r"--step='abc'", "an integer", id="eval-step-text"
    ),
    # -- jepa-train's command line: one line, never a traceback
    pytest.param(
        jepa_train("--config", os.path.join(ROOT, "experiments/mnist_ijepaa.py"), "--workdir=w"),
        SystemExit,
        r"--config .*mnist_ijepaa\.py: no such file",
        r"did you mean .*experiments/mnist_ijepa\.py\?",
        id="train-experiment-typo",
    ),
    pytest.param(
        jepa_train(
            "--config", os.path.join(ROOT, "experiments/mnist_ijepa.py:stepz=3"), "--workdir=w"
        ),
        SystemExit,
        r"unknown config arg 'stepz'",
        r"valid: \['data_dir', 'steps'\]",
        id="train-experiment-bad-arg",
    ),
    pytest.param(
        jepa_train(
            "--config", os.path.join(ROOT, "experiments/mnist_ijepa.py:steps=many"), "--workdir=w"
        ),
        SystemExit,
        r"config arg steps='many' is not of type int",
        r"valid: e\.g\. steps=1200",
        id="train-experiment-arg-type",
    ),
    pytest.param(
        jepa_train(
            "--config",
            os.path.join(ROOT, "experiments/mnist_ijepa.py"),
            "--workdir=w",
            "--config.batch_size=abc",
        ),
        SystemExit,
        r"--config\.batch_size=abc",
        r"invalid literal for int",
        id="train-override-type",
    ),
    pytest.param(
        jepa_train("--config", os.path.join(ROOT, "experiments/mnist_ijepa.py"), "--workdri=w"),
        SystemExit,
        r"Unknown command line flag 'workdri'",
        r"valid: --config --workdir",
        id="train-unknown-flag",
    ),
    pytest.param(
        jepa_train("--config", os.path.join(ROOT, "experiments/mnist_ijepa.py")),
        SystemExit,
        r"--workdir required",
        r"e\.g\. jepa-train --config",
        id="train-workdir-missing",
    ),
    pytest.param(
        checkpoint_of_another_model(**{"model.width": 48}),
        E,
        r"model\.width=32 in the checkpoint, 48 in this config",
        "set these keys to the checkpoint's values .* or use a new --workdir",
        id="checkpoint-of-another-model",
    ),
    pytest.param(
        checkpoint_of_another_model(**{"model.stem": "conv", "model.patch_size": 4}),
        E,
        r"model\.stem='patch' in the checkpoint, 'conv' in this config",
        "or use a new --workdir",
        id="checkpoint-of-another-stem",
    ),
    pytest.param(
        mnist(**{"init.path": "/nonexistent/run"}),
        E,
        r"init\.path='/nonexistent/run' holds no checkpoints",
        "a jepa-train --workdir with checkpoints",
        id="init-path-not-a-run",
    ),
    pytest.param(
        mnist(**{"init.path": "/nonexistent/run", "init.take": ("encoder",)}),
        E,
        r"init\.take entry 'encoder'",
        "'params/encoder'",
        id="init-take-not-a-path",
    ),
]


@pytest.mark.parametrize("make,error,key,valid", CASES)
def test_bad_input_fails_before_compiling_naming_key_and_remedy(
    make, error, key, valid, tmp_path, mnist_data_dir, compiles
):
    call = make(tmp_path, mnist_data_dir)
    compiles.clear()  # setup (a checkpoint to resume) may compile; the failing call may not
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert not compiles, f"compiled {compiles} before failing with: {message}"
    if error is SystemExit:  # the command-line tools: one line, never a traceback
        assert "\n" not in message and "Traceback" not in message, message
    assert re.search(key, message), f"{key!r} not in: {message}"
    assert re.search(valid, message), f"{valid!r} not in: {message}"


def test_preflight_accepts_what_a_run_needs(tmp_path, mnist_data_dir):
    """Controls for the path cases: a new workdir under a writable directory, a new data_dir
    for one of jepa's builders, and a checkpoint of the same model (a resume) all pass."""
    c = tiny_mnist_config(mnist_data_dir)
    preflight.check(c, str(tmp_path / "new" / "run"))
    preflight.check(tiny_mnist_config(str(tmp_path / "fresh_tfds")), str(tmp_path / "w"))
    save_checkpoint(c, str(tmp_path / "resume"))
    # A loss weight does not shape the parameters: changing it does not block the resume.
    preflight.check(
        tiny_mnist_config(mnist_data_dir, **{"method.loss.vicreg_var": 1.0}),
        str(tmp_path / "resume"),
    )
    with pytest.raises(ValueError, match=r"objective='masked' in the checkpoint"):
        preflight.check(
            tiny_mnist_config(mnist_data_dir, objective="multiview"), str(tmp_path / "resume")
        )


def test_the_table_has_twenty_distinct_cases():
    """At least 20 distinct cases, each with its own id."""
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids)) >= 20
