"""Probes, health metrics and checkpoint reuse."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_mnist_config, with_overrides

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
    alarms = health.collapse_alarms({"feature_std": 1e-4, "rankme_centered": 1.1}, 1e-2, 2.0)
    assert len(alarms) == 2


def test_collapse_alarms_at_the_default_floors():
    """At the defaults of ``config.health``, on pooled embeddings [64, 32] built to be what
    each case names: isotropic Gaussian (healthy: no alarm); the same spread around a large
    mean vector every sample shares (healthy: RankMe on the raw matrix reads ≈ 1, the centred
    rank the alarm reads is unchanged, no alarm); one direction plus 0.1 % noise (dimensional
    collapse: per-dimension std ≈ 0.7 but effective rank ≈ 1, so the rank alarm alone); every
    sample the same vector plus 1e-4 noise (complete collapse: the std alarm; centred, what is
    left is isotropic noise, so not the rank alarm)."""
    from jepa import config as config_lib

    floors = config_lib.base_config().health
    min_std, min_rank = floors.min_std, floors.min_rank
    rng = np.random.default_rng(0)

    def alarms(z):
        return health.collapse_alarms(health.health_metrics(jnp.asarray(z)), min_std, min_rank)

    healthy = rng.standard_normal((64, 32))
    shifted = healthy + 500.0 * rng.standard_normal(32)
    direction = rng.standard_normal(32)
    one_direction = np.outer(rng.standard_normal(64), direction)
    one_direction += 1e-3 * rng.standard_normal((64, 32))
    constant = np.tile(rng.standard_normal(32), (64, 1)) + 1e-4 * rng.standard_normal((64, 32))
    m = health.health_metrics(jnp.asarray(one_direction))
    assert float(m["feature_std"]) > 50 * min_std and float(m["rankme_centered"]) < 1.2
    assert alarms(healthy) == []
    m, m0 = health.health_metrics(jnp.asarray(shifted)), health.health_metrics(jnp.asarray(healthy))
    assert float(m["rankme"]) < 1.2 < 20 < float(m["rankme_centered"])
    np.testing.assert_allclose(m["rankme_centered"], m0["rankme_centered"], rtol=1e-3)
    assert alarms(shifted) == []
    dimensional = alarms(one_direction)
    assert len(dimensional) == 1 and dimensional[0].startswith("effective rank")
    complete = alarms(constant)
    assert len(complete) == 1 and complete[0].startswith("feature std")
    # Two orthogonal directions of equal energy around their mean: effective rank exactly 2.
    two = np.zeros((64, 32))
    two[::4, 0], two[1::4, 0], two[2::4, 1], two[3::4, 1] = 1.0, -1.0, 1.0, -1.0
    assert float(health.rankme_centered(jnp.asarray(two + 3.0))) == pytest.approx(2.0, abs=1e-4)
    assert alarms(two + 3.0) == []


def test_centred_rankme_is_rankme_of_the_mean_removed_matrix_by_hand():
    """[[1, 0], [3, 0], [0, 2], [0, 4]] minus its column means (1, 1.5): the singular values of
    the centred 4 × 2 matrix are the square roots of the eigenvalues of its 2 × 2 Gram matrix,
    (trace / 2 ± sqrt(trace² / 4 − det)); RankMe of those differs from RankMe of the raw
    matrix."""
    x = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    c = x - x.mean(0)
    gram = [[0.0, 0.0], [0.0, 0.0]]
    for i in range(2):
        for j in range(2):
            gram[i][j] = sum(a * b for a, b in zip(c[:, i], c[:, j], strict=True))
    tr, det = gram[0][0] + gram[1][1], gram[0][0] * gram[1][1] - gram[0][1] * gram[1][0]
    disc = (tr * tr / 4 - det) ** 0.5
    s = np.sqrt([tr / 2 + disc, tr / 2 - disc])
    p = s / s.sum() + 1e-7
    expected = float(np.exp(-(p * np.log(p)).sum()))
    assert float(health.rankme_centered(jnp.asarray(x))) == pytest.approx(expected, rel=1e-5)
    assert abs(expected - float(health.rankme(jnp.asarray(x)))) > 0.05


def gaussian_clusters(seed: int, n: int, classes: int, dim: int, spread: float):
    """n samples around ``classes`` random centers (std ``spread``), unit noise: (x, y)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * spread
    y = rng.integers(0, classes, n)
    return centers[y] + rng.standard_normal((n, dim)), y


