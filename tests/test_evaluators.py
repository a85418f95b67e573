"""Evaluators as plug-ins: one registered outside jepa/evaluate runs through jepa-eval, and
``config.evals`` runs them during training, with the numbers jepa-eval gives on the
checkpoint of the same step."""

import json
import os

import numpy as np
import pytest
from helpers import tiny_mnist_config

from jepa import train
from jepa.evaluate import base
from jepa.evaluate import main as eval_main
from jepa.metrics import read_metrics


class ToyEvaluator:
    """The mean pooled embedding of two fixed images: reads the encoder jepa-eval hands it."""

    def __init__(self, config, workdir, *, baselines=False, **_):
        self.size, self.baselines, self.workdir = config.model.image_size, baselines, workdir

    def run(self, encoder):
        images = np.zeros((2, self.size, self.size, 1), np.uint8)
        _, pooled = encoder(images)
        return {"top1": 50.0, "mean": float(np.mean(pooled)), "weights": encoder.weights}


@pytest.fixture
def toy():
    base.register("toy", ToyEvaluator)
    yield
    del base.EVALUATORS["toy"]


@pytest.fixture(scope="module")
def run_with_evals(tmp_path_factory, mnist_data_dir):
    """4 steps with kNN every 2 steps and a checkpoint at each; the log interval (3) is not
    the eval interval, so the eval steps force their own metrics rows."""
    workdir = str(tmp_path_factory.mktemp("evals"))
    config = tiny_mnist_config(
        mnist_data_dir, evals=("knn",), eval_every=2, log_every=3, checkpoint_every=2
    )
    config.eval.knn_k = 5
    train.train_and_evaluate(config, workdir)
    return workdir


def test_a_registered_evaluator_runs_through_jepa_eval(run_with_evals, toy, capsys):
    import jepa

    results = eval_main.main(["--workdir", run_with_evals, "--protocol", "toy", "--step", "2"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == results[-1]
    assert (printed["protocol"], printed["step"], printed["weights"]) == ("toy", 2, "target")
    expected = jepa.load_encoder(run_with_evals, 2)(np.zeros((2, 28, 28, 1), np.uint8))[1]
    np.testing.assert_allclose(printed["mean"], float(np.mean(expected)), rtol=1e-6)
    with open(os.path.join(run_with_evals, "eval", "toy_step2.json")) as f:
        assert json.load(f) == printed
    with pytest.raises(SystemExit, match=r"--protocol='svm'; valid: \(.*'knn'.*'toy'"):
        eval_main.main(["--workdir", run_with_evals, "--protocol", "svm"])


def test_training_evals_equal_jepa_eval_on_the_checkpoint_of_that_step(run_with_evals):
    rows = read_metrics(run_with_evals)
    assert [r["step"] for r in rows] == [2, 3, 4]
    with_knn = {r["step"]: r for r in rows if "knn/top1" in r}
    assert sorted(with_knn) == [2, 4]
    assert all(r["knn/k"] == 5 for r in with_knn.values())
    # Nothing cached by training: jepa-eval below extracts its own features.
    assert not os.path.exists(os.path.join(run_with_evals, "eval", "features"))
    for step, row in with_knn.items():
        (result,) = eval_main.main(
            ["--workdir", run_with_evals, "--protocol", "knn", "--step", str(step)]
            + ["--config.eval.knn_k=5"]
        )
        # Same encoder, same splits in the same order, same vote: the same number.
        assert result["step"] == step and result["top1"] == row["knn/top1"]
        assert 10.0 < result["top1"] <= 100.0


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(evals=("svm",), eval_every=2), r"evals='svm'; valid: \("),
        (dict(evals=("knn",)), r"evals=\('knn',\) with eval_every=0 never runs; valid: "),
        (dict(evals=("levels",), eval_every=2), r"jepa-eval --workdir W --protocol levels"),
        (dict(eval_every=-1), r"eval_every=-1; valid: 0 \(off\)"),
    ],
)
def test_bad_training_evals_fail_before_training(overrides, message, tmp_path, mnist_data_dir):
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(tiny_mnist_config(mnist_data_dir, **overrides), str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")
