"""Schedules, the weight-decay mask, and AdamW inside the optimizer and the train step, against
hand-computed values."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import synthetic_batch, tiny_config

from jepa import methods, optim


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


# --- AdamW with the real schedules, against a NumPy AdamW written from its definition -----------

SCHEDULED = {
    "total_steps": 8,
    "optim.start_lr": 2e-4,
    "optim.lr": 1e-3,
    "optim.final_lr": 1e-5,
    "optim.warmup_steps": 2,
    "optim.weight_decay": 0.04,
    "optim.final_weight_decay": 0.4,
    "optim.schedule_scale": 1.25,  # schedules over round(8 · 1.25) = 10 steps
}


def hand_lr(t: int) -> float:
    """2e-4 → 1e-3 linearly over 2 steps, then a half cosine 1e-3 → 1e-5 over steps 2 … 10."""
    if t < 2:
        return 2e-4 + (1e-3 - 2e-4) * t / 2
    return 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * (t - 2) / 8))


def hand_wd(t: int) -> float:
    """0.04 → 0.4 along a half cosine over 10 steps."""
    return 0.4 + (0.04 - 0.4) * 0.5 * (1 + math.cos(math.pi * t / 10))


def numpy_adamw(params, grads_seq, lr, wd, decayed, b1=0.9, b2=0.999, eps=1e-8, clip=0.0):
    """PyTorch's AdamW, step by step: optional global-norm clipping of the gradients, moments,
    bias correction, then p ← p − lr_t·(m̂/(√v̂ + ε) + wd_t·p) where ``decayed``. Returns the
    params after each step."""
    p = {k: np.asarray(v, np.float64).copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    history = []
    for t, grads in enumerate(grads_seq):
        g = {k: np.asarray(x, np.float64) for k, x in grads.items()}
        if clip:
            norm = math.sqrt(sum(float((x * x).sum()) for x in g.values()))
            g = {k: x * min(1.0, clip / norm) for k, x in g.items()}
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1 ** (t + 1)), v[k] / (1 - b2 ** (t + 1))
            step = m_hat / (np.sqrt(v_hat) + eps) + (wd(t) * p[k] if decayed[k] else 0.0)
            p[k] = p[k] - lr(t) * step
        history.append({k: x.copy() for k, x in p.items()})
    return history


def run_optimizer(config, params, grads_seq):
    tx = optim.make_optimizer(config)
    opt_state, history = tx.init(params), []
    for grads in grads_seq:
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history


def test_adamw_applies_the_lr_warmup_cosine_and_the_weight_decay_ramp():
    """Six AdamW steps (warmup, peak, cosine) with gradients that change scale and sign: each
    step's params equal the NumPy AdamW with the hand-written LR and WD of that step."""
    config = tiny_config(**SCHEDULED)
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(2, 3)).astype(np.float32), "bias": np.ones(3, np.float32)}
    grads_seq = [
        {
            k: (rng.normal(size=v.shape) * 10.0 ** rng.integers(-2, 2)).astype(np.float32)
            for k, v in params.items()
        }
        for _ in range(6)
    ]
    got = run_optimizer(config, params, grads_seq)
    want = numpy_adamw(params, grads_seq, hand_lr, hand_wd, {"w": True, "bias": False})
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        for k in params:
            np.testing.assert_allclose(g[k], w[k], rtol=1e-6, atol=1e-7, err_msg=f"{k} step {t}")
    # The hand schedules are what the train step logs as lr and wd.
    schedules = optim.schedules_from_config(config)
    for t in range(6):
        assert float(schedules["lr"](t)) == pytest.approx(hand_lr(t), rel=1e-6)
        assert float(schedules["wd"](t)) == pytest.approx(hand_wd(t), rel=1e-6)