def test_linear_probe_separates_separable_classes():
    x, y = gaussian_clusters(0, 600, classes=4, dim=16, spread=3)
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


def test_whitening_decorrelates_with_the_fitting_sets_map():
    rng = np.random.default_rng(2)
    # (variances above the 1e-4 × mean floor of whiten, so every direction is rescaled)
    mix = rng.standard_normal((6, 6)) @ np.diag([1.0, 0.5, 0.1, 0.05, 0.03, 3.0])
    train, other = rng.standard_normal((4000, 6)) @ mix, rng.standard_normal((10, 6)) @ mix
    white_train, white_other = linear_probe.whiten(train, other)
    np.testing.assert_allclose(np.cov(white_train, rowvar=False), np.eye(6), atol=1e-3)
    # the same affine map for both: the first rows of train, passed as "other", land where
    # train's own rows did
    again = linear_probe.whiten(train, train[:10])[1]
    np.testing.assert_allclose(again, white_train[:10], rtol=1e-4, atol=1e-4)
    assert white_other.shape == (10, 6)


def test_converged_probe_is_blind_to_an_ill_conditioned_linear_mix():
    # Separable clusters, then the same features through a mix whose directions differ in
    # scale by 10⁴ (after per-feature standardization the columns stay nearly collinear):
    # a linear classifier exists as before, and the whitened L-BFGS probe finds it.
    x, y = gaussian_clusters(3, 1200, classes=5, dim=12, spread=3)
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    mixed = x @ (q * np.logspace(0, -4, 12)) @ rng.standard_normal((12, 24))
    plain = linear_probe.converged_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:])
    out = linear_probe.converged_linear_probe(mixed[:1000], y[:1000], mixed[1000:], y[1000:])
    assert plain["top1"] > 0.95
    assert out["top1"] == pytest.approx(plain["top1"], abs=0.02)
    assert [g["l2"] for g in out["grid"]] == [1e-5, 1e-4, 1e-3, 1e-2]


def test_converged_probe_holds_out_whole_groups_and_is_at_chance_on_noise():
    groups = np.repeat(np.arange(50), 4)
    held = linear_probe.held_out_groups(groups, 0.2, seed=0)
    assert held.sum() == 40  # 10 of the 50 groups, all 4 rows of each
    assert all(held[groups == g].all() or not held[groups == g].any() for g in range(50))
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((800, 16)), rng.integers(0, 5, 800)
    out = linear_probe.converged_linear_probe(x[:600], y[:600], x[600:], y[600:])
    assert out["top1"] < 0.32


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
    np.testing.assert_allclose(enc.normalize(images), x, rtol=1e-5, atol=1e-6)  # the public way
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
    with pytest.raises(SystemExit, match="jepa-eval: KeyError: unknown config key 'eval.poolin'"):
        eval_main.main(["--workdir", trained_workdir, "--config.eval.poolin=avg"])
    with pytest.raises(SystemExit, match="--protocol"):
        eval_main.main(["--workdir", trained_workdir, "--protocol", "svm"])


def test_loaded_weights_are_the_trained_ones_not_a_fresh_init(trained_workdir):
    """The run's initial encoder is re-created from its seed (the split create_train_state
    makes). After 2 steps the context encoder has moved away from it, and the EMA target
    (momentum ≈ 0.996) has moved with it by well under a tenth as much: what load_encoder
    returns for each is that encoder, not a re-initialization and not the other one."""
    import flax.linen as nn

    from jepa import state as state_lib

    target = jepa.load_encoder(trained_workdir)
    context = jepa.load_encoder(trained_workdir, weights="context")
    init_key, _ = jax.random.split(jax.random.PRNGKey(target.config.seed))
    init = nn.unbox(state_lib.init_boxed_params(target.config, init_key))["encoder"]

    def dist(a, b):
        diffs = jax.tree.map(lambda x, y: np.asarray(x, np.float64) - np.asarray(y), a, b)
        return float(np.sqrt(sum((d * d).sum() for d in jax.tree.leaves(diffs))))

    moved, followed = dist(context.params, init), dist(target.params, init)
    assert moved > 1e-3
    assert 1e-6 * moved < followed < 0.1 * moved


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


