"""The latent variable z: its pure pieces against hand values, and the point of it — on a
future with two equally likely outcomes, min_z E is far below the energy of a predictor
without z."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jepa import latent


def test_code_usage_penalty_and_perplexity_hand_values():
    # Two samples, each sure of a different code: the batch uses both equally → KL 0.
    split = jnp.array([[0.0, 50.0], [50.0, 0.0]])
    assert float(latent.code_usage_penalty(split, 1.0)) == pytest.approx(0.0, abs=1e-6)
    # Every sample picks code 0 of 4 → KL(one-hot || uniform) = log 4.
    same = jnp.array([[0.0, 50.0, 50.0, 50.0]] * 3)
    assert float(latent.code_usage_penalty(same, 1.0)) == pytest.approx(np.log(4), rel=1e-5)
    # Argmins 0, 0, 1, 1 → perplexity exp(log 2) = 2; all the same → 1.
    e = jnp.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert float(latent.code_perplexity(e)) == pytest.approx(2.0, rel=1e-5)
    assert float(latent.code_perplexity(e[:2])) == pytest.approx(1.0, rel=1e-5)


def test_information_penalties_hand_values():
    mu = jnp.array([[1.0, 0.0]])
    logvar = jnp.array([[0.0, np.log(2.0)]])
    # KL: 0.5·[(1 + 1 − 1 − 0) + (0 + 2 − 1 − log 2)] = 0.5·(2 − log 2)
    kl = latent.information_penalty("kl", mu, logvar)
    assert float(kl[0]) == pytest.approx(0.5 * (2 - np.log(2)), rel=1e-5)
    assert float(latent.information_penalty("l2", jnp.array([[3.0, -4.0]]), logvar)[0]) == 25.0
    assert float(latent.information_penalty("l1", jnp.array([[3.0, -4.0]]), logvar)[0]) == 7.0
    with pytest.raises(ValueError, match="method.latent.penalty"):
        latent.information_penalty("l3", mu, logvar)


def test_minimize_energy_follows_gradient_descent_exactly():
    """E(z) = |z − c|²: each step multiplies z − c by (1 − 2·lr), so after k steps from 0,
    z = c·(1 − (1 − 2·lr)^k)."""
    c = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    z, e = latent.minimize_energy(lambda z: jnp.sum((z - c) ** 2, -1), jnp.zeros_like(c), 5, 0.1)
    np.testing.assert_allclose(z, c * (1 - 0.8**5), rtol=1e-5)
    np.testing.assert_allclose(e, jnp.sum((c * 0.8**5) ** 2, -1), rtol=1e-4)


class _Predictor(nn.Module):
    @nn.compact
    def __call__(self, sx, z_embedding):
        h = nn.Dense(64)(sx)
        if z_embedding is not None:
            h = h + z_embedding
        return nn.Dense(2)(nn.gelu(nn.Dense(64)(nn.gelu(h))))


def _bimodal(n, seed):
    """x ~ N(0, I₂); y = x ± 2·e₁, the sign a fair coin nobody sees: a two-mode future."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    sign = rng.choice([-1.0, 1.0], n).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(x + 2.0 * sign[:, None] * np.array([1.0, 0.0]))


def _train(spec, steps=400, seed=0):
    pred = _Predictor()
    model = latent.LatentJEPA(
        spec=spec,
        encode_x=lambda p, x: x,
        encode_y=lambda p, y: y,
        predict_fn=lambda p, sx, ze: pred.apply({"params": p}, sx, ze),
        energy_fn=lambda a, b: jnp.sum((a - b) ** 2, -1),
        pool=lambda s: s,
        width=64,
    )
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = {
        "model": pred.init(k1, jnp.zeros((1, 2)), jnp.zeros((1, 64)))["params"],
        "latent": model.init_latent(k2, 2),
    }
    tx = optax.adam(3e-3)
    opt = tx.init(params)
    x, y = _bimodal(512, seed)

    @jax.jit
    def step(params, opt, key):
        # The encoders are the identity: x and y are their own embeddings.
        loss_fn = model.loss_from_embeddings
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, key)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt, aux

    for i in range(steps):
        params, opt, aux = step(params, opt, jax.random.PRNGKey(i))
    return model, params, aux


def test_latent_z_lowers_the_free_energy_of_an_uncertain_future():
    x, y = _bimodal(256, seed=1)  # held-out pairs
    none, p_none, _ = _train(latent.LatentSpec(kind="none"))
    e_none = float(none.free_energy(p_none, x, y)[0].mean())
    assert 3.0 < e_none < 5.0  # it predicts the average of the two outcomes: |±2|² = 4

    disc, p_disc, aux = _train(latent.LatentSpec(kind="discrete", num_codes=4))
    f_disc, codes = disc.free_energy(p_disc, x, y)
    assert float(f_disc.mean()) < 0.2 * e_none
    assert float(latent.code_perplexity(disc.all_code_energies(p_disc, x, y))) >= 2.0
    # The energy API agrees with the free energy at the minimizing code.
    np.testing.assert_allclose(disc.energy(p_disc, x, y, codes), f_disc, rtol=1e-5)
    # Sampled predictions spread over both modes: their first coordinate minus x is ±2.
    preds = disc.sample_predictions(p_disc, x[:64], jax.random.PRNGKey(0), 8)
    offsets = np.asarray(preds[..., 0] - x[:64, 0])
    assert offsets.shape == (8, 64) and offsets.min() < -1.0 and offsets.max() > 1.0

    cont, p_cont, _ = _train(latent.LatentSpec(kind="continuous", dim=2, penalty_weight=1e-2))
    f_cont, z = cont.free_energy(p_cont, x, y)
    assert z.shape == (256, 2)
    assert float(f_cont.mean()) < 0.6 * e_none
    np.testing.assert_allclose(cont.energy(p_cont, x, y, z), f_cont, rtol=1e-4, atol=1e-5)


def test_spec_validation_names_the_key():
    with pytest.raises(ValueError, match="method.latent.kind"):
        latent.LatentSpec(kind="gaussian").validate()
    with pytest.raises(ValueError, match="method.latent.num_codes"):
        latent.LatentSpec(kind="discrete", num_codes=1).validate()