def test_gradient_clipping_scales_by_the_global_norm_before_adam():
    """optim.grad_clip = 1: a step with global norm 0.3 is left alone, steps with norm ≫ 1
    are scaled to norm 1 over all leaves together (one factor, not one per leaf). Adam's
    first step is scale-free, so the norms change from step to step to make clipping show."""
    config = tiny_config(**{**SCHEDULED, "optim.grad_clip": 1.0})
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(2, 3)).astype(np.float32), "bias": np.ones(3, np.float32)}
    grads_seq = []
    for scale in (0.3, 20.0, 0.5, 50.0):
        g = {k: rng.normal(size=v.shape) for k, v in params.items()}
        norm = math.sqrt(sum(float((x * x).sum()) for x in g.values()))
        grads_seq.append({k: (x * scale / norm).astype(np.float32) for k, x in g.items()})
    got = run_optimizer(config, params, grads_seq)
    decayed = {"w": True, "bias": False}
    want = numpy_adamw(params, grads_seq, hand_lr, hand_wd, decayed, clip=1.0)
    unclipped = numpy_adamw(params, grads_seq, hand_lr, hand_wd, decayed)
    for g, w in zip(got, want, strict=True):
        for k in params:
            np.testing.assert_allclose(g[k], w[k], rtol=1e-5, atol=1e-7)
    # Clipping made a difference that the comparison sees.
    assert np.abs(unclipped[-1]["w"] - want[-1]["w"]).max() > 1e-5


def test_train_step_applies_the_logged_lr_wd_and_ema_momentum():
    """Through the jitted train step (steps 0 … 3 of a run whose schedules are all moving):
    each update of the params equals AdamW from the step's Adam moments with the LR and WD it
    logs, those equal the hand-written schedules, and the target encoder moves by the logged,
    ramping EMA momentum m_t = 0.5 + 0.5·t/10: target' = m_t·target + (1 − m_t)·params'."""
    import jax

    from jepa import state as state_lib
    from jepa import step as step_lib

    config = tiny_config(**SCHEDULED, **{"optim.ema_momentum": (0.5, 1.0), "model.depth": 1})
    tx = optim.make_optimizer(config)
    state = state_lib.init_train_state(config, tx, jax.random.PRNGKey(0))
    train_step = jax.jit(step_lib.make_train_step(config, tx))
    grad_fn = jax.jit(
        jax.grad(lambda p, t, b, s: methods.of(config).make_loss_fn(config)(p, t, b, s)[0])
    )
    decayed = optim.weight_decay_mask(state.params)
    for t in range(4):
        batch = synthetic_batch(config, t)
        grads = grad_fn(state.params, state.target_params, batch, t)
        adam = state.opt_state[0]
        assert int(adam.count) == t
        new, metrics = train_step(state, batch)
        assert float(metrics["lr"]) == pytest.approx(hand_lr(t), rel=1e-6)
        assert float(metrics["wd"]) == pytest.approx(hand_wd(t), rel=1e-6)
        momentum = 0.5 + 0.5 * t / 10
        assert float(metrics["momentum"]) == pytest.approx(momentum, rel=1e-6)

        def expected(p, g, mu, nu, decay, t=t):
            p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
            m = 0.9 * np.asarray(mu, np.float64) + 0.1 * g
            v = 0.999 * np.asarray(nu, np.float64) + 0.001 * g * g
            m_hat, v_hat = m / (1 - 0.9 ** (t + 1)), v / (1 - 0.999 ** (t + 1))
            return p - hand_lr(t) * (m_hat / (np.sqrt(v_hat) + 1e-8) + hand_wd(t) * p * decay)

        want = jax.tree.map(expected, state.params, grads, adam.mu, adam.nu, decayed)

        # Elements whose gradient is at rounding level are left out: there Adam's ratio
        # m̂/√v̂ (±1 on the first step) is decided by the last bits of a separate compilation.
        def close(got, want, g):
            g = np.abs(np.asarray(g))
            keep = g > 1e-3 * g.max()
            np.testing.assert_allclose(np.asarray(got)[keep], want[keep], rtol=1e-4, atol=1e-8)

        jax.tree.map(close, new.params, want, grads)
        ema = jax.tree.map(
            lambda tg, p, m=momentum: m * np.asarray(tg, np.float64) + (1 - m) * np.asarray(p),
            state.target_params,
            new.params["encoder"],
        )
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
            new.target_params,
            ema,
        )
        state = new