def test_ridge_matches_normal_equations_and_brute_force_leave_one_out():
    """The SVD path equals (XcᵀXc + λI)⁻¹XcᵀYc with an unpenalized intercept, and its
    leave-one-out predictions equal refitting without each sample."""
    from jepa.evaluate import ridge

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
    y1 = np.eye(3)[y]
    alphas = np.array([1e-2, 1.0])
    w, b, loo = ridge.ridge_path(jnp.asarray(x), jnp.asarray(y1), jnp.asarray(alphas))
    xc = x - x.mean(0)
    lam = alphas * np.mean(np.linalg.svd(xc, compute_uv=False) ** 2)

    def fit(xs, ys, lam_):
        mx, my = xs.mean(0), ys.mean(0)
        wv = np.linalg.solve((xs - mx).T @ (xs - mx) + lam_ * np.eye(5), (xs - mx).T @ (ys - my))
        return wv, my - mx @ wv

    for a in range(2):
        wv, bv = fit(x, y1, lam[a])
        np.testing.assert_allclose(w[a], wv, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b[a], bv, rtol=1e-4, atol=1e-5)
        for i in range(12):
            keep = np.arange(12) != i
            # λ stays the full-data value: leave-one-out of *this* fit
            wi, bi = fit(x[keep], y1[keep], lam[a])
            np.testing.assert_allclose(loo[a, i], x[i] @ wi + bi, rtol=1e-3, atol=1e-4)


def test_fewshot_subsets_are_stratified_and_deterministic():
    from jepa.evaluate import fewshot

    labels = np.repeat(np.arange(4), [50, 100, 200, 30])
    idx = fewshot.subset_indices(labels, "5-shot", seed=1)
    assert np.bincount(labels[idx]).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(idx, fewshot.subset_indices(labels, "5-shot", seed=1))
    assert not np.array_equal(idx, fewshot.subset_indices(labels, "5-shot", seed=2))
    pct = fewshot.subset_indices(labels, "10%", seed=0)
    assert np.bincount(labels[pct]).tolist() == [5, 10, 20, 3]
    assert np.bincount(labels[fewshot.subset_indices(labels, "1%", 0)]).tolist() == [1, 1, 2, 1]
    with pytest.raises(ValueError, match="N-shot"):
        fewshot.parse_subset("ten")
    with pytest.raises(ValueError, match="class 3 has only 30"):
        fewshot.subset_indices(labels, "40-shot", seed=0)


def test_fewshot_probe_learns_from_ten_labels_per_class():
    from jepa.evaluate import fewshot

    x, y = gaussian_clusters(0, 1500, classes=5, dim=40, spread=2)
    rng = np.random.default_rng(1)
    out = fewshot.fewshot_probe(
        x[:1000], y[:1000], x[1000:], y[1000:], subsets=("10-shot", "1-shot")
    )
    assert out["subsets"]["10-shot"]["labels"] == 50 and out["subsets"]["1-shot"]["labels"] == 5
    assert out["top1"] == out["subsets"]["10-shot"]["top1"] > 0.9
    noise = rng.standard_normal((1500, 40))
    chance = fewshot.fewshot_probe(noise[:1000], y[:1000], noise[1000:], y[1000:])
    assert chance["top1"] < 0.35


