"""Schedules and the weight-decay mask against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from jepa import optim


def test_warmup_cosine_schedule():
    s = optim.warmup_cosine_schedule(2e-4, 1e-3, 1e-6, warmup_steps=10, schedule_steps=110)
    assert float(s(0)) == pytest.approx(2e-4)
    assert float(s(5)) == pytest.approx(6e-4)
    assert float(s(10)) == pytest.approx(1e-3)
    assert float(s(60)) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)  # half way: cos(pi/2) = 0
    assert float(s(110)) == pytest.approx(1e-6)
    assert float(s(500)) == pytest.approx(1e-6)


def test_weight_decay_and_momentum_schedules():
    wd = optim.cosine_weight_decay_schedule(0.04, 0.4, 100)
    assert float(wd(0)) == pytest.approx(0.04)
    assert float(wd(50)) == pytest.approx(0.22)
    assert float(wd(100)) == pytest.approx(0.4)
    m = optim.ema_momentum_schedule(0.996, 1.0, 100)
    assert float(m(0)) == pytest.approx(0.996)
    assert float(m(25)) == pytest.approx(0.997)
    assert float(m(100)) == pytest.approx(1.0)


def test_schedule_scale_stretches_schedules():
    c = tiny_config(total_steps=100)
    c.optim.schedule_scale = 1.25
    c.optim.warmup_steps = 0
    m = optim.schedules_from_config(c)["momentum"]
    assert float(m(100)) == pytest.approx(0.996 + 0.004 * 100 / 125)


def test_weight_decay_mask_skips_biases_and_norms():
    params = {
        "block": {
            "attn": {"qkv_kernel": jnp.ones((4, 3, 2, 2)), "qkv_bias": jnp.ones((3, 2, 2))},
            "norm1": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
        },
        "mask_token": jnp.ones((1, 1, 4)),
    }
    mask = optim.weight_decay_mask(params)
    assert mask["block"]["attn"] == {"qkv_kernel": True, "qkv_bias": False}
    assert mask["block"]["norm1"] == {"scale": False, "bias": False}
    assert mask["mask_token"] is True


def test_adamw_step_matches_pytorch_formula():
    """First AdamW step from zero moments: p − lr·(g/(|g|+eps) + wd·p) on decayed leaves."""
    c = tiny_config(total_steps=10)
    c.optim.warmup_steps = 0
    c.optim.start_lr = c.optim.lr = 0.1
    c.optim.weight_decay = c.optim.final_weight_decay = 0.5
    tx = optim.make_optimizer(c)
    params = {"w": jnp.array([[1.0, -2.0]]), "bias": jnp.array([3.0])}
    grads = {"w": jnp.array([[0.5, 0.5]]), "bias": jnp.array([-1.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(
        updates["w"], -0.1 * (1.0 + 0.5 * np.array([[1.0, -2.0]])), rtol=1e-5, atol=2e-6
    )
    np.testing.assert_allclose(updates["bias"], [0.1], rtol=1e-5)
