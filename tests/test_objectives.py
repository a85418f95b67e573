"""Energies, target normalization and anti-collapse regularizers against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jepa import objectives


def test_smooth_l1_matches_hand_values():
    pred = jnp.array([[0.0, 0.5, 3.0, -2.0]])
    target = jnp.zeros((1, 4))
    # 0, 0.5·0.25 = 0.125, 3 − 0.5 = 2.5, 2 − 0.5 = 1.5 → mean 1.03125
    assert float(objectives.smooth_l1_energy(pred, target)[0]) == pytest.approx(1.03125)


def test_l1_l2_cosine():
    pred = jnp.array([[1.0, 2.0], [0.0, 1.0]])
    target = jnp.array([[0.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(objectives.l1_energy(pred, target), [1.5, 0.5])
    np.testing.assert_allclose(objectives.l2_energy(pred, target), [2.5, 0.5])
    cos = objectives.cosine_energy(jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([[0.0, 3.0]] * 2))
    np.testing.assert_allclose(cos, [1.0, 1.0 - 1.0 / np.sqrt(2)], rtol=1e-6)


def test_normalize_targets():
    x = jnp.array([[1.0, 2.0, 3.0, 6.0]])
    y = objectives.normalize_targets(x)
    mean, var = 3.0, (4 + 1 + 0 + 9) / 4
    np.testing.assert_allclose(y, (np.array([[1, 2, 3, 6]]) - mean) / np.sqrt(var + 1e-5), 1e-6)


def test_unknown_energy_names_the_key():
    with pytest.raises(ValueError, match="method.loss.energy"):
        objectives.energy_fn("hinge")


def test_vicreg_variance_hand_values():
    # dim 0: unbiased var 2 → std ≈ 1.414 ≥ γ = 1 → 0; dim 1: constant → std √1e-4 = 0.01 → 0.99
    z = jnp.array([[0.0, 3.0], [2.0, 3.0]])
    assert float(objectives.vicreg_variance(z)) == pytest.approx(0.99 / 2, rel=1e-5)
    assert float(objectives.vicreg_variance(z, gamma=2.0)) == pytest.approx(
        ((2 - np.sqrt(2 + 1e-4)) + (2 - 0.01)) / 2, rel=1e-5
    )


def test_vicreg_covariance_hand_values():
    # centred rows ±(1, 1, 0): cov = [[2, 2, 0], [2, 2, 0], [0, 0, 0]]; off-diagonal² = 8; / d=3
    z = jnp.array([[2.0, 1.0, 5.0], [0.0, -1.0, 5.0]])
    assert float(objectives.vicreg_covariance(z)) == pytest.approx(8.0 / 3.0, rel=1e-6)
    # decorrelated dimensions cost nothing
    assert (
        float(objectives.vicreg_covariance(jnp.array([[1.0, 1], [1, -1], [-1, 1], [-1, -1]]))) == 0
    )


def test_epps_pulley_matches_complex_formula():
    x = np.array([[-0.3, 1.2], [0.5, -2.0], [2.2, 0.1]], np.float32)
    t = np.linspace(-5, 5, 17)
    g = np.exp(-0.5 * t**2)
    expected = []
    for col in x.T:
        ecf = np.exp(1j * col[:, None] * t).mean(0)  # empirical characteristic function
        expected.append(3 * np.trapezoid(np.abs(ecf - g) ** 2 * g, t))
    np.testing.assert_allclose(objectives.epps_pulley(jnp.asarray(x)), expected, rtol=1e-5)


def test_sigreg_separates_gaussian_from_collapsed():
    key = jax.random.PRNGKey(0)
    gaussian = jax.random.normal(jax.random.PRNGKey(1), (2048, 32))
    collapsed = jnp.ones((2048, 32)) + 0.01 * gaussian
    low = float(objectives.sigreg(gaussian, key, num_slices=64))
    high = float(objectives.sigreg(collapsed, key, num_slices=64))
    # under H0 the statistic stays O(1) whatever n; a collapsed batch scales with n
    assert low < 3.0 and high > 100 * low
    # same key → same directions → same value; a new key draws new directions
    assert float(objectives.sigreg(gaussian, key, num_slices=64)) == low
    assert float(objectives.sigreg(gaussian, jax.random.PRNGKey(2), num_slices=64)) != low


def test_regularizers_use_global_batch_statistics_when_sharded():
    """On 8 devices with the batch split, every term equals its single-device value."""
    z = jax.random.normal(jax.random.PRNGKey(3), (64, 16)) * jnp.linspace(0.1, 2.0, 16)
    key = jax.random.PRNGKey(4)

    def terms(z):
        return (
            objectives.vicreg_variance(z),
            objectives.vicreg_covariance(z),
            objectives.sigreg(z, key, num_slices=32),
        )

    single = jax.jit(terms)(z)
    mesh = jax.make_mesh(
        (8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:8]
    )
    sharded_z = jax.device_put(z, NamedSharding(mesh, PartitionSpec("data", None)))
    assert len(sharded_z.addressable_shards) == 8
    sharded = jax.jit(terms)(sharded_z)
    np.testing.assert_allclose(sharded, single, rtol=1e-5)