def test_attentive_probe_finds_the_informative_token():
    """The class lives in one token at a random position among 8 noisy ones: the average over
    tokens dilutes it 8× under noise, a learned query can attend to it (its marker dimension)."""
    from jepa.evaluate import attentive_probe

    rng = np.random.default_rng(0)
    n, t, d = 1200, 8, 16
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    pos = rng.integers(0, t, n)
    x[np.arange(n), pos, :4] += 3.0 * np.eye(4)[y]
    x[np.arange(n), pos, 4] += 6.0  # the marker the query can key on
    out = attentive_probe.attentive_probe(
        x[:1000],
        y[:1000],
        x[1000:],
        y[1000:],
        num_heads=2,
        lrs=(3e-3, 1e-2),
        wds=(0.01,),
        epochs=15,
        batch_size=100,
    )
    assert out["compiles"] == 1 and len(out["grid"]) == 2
    assert out["top1"] > 0.9
    with pytest.raises(ValueError, match="eval.pooling=none"):
        attentive_probe.attentive_probe(x[:10, 0], y[:10], x[:10, 0], y[:10], num_heads=2)


def test_linear_grid_of_4_by_3_is_one_compiled_program():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 8)), rng.integers(0, 3, 300)
    out = linear_probe.linear_probe(
        x[:200],
        y[:200],
        x[200:],
        y[200:],
        lrs=(1e-3, 3e-3, 1e-2, 3e-2),
        wds=(0.0, 1e-3, 1e-2),
        epochs=2,
    )
    assert out["compiles"] == 1 and len(out["grid"]) == 12
    # The chosen (lr, wd) is the first grid entry with the best validation top-1.
    val = [g["val_top1"] for g in out["grid"]]
    assert len(set(val)) > 1  # the choice is not a tie over the whole grid
    best = out["grid"][val.index(max(val))]
    assert (out["lr"], out["wd"], out["val_top1"]) == (best["lr"], best["wd"], max(val))


def test_features_sharded_over_8_devices_equal_one_device():
    import flax.linen as nn
    from jax.sharding import Mesh

    from jepa.models import build_encoder
    from jepa.state import init_boxed_params

    config = tiny_mnist_config("", **{"model.depth": 2})
    module = build_encoder(config)
    params = nn.unbox(init_boxed_params(config, jax.random.PRNGKey(0))["encoder"])
    images = jnp.asarray(np.random.default_rng(0).standard_normal((16, 28, 28, 1)), jnp.float32)
    outs = []
    for n in (1, 8):
        mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
        fn = features.make_feature_fn(module, 2, "last4", "avg", mesh)
        out = fn(
            jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())),
            images,
        )
        assert len(out.sharding.device_set) == n
        outs.append(np.asarray(out))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    # eval.dtype=bfloat16: the same features to bf16 precision, returned as float32.
    bf16 = build_encoder(with_overrides(config, {"model.dtype": "bfloat16"}))
    fn = features.make_feature_fn(bf16, 2, "last4", "avg", mesh)
    out = fn(
        jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())),
        images,
    )
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, outs[0], atol=0.1)
    assert not np.array_equal(np.asarray(out), outs[0])
    assert features.feature_mesh(12).devices.size == 6  # the most devices dividing the batch


