"""Energies and target normalization against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="loss.energy"):
        objectives.energy_fn("hinge")
