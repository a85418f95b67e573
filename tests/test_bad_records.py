"""Corrupt training records are skipped and counted, not fatal, up to data.max_bad_records.

The corrupt records are made at the byte level: the mnist5k TFDS source reads its serialized
records through a reader that, for a few indices, returns a record whose PNG bytes are damaged
(TFDS's own decoder then fails on it) or a well-formed record of an image of the wrong shape.
"""

from __future__ import annotations

import json
import logging
import types

import ml_collections
import numpy as np
import pytest
from helpers import mnist_pipeline_config
from PIL import Image

from jepa.data import pipeline, records

SEED = 5
BATCH = 16


def data_config(data_dir: str, **overrides) -> ml_collections.ConfigDict:
    return mnist_pipeline_config(data_dir=data_dir, hflip=True, **overrides)


class CorruptingReader:
    """Serialized records of `reader`, except `{index: replacement bytes}`."""

    def __init__(self, reader, replace: dict[int, bytes]):
        self.reader, self.replace = reader, replace

    def __len__(self):
        return len(self.reader)

    def __getitem__(self, index):
        return self.replace.get(int(index), self.reader[index])

    def __getitems__(self, indices):
        return [self[i] for i in indices]


def damaged_png(record: bytes) -> bytes:
    start = record.index(b"\x89PNG")
    out = bytearray(record)
    out[start + 16 : start + 48] = bytes(32)  # the IHDR chunk: no decoder recognizes the file
    return bytes(out)


def stream_indices(n: int, positions) -> list[int]:
    """The source index at each global stream position (the pipeline's own permutation)."""
    import grain

    order = grain.MapDataset.range(n).seed(pipeline._stream_seed(SEED)).shuffle()
    return [int(order[p]) for p in positions]


@pytest.fixture
def corrupt(monkeypatch, mnist_data_dir):
    """Makes the records at stream positions 3 (undecodable), 7 (20×20 image) and 21 (RGB)
    corrupt; returns their source `indices` in stream order and the `clean_load` function."""
    real_load = pipeline.load_data_source
    clean = real_load("mnist5k", "train", mnist_data_dir)
    bad = stream_indices(len(clean), (3, 7, 21))
    features = clean.dataset_info.features

    def serialized(image: np.ndarray) -> bytes:
        return features.serialize_example({"image": Image.fromarray(image), "label": 1})

    replace = {
        bad[0]: damaged_png(clean.data_source[bad[0]]),
        bad[1]: serialized(np.zeros((20, 20), np.uint8)),
        bad[2]: serialized(np.zeros((28, 28, 3), np.uint8)),
    }

    def load(name, split, data_dir=None):
        source = real_load(name, split, data_dir)
        source.data_source = CorruptingReader(source.data_source, replace)
        return source

    monkeypatch.setattr(pipeline, "load_data_source", load)
    return types.SimpleNamespace(indices=bad, clean_load=real_load)


def take(iterator, n: int) -> list[dict]:
    return [next(iterator) for _ in range(n)]


def images(batches) -> np.ndarray:
    return np.concatenate([b["image"] for b in batches])


def test_shape_problem():
    assert records.shape_problem(np.zeros((28, 28, 1), np.uint8), (28, 28, 1)) is None
    assert records.shape_problem(np.zeros((28, 28), np.uint8), (28, 28, 1)) is None  # no C axis
    assert records.shape_problem(np.zeros((5, 9, 3), np.uint8), (None, None, 3)) is None
    assert "expected uint8 [any, any, 3]" in records.shape_problem(
        np.zeros((5, 9, 1), np.uint8), (None, None, 3)
    )
    assert records.shape_problem(np.zeros((0, 9, 3), np.uint8), (None, None, 3))
    assert records.shape_problem(np.zeros((28, 28, 1), np.float32), (28, 28, 1))


def test_corrupt_records_are_skipped_counted_and_logged(
    corrupt, mnist_data_dir, caplog, monkeypatch
):
    cfg = data_config(mnist_data_dir)
    with caplog.at_level(logging.WARNING):
        iterator = pipeline.make_train_iterator(cfg, BATCH, SEED, 0, 1)
        got = take(iterator, 2)
    skipped = [r.getMessage() for r in caplog.records if "skipping record" in r.getMessage()]
    assert records.bad_records_seen(iterator) == 3
    again = pipeline.make_train_iterator(cfg, BATCH, SEED, 0, 1)
    np.testing.assert_array_equal(images(take(again, 2)), images(got))  # deterministic

    # Records keep the augmentation of their stream position, so the batches must be the clean
    # stream with positions 3, 7 and 21 cut out, the gaps filled by the records that follow.
    monkeypatch.setattr(pipeline, "load_data_source", corrupt.clean_load)
    clean_iterator = pipeline.make_train_iterator(cfg, BATCH, SEED, 0, 1)
    clean = images(take(clean_iterator, 3))
    assert records.bad_records_seen(clean_iterator) == 0
    np.testing.assert_array_equal(images(got), np.delete(clean, [3, 7, 21], axis=0)[: 2 * BATCH])

    bad = corrupt.indices
    assert len(skipped) == 3, skipped
    assert (
        f"record {bad[0]} of mnist5k train does not decode (UnidentifiedImageError" in (skipped[0])
    )
    assert f"record {bad[1]} of mnist5k train 'image' has uint8 shape (20, 20, 1)" in skipped[1]
    assert (
        f"record {bad[2]} of" in skipped[2]
        and "(28, 28, 3), expected uint8 [28, 28, 1]" in (skipped[2])
    )
    assert "(3 skipped so far)" in skipped[2]


def test_the_count_is_checkpointed_with_the_position(corrupt, mnist_data_dir):
    cfg = data_config(mnist_data_dir, max_bad_records=3)
    make = lambda: pipeline.make_train_iterator(cfg, BATCH, SEED, 0, 1)  # noqa: E731
    iterator = make()
    take(iterator, 1)  # positions 0..16: two bad records skipped
    state = json.loads(json.dumps(iterator.get_state()))  # what a checkpoint stores
    assert state == {"next_index": BATCH + 2, "bad_records": 2}
    expected = take(iterator, 2)
    resumed = make()
    resumed.set_state(state)
    assert records.bad_records_seen(resumed) == 2
    np.testing.assert_array_equal(images(take(resumed, 2)), images(expected))
    assert records.bad_records_seen(resumed) == 3
    # A state saved before records were counted (no "bad_records") still loads, counting from 0.
    old = make()
    old.set_state({"next_index": BATCH + 2})
    np.testing.assert_array_equal(images(take(old, 2)), images(expected))
    assert records.bad_records_seen(old) == 1


@pytest.mark.parametrize("limit", [0, 2])
def test_more_than_the_limit_is_an_error_naming_the_key_and_record(corrupt, mnist_data_dir, limit):
    iterator = pipeline.make_train_iterator(
        data_config(mnist_data_dir, max_bad_records=limit), BATCH, SEED, 0, 1
    )
    last = corrupt.indices[limit]
    with pytest.raises(records.TooManyBadRecordsError) as e:
        take(iterator, 2)
    message = str(e.value)
    assert f"{limit + 1} corrupt records read, more than data.max_bad_records={limit}" in message
    assert f"the last: record {last} of mnist5k train" in message


def test_negative_limit_is_rejected(mnist_data_dir):
    with pytest.raises(ValueError, match=r"data.max_bad_records=-1; valid: an integer >= 0"):
        pipeline.make_train_iterator(data_config(mnist_data_dir, max_bad_records=-1), 8, 0, 0, 1)