def test_load_encoder_on_one_device_from_a_run_trained_on_8(trained_workdir):
    """The fixture trained on 8 devices; a 1-device process loads the same encoder."""
    import subprocess
    import sys

    assert jax.device_count() == 8
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    expected = np.asarray(jepa.load_encoder(trained_workdir)(images)[1])
    code = (
        "import jax, jepa, numpy as np; assert jax.device_count() == 1; "
        "x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8); "
        f"print(np.asarray(jepa.load_encoder({trained_workdir!r})(x)[1]).tolist())"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_allclose(json.loads(out.stdout.splitlines()[-1]), expected, rtol=1e-5)


def test_export_is_params_only_and_loads_strictly(trained_workdir, tmp_path):
    from jepa import hub

    out = str(tmp_path / "export")
    info = hub.export_encoder(trained_workdir, out, weights="context")
    assert info["step"] == 2 and info["weights"] == "context"
    enc, ref = jepa.load_encoder(out), jepa.load_encoder(trained_workdir, weights="context")
    jax.tree.map(np.testing.assert_array_equal, enc.params, ref.params)
    assert enc.step == 2 and enc.config.model.width == ref.config.model.width
    # Only the encoder: no optimizer state, no predictor, no target copy on disk.
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    n_params = sum(x.size for x in jax.tree.leaves(enc.params))
    assert size < 4 * n_params * 1.5 + 20_000
    with pytest.raises(FileExistsError, match="not empty"):
        hub.export_encoder(trained_workdir, out)

    # A config that no longer describes the saved arrays is refused, naming path and shapes.
    cfg_path = os.path.join(out, hub.EXPORT_CONFIG)
    cfg = json.load(open(cfg_path))
    cfg["model"]["width"] = 48
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(
        ValueError, match=r"shape \(49, 32\) in export .*, \(49, 48\) in the model: patch"
    ):
        jepa.load_encoder(out)


@pytest.mark.parametrize("protocol", ["knn", "fewshot", "attentive"])
def test_jepa_eval_protocols_print_their_results(trained_workdir, protocol, capsys):
    results = eval_main.main(
        [
            "--workdir",
            trained_workdir,
            "--protocol",
            protocol,
            "--config.eval.attentive_epochs=2",
            "--config.eval.attentive_lrs=(1e-3, 3e-3)",
            "--config.eval.fewshot=('5-shot', '1%')",
            "--config.eval.fewshot_seeds=2",
            *(["--all-steps"] if protocol == "knn" else []),
        ]
    )
    parsed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert parsed == results[-1] and parsed["protocol"] == protocol and parsed["step"] == 2
    assert 10.0 < parsed["top1"] <= 100.0
    if protocol == "knn":  # every saved step, and the plot of top-1 against step
        assert [r["step"] for r in results] == [2]
        assert os.path.exists(os.path.join(trained_workdir, "eval", "probe_vs_step.png"))
    if protocol == "attentive":
        assert parsed["pooling"] == "none" and parsed["compiles"] == 1
    if protocol == "fewshot":
        assert parsed["subsets"]["5-shot"]["labels"] == 50
        assert parsed["top1"] == parsed["subsets"]["5-shot"]["top1"]


def test_heldout_digits_sit_on_mnists_canvas():
    from jepa.evaluate import transfer

    images, labels = transfer.heldout_digits()
    assert images.shape == (1797, 28, 28, 1) and images.dtype == np.uint8
    assert sorted(set(labels.tolist())) == list(range(10))
    # MNIST's 4-px empty border around a 20 × 20 digit box, ink up to white
    assert images[:, :4].max() == 0 and images[:, -4:].max() == 0 and images.max() == 255


def test_demo_report_sets_the_pooled_embedding_beside_pixels_on_heldout_digits(
    trained_workdir, tmp_path, capsys
):
    """scripts/demo_report.py on a run: the pooled probe is the headline, flattened tokens a
    second column, and the held-out digits check reads the encoder load_encoder gives."""
    import importlib.util
    import shutil

    workdir = str(tmp_path / "demo")
    shutil.copytree(trained_workdir, workdir)
    for name, top1 in (("eval_linear.json", 91.0), ("eval_linear_flatten.json", 95.0)):
        result = {"top1": top1, "pooling": "avg", "weights": "target", "step": 2}
        result["baselines"] = {"pixels": 87.8, "random_encoder": 80.0}
        with open(os.path.join(workdir, name), "w") as f:
            json.dump(result, f)
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "demo_report.py")
    spec = importlib.util.spec_from_file_location("demo_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    probe = module.main(["--workdir", workdir, "--start", "0", "--config", "tiny"])
    out = capsys.readouterr().out
    assert "held-out digits" in out and "pooled embedding (32-d)" in out
    assert (probe["top1"], probe["flatten"]["top1"]) == (91.0, 95.0)
    held = probe["heldout_digits"]
    assert held["weights"] == jepa.load_encoder(workdir).weights == "target"
    assert (held["train"], held["test"], held["pooled_dim"]) == (898, 899, 32)
    assert 10.0 < held["pooled"] <= 100.0 and held["pixels"] > 90.0  # pixels: a real baseline
    assert json.load(open(os.path.join(workdir, "probe.json"))) == probe
