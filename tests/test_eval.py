"""Probes, health metrics and checkpoint reuse."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_mnist_config

import jepa
from jepa import train
from jepa.data import augment
from jepa.evaluate import features, health, linear_probe
from jepa.evaluate import main as eval_main


def test_rankme_matches_numpy_reference():
    x = np.random.default_rng(0).standard_normal((50, 8)) * np.arange(1, 9)
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum() + 1e-7
    assert float(health.rankme(jnp.asarray(x))) == pytest.approx(
        np.exp(-(p * np.log(p)).sum()), rel=1e-4
    )
    # A rank-1 matrix has effective rank 1; an isotropic one close to its width.
    assert float(health.rankme(jnp.outer(jnp.arange(1.0, 11.0), jnp.ones(6)))) == pytest.approx(
        1.0, abs=1e-3
    )
    iso = np.random.default_rng(1).standard_normal((4000, 6))
    assert float(health.rankme(jnp.asarray(iso))) > 5.8


def test_mean_cosine_and_std_against_hand_values():
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # pairs: (a,b)=0, (a,c)=1/√2, (b,c)=1/√2 → mean √2/3
    assert float(health.mean_cosine(x)) == pytest.approx(np.sqrt(2) / 3, rel=1e-5)
    assert float(health.per_dim_std(x)) == pytest.approx(np.std([1, 0, 1]), rel=1e-5)
    alarms = health.collapse_alarms({"feature_std": 1e-4, "rankme": 1.1}, 1e-2, 2.0)
    assert len(alarms) == 2


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 16)) * 3
    y = rng.integers(0, 4, 600)
    x = centers[y] + rng.standard_normal((600, 16))
    out = linear_probe.linear_probe(
        x[:500], y[:500], x[500:], y[500:], epochs=20, lrs=(1e-2, 1e-1), wds=(0.0, 1e-3)
    )
    assert out["top1"] > 0.97
    assert len(out["grid"]) == 4 and sorted({g["lr"] for g in out["grid"]}) == pytest.approx(
        [1e-2, 1e-1]
    )


def test_linear_probe_is_at_chance_on_noise():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((800, 32)), rng.integers(0, 5, 800)
    out = linear_probe.linear_probe(x[:600], y[:600], x[600:], y[600:], epochs=10)
    assert out["top1"] < 0.35


def test_pooling_shapes():
    tokens = jnp.ones((2, 9, 4))
    aux = {f"block_{i}": jnp.full((2, 9, 4), float(i)) for i in range(6)}
    assert features.select_and_pool(tokens, aux, 6, "last", "avg").shape == (2, 4)
    assert features.select_and_pool(tokens, aux, 6, "last", "flatten").shape == (2, 36)
    last4 = features.select_and_pool(tokens, aux, 6, "last4", "avg")
    np.testing.assert_allclose(last4[0], np.repeat([2.0, 3.0, 4.0, 5.0], 4))
    with pytest.raises(ValueError, match="eval.pooling"):
        features.select_and_pool(tokens, aux, 6, "last", "max")


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, mnist_data_dir):
    workdir = str(tmp_path_factory.mktemp("run"))
    train.train_and_evaluate(tiny_mnist_config(mnist_data_dir, total_steps=2), workdir)
    return workdir


def test_load_encoder_normalizes_like_training(trained_workdir):
    enc = jepa.load_encoder(trained_workdir)
    assert enc.step == 2 and enc.config.model.width == 32
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    tokens, pooled = enc(images)
    assert tokens.shape == (3, 16, 32) and pooled.shape == (3, 32)
    np.testing.assert_allclose(pooled, tokens.mean(1), rtol=1e-5, atol=1e-6)
    # Floats in [0, 1] are the same images as uint8.
    tokens_f, _ = enc(images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(tokens, tokens_f, rtol=1e-4, atol=1e-5)
    # Same as applying the module to the training normalization by hand.
    mean, std = augment.resolve_mean_std(None, None, 1)
    x = (images / 255.0 - np.array(mean)) / np.array(std)
    manual, _ = enc.module.apply({"params": enc.params}, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(tokens, manual, rtol=1e-4, atol=1e-5)
    context = jepa.load_encoder(trained_workdir, weights="context")
    assert not np.allclose(context(images)[0], tokens)  # EMA target != online encoder


def test_jepa_eval_prints_one_json_line(trained_workdir, capsys):
    results = eval_main.main(
        ["--workdir", trained_workdir, "--protocol", "linear", "--config.eval.pooling=flatten"]
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = json.loads(last)
    assert parsed == results[-1]
    assert {"protocol", "step", "dataset", "top1"} <= set(parsed)
    assert parsed["dataset"] == "mnist5k" and parsed["step"] == 2
    assert 10.0 < parsed["top1"] <= 100.0  # a real probe: above chance even after 2 steps


def test_jepa_eval_rejects_unknown_keys(trained_workdir):
    with pytest.raises(KeyError, match="eval.poolin"):
        eval_main.main(["--workdir", trained_workdir, "--config.eval.poolin=avg"])
    with pytest.raises(SystemExit, match="--protocol"):
        eval_main.main(["--workdir", trained_workdir, "--protocol", "svm"])


def test_random_params_differ(trained_workdir):
    enc = jepa.load_encoder(trained_workdir)
    leaves = jax.tree.leaves(enc.params)
    assert all(np.isfinite(np.asarray(x)).all() for x in leaves)


def test_knn_votes_are_weighted_by_temperature():
    """Hand-computed: the query's cosine similarities are 0.96 (class 1), 0.936 and 0.8 (class
    0). At T = 0.07 the nearest neighbour's weight e^(0.96/0.07) = 9.1e5 beats class 0's
    e^(0.936/0.07) + e^(0.8/0.07) = 7.3e5; at T = 1 the two class-0 votes (2.55 + 2.23) beat
    2.61."""
    from jepa.evaluate import knn

    train = np.array([[0.0, 1.0], [0.6, 0.8], [0.8, 0.6]]) * 3.0  # scale is normalized away
    labels = np.array([1, 0, 0])
    query = np.array([[0.28, 0.96]])
    assert knn.knn_predict(train, labels, query, k=3, temperature=0.07).tolist() == [1]
    assert knn.knn_predict(train, labels, query, k=3, temperature=1.0).tolist() == [0]
    assert knn.knn_predict(train, labels, query, k=1, temperature=1.0).tolist() == [1]


def test_knn_sharded_over_8_devices_equals_one_device():
    """101 bank rows over 8 devices (padded to 104, padding never wins) == one device."""
    from jepa.evaluate import knn

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 16))
    train_y, test_y = rng.integers(0, 4, 101), rng.integers(0, 4, 40)
    train_x = centers[train_y] + 0.8 * rng.standard_normal((101, 16))
    test_x = centers[test_y] + 0.8 * rng.standard_normal((40, 16))
    one = knn.knn_predict(train_x, train_y, test_x, k=20, devices=jax.devices()[:1])
    eight = knn.knn_predict(train_x, train_y, test_x, k=20, devices=jax.devices()[:8])
    np.testing.assert_array_equal(one, eight)
    assert (one == test_y).mean() > 0.8  # the clusters are separable
    with pytest.raises(ValueError, match="k=200"):
        knn.knn_predict(train_x, train_y, test_x, k=200)
