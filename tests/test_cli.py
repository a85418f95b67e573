"""The command-line contract, run as a user would: jepa-train, then jepa-eval's JSON line."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.total_steps=3",
    "--config.model.width=32",
    "--config.model.depth=1",
    "--config.model.num_heads=2",
    "--config.method.predictor.width=16",
    "--config.method.predictor.depth=1",
    "--config.method.predictor.num_heads=2",
    "--config.batch_size=32",
    "--config.log_every=1",
    "--config.eval.probe_epochs=2",
]


def run(args, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw
    )


def train_cli(workdir, *overrides):
    """``jepa-train`` on the MNIST experiment with extra ``--config.*`` overrides."""
    return run(
        [
            "-m",
            "jepa.main",
            "--config",
            "experiments/mnist_ijepa.py",
            "--workdir",
            str(workdir),
            *overrides,
        ]
    )


@pytest.mark.slow
def test_train_then_eval_from_the_command_line(tmp_path, mnist_data_dir):
    workdir = str(tmp_path / "run")
    common = [
        "--config",
        "experiments/mnist_ijepa.py",
        "--workdir",
        workdir,
        f"--config.data.data_dir={mnist_data_dir}",
        *TINY,
    ]
    out = run(["-m", "jepa.main", *common])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "pretrain" in out.stderr  # the progress bar
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert os.path.exists(os.path.join(workdir, "loss.png"))
    assert os.listdir(os.path.join(workdir, "tensorboard"))

    # Same command again: resumes at step 3 and has nothing left to do.
    again = run(["-m", "jepa.main", *common])
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(open(os.path.join(workdir, "metrics.jsonl")).readlines()) == 3

    ev = run(["-m", "jepa.evaluate.main", "--workdir", workdir, "--protocol", "linear"])
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert (result["protocol"], result["step"], result["dataset"]) == ("linear", 3, "mnist5k")
    assert result["weights"] == "target"  # the EMA encoder, the default eval.weights
    # The printed line is the saved result, and the probe learned: chance is 10 %.
    with open(os.path.join(workdir, "eval", "linear_step3.json")) as f:
        saved = json.load(f)
    assert saved["top1"] == result["top1"] and saved["step"] == 3
    assert result["top1"] > 30.0


def test_unknown_override_fails_naming_the_key(tmp_path):
    """The real entry point locks the config (the in-process table of bad command lines, with
    its compile count, is in test_bad_inputs.py)."""
    out = train_cli(tmp_path, "--config.model.widht=3")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "unknown config key model.widht" in out.stderr
    assert "did you mean --config.model.width?" in out.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize(
    "module,args,code",
    [
        ("jepa.main", [], 2),
        ("jepa.main", ["-h"], 0),
        ("jepa.main", ["--help"], 0),
        ("jepa.evaluate.main", [], 2),
        ("jepa.evaluate.main", ["--help"], 0),
        ("jepa.data.main", ["--help"], 0),
    ],
)
def test_help_lists_flags_and_examples(module, args, code):
    """No arguments or -h/--help: the flags and worked examples, never a traceback."""
    out = run(["-m", module, *args])
    text = out.stdout + out.stderr
    assert out.returncode == code, text[-2000:]
    assert "Traceback" not in text and "helpfull" not in text
    assert "examples:" in text and "usage: jepa-" in text
    flags = ["--data_dir", "--test_fraction", "--size"] if module == "jepa.data.main" else []
    assert all(f in text for f in flags or ["--workdir", "--config.KEY=VALUE", "--debug"])


def test_a_config_error_met_in_the_run_is_one_line(tmp_path, mnist_data_dir):
    """The check that a dataset's channels match the model runs in train_and_evaluate; the
    real entry point prints its message alone (``--debug`` would show the traceback)."""
    out = train_cli(
        tmp_path / "w", f"--config.data.data_dir={mnist_data_dir}", "--config.model.channels=3"
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("jepa-train: ValueError: data.dataset='mnist5k' has 1-channel images")
    assert "--config.model.channels=1" in last
    debug = train_cli(
        tmp_path / "w",
        f"--config.data.data_dir={mnist_data_dir}",
        "--config.model.channels=3",
        "--debug",
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_opening_a_checkpointer_prints_nothing():
    """Scripts that open a checkpoint (the demo's report, ``load_encoder`` in a notebook) print
    no library warning: the checkpointer's deliberate override of Orbax's array handler is
    registered quietly."""
    code = (
        "from jepa import checkpointing; import tempfile; "
        "checkpointing.Checkpointer(tempfile.mkdtemp()); print('opened')"
    )
    out = run(["-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "opened"
    assert "WARNING" not in out.stderr and "overriding" not in out.stderr, out.stderr
