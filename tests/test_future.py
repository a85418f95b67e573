"""The video objective with a latent variable: clips, the step, the energy evaluator."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_smm_overrides, with_overrides

from jepa import config as config_lib
from jepa import methods, objectives, state, train, validation
from jepa.data import augment
from jepa.methods import video


def test_clip_window_and_uncertainty_by_hand():
    context, target = augment.clip_window(t0=5, context_frames=2, horizon=3)
    assert context.tolist() == [5, 6] and target == 9
    bounce = np.zeros((20, 2), bool)
    # Moves that shape the target: those of frames 6, 7, 8 (last context frame … target − 1).
    bounce[9, 1] = True  # after the target: irrelevant
    bounce[5, 0] = True  # inside the context: visible, not a surprise
    assert not augment.clip_is_uncertain(bounce, 5, 2, 3)
    bounce[8, 1] = True
    assert augment.clip_is_uncertain(bounce, 5, 2, 3)
    frames = np.arange(20 * 4 * 4, dtype=np.uint8).reshape(20, 4, 4, 1)
    clip = augment.make_clip(frames, 5, 2, 3, (0.0,), (1.0,))
    assert clip.shape == (3, 4, 4, 1)
    np.testing.assert_allclose(clip[2] * 255.0, frames[9], rtol=1e-6)


def tiny_future_config(data_dir, **overrides):
    c = methods.with_method(config_lib.base_config(), "future")
    return with_overrides(
        c,
        {
            **tiny_smm_overrides(data_dir),
            "method.latent.reference": True,
            **overrides,
        },
    )


# "none" is exercised by every run's reference predictor (method.latent.reference=True).
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_future_objective_trains_and_evaluates_energies(tmp_path, smm_data_dir, kind):
    from jepa.evaluate import energy

    workdir = str(tmp_path / kind)
    train.train_and_evaluate(
        tiny_future_config(smm_data_dir, **{"method.latent.kind": kind}), workdir
    )
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["reference_energy"] > 0 for r in rows)
    if kind == "continuous":
        assert rows[-1]["z_information"] >= 0

    result = energy.evaluate(workdir)
    clips = result["bounce"]["clips"] + result["no_bounce"]["clips"]
    assert clips == 8 * (20 - 2 - 3 + 1)  # every start of every test sequence
    assert result["bounce"]["clips"] > 0 and result["no_bounce"]["clips"] > 0
    for part in ("bounce", "no_bounce"):
        r = result[part]
        assert r["ratio"] == pytest.approx(r["free_energy"] / r["reference_energy"])
        assert r["free_energy"] > 0
        for baseline in ("mean_target", "copy_last"):
            assert r[f"{baseline}_energy"] > 0
            assert r[f"skill_vs_{baseline}"] == pytest.approx(
                1 - r["reference_energy"] / r[f"{baseline}_energy"]
            )
    assert ("perplexity" in result) == (kind == "discrete")
    if kind == "discrete":  # perplexity = exp(entropy) of how often each code is the argmin
        freq = np.array(result["code_frequencies"])
        assert len(freq) == 4 and freq.sum() == pytest.approx(1.0, abs=1e-3)
        nz = freq[freq > 0]
        assert result["perplexity"] == pytest.approx(np.exp(-(nz * np.log(nz)).sum()), rel=1e-3)
    assert os.path.exists(result["png"])
    if kind == "discrete":  # the same report through jepa-eval's registry
        from jepa.evaluate import main as eval_main

        (via_cli,) = eval_main.main(["--workdir", workdir, "--protocol", "energy"])
        assert via_cli == {"protocol": "energy", **result}


def test_region_means_by_hand():
    tokens = jnp.arange(16.0)[None, :, None] * jnp.array([1.0, -1.0])  # [1, 16, 2], 4 × 4 grid
    # row-major: region (0, 0) holds tokens 0, 1, 4, 5 → 2.5; (0, 1) → 4.5; (1, 0) → 10.5; …
    expected = [[2.5, -2.5], [4.5, -4.5], [10.5, -10.5], [12.5, -12.5]]
    np.testing.assert_allclose(objectives.region_means(tokens, 4, 2)[0], expected)
    np.testing.assert_allclose(objectives.region_means(tokens, 4, 1)[0], [[7.5, -7.5]])


@pytest.mark.parametrize("target_grid", [1, 2])
def test_future_target_grid_compares_region_means_of_the_token_space(target_grid):
    """With method.loss.target_grid = G, s_y is LayerNorm(region means of the target tokens)
    and the prediction is the region means of the per-token prediction: the same network."""
    tokens_cfg = tiny_future_config("", **{"method.latent.kind": "discrete"})
    pooled_cfg = tiny_future_config(
        "", **{"method.latent.kind": "discrete", "method.loss.target_grid": target_grid}
    )
    params = nn.unbox(state.init_boxed_params(tokens_cfg, jax.random.PRNGKey(0)))
    frames = jax.random.uniform(jax.random.PRNGKey(1), (2, 3, 64, 64, 1))
    tokens_model = video.make_loss_and_model(tokens_cfg)[1](params["encoder"])
    pooled_model = video.make_loss_and_model(pooled_cfg)[1](params["encoder"])

    raw = tokens_model.encode_x(params, frames[:, 2:])  # the target frame's tokens, [2, 16, w]
    want_y = objectives.normalize_targets(objectives.region_means(raw, 4, target_grid))
    sy = pooled_model.encode_y(params, frames[:, 2])
    assert sy.shape == (2, target_grid**2, raw.shape[-1])
    np.testing.assert_allclose(sy, want_y, rtol=1e-5, atol=1e-6)

    full = {"model": params, "latent": params["latent"]}
    z = jnp.array([1, 3])
    per_token = tokens_model.predict(full, frames[:, :2], z)
    np.testing.assert_allclose(
        pooled_model.predict(full, frames[:, :2], z),
        objectives.region_means(per_token, 4, target_grid),
        rtol=1e-5,
        atol=1e-6,
    )
    loss_fn = video.make_loss_and_model(pooled_cfg)[0]
    loss, aux = loss_fn(params, params["encoder"], {"image": frames})
    # The winner-take-all energy over the codes, recomputed: per clip, the smallest mean
    # smooth-L1 between the pooled prediction under code k and the pooled, LayerNorm'd target.
    import references as ref

    codes = pooled_cfg.method.latent.num_codes
    energies = np.array(
        [
            [
                ref.smooth_l1(
                    pooled_model.predict(full, frames[:, :2], jnp.full((2,), k))[i], want_y[i]
                )
                for k in range(codes)
            ]
            for i in range(2)
        ]
    )
    np.testing.assert_allclose(aux["energy"], energies.min(1).mean(), rtol=1e-5)
    assert np.ptp(energies, axis=1).min() > 1e-6  # a mean over codes would not pass
    expected = (
        aux["energy"]
        + pooled_cfg.method.latent.usage_weight * aux["code_usage_kl"]
        + aux["reference_energy"]
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_continuous_z_with_target_grid_reads_the_region_means_it_compares():
    """The inference network q(z | s_x, s_y) is built for s_y as the energy compares it
    (target_grid² region means), so the loss and its gradient are defined and finite."""
    c = tiny_future_config("", **{"method.latent.kind": "continuous", "method.loss.target_grid": 2})
    params = nn.unbox(state.init_boxed_params(c, jax.random.PRNGKey(0)))
    frames = jax.random.uniform(jax.random.PRNGKey(1), (2, 3, 64, 64, 1))
    loss_fn = video.make_loss_and_model(c)[0]
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, params["encoder"], {"image": frames}
    )
    assert np.isfinite(float(loss))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads["latent"]))
    assert any(np.abs(g).sum() > 0 for g in jax.tree.leaves(grads["latent"]))


def test_energy_summary_by_hand():
    from jepa.evaluate import energy

    free = np.array([1.0, 2.0, 3.0, 4.0])
    ref = np.array([2.0, 2.0, 4.0, 8.0])
    mean = np.array([4.0, 4.0, 8.0, 8.0])
    bounce = np.array([True, True, False, False])
    out = energy.summarize(free, ref, bounce, np.array([0, 0, 1, 2]), 4, {"mean_target": mean})
    assert out["bounce"]["ratio"] == pytest.approx(1.5 / 2.0)
    assert out["bounce"]["mean_target_energy"] == pytest.approx(4.0)
    assert out["bounce"]["skill_vs_mean_target"] == pytest.approx(1 - 2.0 / 4.0)
    assert out["no_bounce"]["ratio"] == pytest.approx(3.5 / 6.0)
    assert out["no_bounce"]["skill_vs_mean_target"] == pytest.approx(1 - 6.0 / 8.0)
    assert out["code_frequencies"] == [0.5, 0.25, 0.25, 0.0]
    assert out["perplexity"] == pytest.approx(np.exp(-(0.5 * np.log(0.5) + 0.5 * np.log(0.25))))


def test_own_digit_bank_draws_the_clips_digit_at_every_grid_position():
    from jepa.data.builders import stochastic_moving_mnist as smm
    from jepa.evaluate import energy

    sprite = np.zeros((28, 28), np.uint8)
    sprite[5:20, 10:14] = 200  # a "1"
    position = np.array([[[6, 10]], [[10, 4]]], np.float32)  # [T, K=1, (x, y)]
    frames = smm.render_frames(sprite[None], np.array([0]), position)
    record = {"frames": frames, "position": position, "digits": np.array([1, -1])}
    config = tiny_future_config("")
    bank = energy.own_digit_bank(config, record, t0=0)
    assert bank.shape == (((64 - 28) // 2 + 1) ** 2, 64, 64, 1)
    mean, std = augment.resolve_mean_std(None, None, 1)
    want = augment.normalize_images(frames[1].astype(np.float32) / 255.0, mean, std)
    # frame 1's position (10, 4) lies on the 2-px grid: row y / 2, column x / 2
    np.testing.assert_allclose(bank[(4 // 2) * 19 + 10 // 2], want, rtol=1e-6)
    two = dict(record, digits=np.array([1, 7]))
    assert energy.own_digit_bank(config, two, t0=0) is None


def test_future_config_errors_name_the_key():
    c = tiny_future_config("", **{"method.clip.horizon": 0})
    with pytest.raises(ValueError, match="method.clip.horizon"):
        validation.validate(c)
    c = tiny_future_config("", **{"method.latent.kind": "gaussian"})
    with pytest.raises(ValueError, match="method.latent.kind"):
        validation.validate(c)
    c = tiny_future_config("", **{"method.loss.target_grid": 3})
    with pytest.raises(ValueError, match="method.loss.target_grid=3"):
        validation.validate(c)
    # A latent z is the future objective's: under another method's section it is unknown.
    c = methods.with_method(config_lib.base_config(), "masked")
    c.total_steps = 1
    c.method.latent = {"kind": "discrete"}
    with pytest.raises(ValueError, match=r"unknown config key method\.latent; valid keys under"):
        validation.validate(c)
