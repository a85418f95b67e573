"""``jepa.load_encoder(workdir)`` with no other argument is the encoder ``jepa-eval`` probes, for
every objective: same weights (the method's own unless ``eval.weights`` says otherwise) and the
same features on the same images."""

import numpy as np
import pytest
from helpers import TINY_MULTIVIEW, tiny_mnist_config
from test_future import tiny_future_config
from test_hierarchy import tiny_hierarchy_config

import jepa
from jepa import config as config_lib
from jepa import methods, train
from jepa.data import augment, pipeline
from jepa.evaluate import main as eval_main
from jepa.evaluate import protocols

# objective → (tiny config, the encoder its probes read by default)
METHODS = {
    "masked": (lambda mnist, smm: tiny_mnist_config(mnist, total_steps=2), "target"),
    "multiview": (
        lambda mnist, smm: tiny_mnist_config(mnist, total_steps=2, **TINY_MULTIVIEW),
        "context",
    ),
    "future": (lambda mnist, smm: tiny_future_config(smm, total_steps=2), "target"),
    "hierarchy": (lambda mnist, smm: tiny_hierarchy_config(smm, total_steps=2), "target"),
}


def probed_features(workdir, mnist_data_dir, monkeypatch, *flags):
    """What jepa-eval's linear probe receives for the first 32 mnist5k test digits (video runs'
    frame encoders read them as images), and the config it ran with."""
    seen = {}

    def capture(protocol, config):
        def classify(train_x, train_y, test_x, test_y):
            seen.update(test_x=test_x, config=config)
            return {"top1": 0.0, "val_top1": 0.0, "lr": 0.0, "wd": 0.0, "compiles": 0}

        return classify

    monkeypatch.setattr(protocols, "make_classifier", capture)
    result = eval_main.main(
        [
            f"--workdir={workdir}",
            "--config.eval.dataset=mnist5k",
            f"--config.eval.data_dir={mnist_data_dir}",
            "--config.eval.train_split=train[:16]",
            "--config.eval.test_split=test[:32]",
            *flags,
        ]
    )[-1]
    return result, seen["test_x"], seen["config"]


@pytest.mark.parametrize("objective", sorted(METHODS))
def test_load_encoder_reads_what_jepa_eval_probes(
    objective, tmp_path, mnist_data_dir, smm_data_dir, monkeypatch
):
    make_config, expected_weights = METHODS[objective]
    config = make_config(mnist_data_dir, smm_data_dir)
    assert config.objective == objective and config.eval.weights == ""
    workdir = str(tmp_path / objective)
    train.train_and_evaluate(config, workdir)

    result, probed, eval_config = probed_features(workdir, mnist_data_dir, monkeypatch)
    enc = jepa.load_encoder(workdir)
    assert enc.weights == result["weights"] == expected_weights
    assert enc.step == result["step"]

    # The probe's images as [0, 1] pixels (resized to the model's resolution, undoing only the
    # normalization), through the encoder a user loads: its pooled output is the probe's input.
    data_cfg = methods.data_config(eval_config)
    data_cfg.dataset, data_cfg.data_dir = "mnist5k", mnist_data_dir
    (batch,) = list(pipeline.make_eval_batches(data_cfg, "test[:32]", 32))
    mean, std = augment.resolve_mean_std(None, None, config.model.channels)
    pixels = np.asarray(batch["image"]) * np.asarray(std) + np.asarray(mean)
    _, pooled = enc(pixels.astype(np.float32))
    assert result["pooling"] == "avg"
    np.testing.assert_allclose(probed, np.asarray(pooled), rtol=1e-4, atol=1e-4)

    # The other encoder is one argument away, and is a different one.
    other = {"target": "context", "context": "target"}[expected_weights]
    other_enc = jepa.load_encoder(workdir, weights=other)
    assert other_enc.weights == other
    assert not np.allclose(other_enc(pixels.astype(np.float32))[1], pooled)
    # An explicit --config.eval.weights probes that one, the encoder load_encoder(weights=)
    # gives.
    flag = f"--config.eval.weights={other}"
    result, probed, _ = probed_features(workdir, mnist_data_dir, monkeypatch, flag)
    assert result["weights"] == other
    np.testing.assert_allclose(
        probed, np.asarray(other_enc(pixels.astype(np.float32))[1]), rtol=1e-4, atol=1e-4
    )


def test_eval_weights_is_the_methods_own_unless_set():
    for objective, weights in (("multiview", "context"), ("masked", "target")):
        c = methods.with_method(config_lib.base_config(), objective)
        assert methods.eval_weights(c) == weights
    c.method.loss.target_encoder = "online"  # no EMA in the loss
    assert methods.eval_weights(c) == "context"
    c.eval.weights = "target"
    assert methods.eval_weights(c) == "target"
