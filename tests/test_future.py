"""The video objective with a latent variable: clips, the step, the energy evaluator."""

import json
import os

import numpy as np
import pytest
from helpers import tiny_smm_overrides, with_overrides

from jepa import config as config_lib
from jepa import train, validation
from jepa.data import augment


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
    c = config_lib.base_config()
    c.objective = "future"
    return with_overrides(
        c,
        {
            **tiny_smm_overrides(data_dir),
            "latent.reference": True,
            **overrides,
        },
    )


# "none" is exercised by every run's reference predictor (latent.reference=True).
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_future_objective_trains_and_evaluates_energies(tmp_path, smm_data_dir, kind):
    from jepa.evaluate import energy

    workdir = str(tmp_path / kind)
    train.train_and_evaluate(tiny_future_config(smm_data_dir, **{"latent.kind": kind}), workdir)
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
    assert ("perplexity" in result) == (kind == "discrete")
    if kind == "discrete":  # perplexity = exp(entropy) of how often each code is the argmin
        freq = np.array(result["code_frequencies"])
        assert len(freq) == 4 and freq.sum() == pytest.approx(1.0, abs=1e-3)
        nz = freq[freq > 0]
        assert result["perplexity"] == pytest.approx(np.exp(-(nz * np.log(nz)).sum()), rel=1e-3)
    assert os.path.exists(result["png"])


def test_future_config_errors_name_the_key():
    c = tiny_future_config("", **{"data.clip.horizon": 0})
    with pytest.raises(ValueError, match="data.clip.horizon"):
        validation.validate(c)
    c = tiny_future_config("", **{"latent.kind": "gaussian"})
    with pytest.raises(ValueError, match="latent.kind"):
        validation.validate(c)
    c = config_lib.base_config()
    c.total_steps = 1
    c.latent.kind = "discrete"
    with pytest.raises(ValueError, match='objective="future"'):
        validation.validate(c)
