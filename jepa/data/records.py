"""Corrupt training records — an image that does not decode, or has the wrong shape — are
skipped and counted instead of ending the run, up to `config.data.max_bad_records`. In pipeline
order: `CheckedSource` turns such a record into a `BadRecord`, `PassBadRecords` carries it
through the augmentation, and `SkipBadRecords` drops it where batches are assembled.

Which records are skipped is a function of the data alone, so the batches stay deterministic.
The count is part of the iterator's state (`{'next_index': …, 'bad_records': n}`), so it is
checkpointed with the data position and the limit holds over a resumed run too. It is counted
by each host for the records it reads (with `worker_count > 0`, by each worker process);
`bad_records_seen(iterator)` sums it up.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

# Record keys holding pixels that get checked: images, and the frames of video datasets.
PIXEL_KEYS = ("image", "frames")


class TooManyBadRecordsError(ValueError):
    """More corrupt records than `config.data.max_bad_records` allows."""


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """Stands in for a record that could not be used: its index in the source and why."""

    index: int
    reason: str


def pixel_shapes(source) -> dict[str, tuple[int | None, ...]]:
    """`{key: expected shape}` (None = any size) of the image/video features of a TFDS source.

    Empty for a source without TFDS `dataset_info` (then only decoding is checked)."""
    features = getattr(getattr(source, "dataset_info", None), "features", {})
    return {key: tuple(features[key].shape) for key in PIXEL_KEYS if key in features}


def shape_problem(value, expected: Sequence[int | None]) -> str | None:
    """Why `value` is not a uint8 array of shape `expected` (None dims: any positive size);
    None when it is. A grayscale image whose decoder dropped the channel axis is accepted."""
    array = np.asarray(value)
    shape = array.shape
    if len(expected) == array.ndim + 1 and expected[-1] == 1:
        shape = (*shape, 1)
    fits = len(shape) == len(expected) and all(
        n > 0 and (want is None or n == want) for n, want in zip(shape, expected, strict=True)
    )
    if array.dtype != np.uint8 or not fits:
        want = "[" + ", ".join("any" if d is None else str(d) for d in expected) + "]"
        return f"has {array.dtype} shape {tuple(array.shape)}, expected uint8 {want}"
    return None


class CheckedSource:
    """`source` (`len()`, `[index]` → record; a TFDS `data_source` decodes images when a record
    is read, so a corrupt image raises there) whose records that do not decode or do not match
    `shapes` (`{key: expected shape}`, see `pixel_shapes`) read as `BadRecord`s."""

    def __init__(self, source, shapes: Mapping[str, Sequence[int | None]]):
        self.source = source
        self.shapes = {key: tuple(shape) for key, shape in shapes.items()}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        try:
            record = self.source[index]
        except Exception as e:  # noqa: BLE001 - whatever the decoder raises, the record is bad
            message = str(e).splitlines()[0] if str(e) else ""
            return BadRecord(int(index), f"does not decode ({type(e).__name__}: {message})")
        for key, shape in self.shapes.items():
            if key not in record:
                return BadRecord(int(index), f"has no {key!r}")
            problem = shape_problem(record[key], shape)
            if problem:
                return BadRecord(int(index), f"{key!r} {problem}")
        return record


@dataclasses.dataclass(frozen=True)
class PassBadRecords(grain.transforms.RandomMap):
    """`transform` (a grain `RandomMap`) on good records; a `BadRecord` passes unchanged.

    The per-record generator is grain's, keyed by the record's stream position, so wrapping
    changes no random draw."""

    transform: Any

    def random_map(self, element, rng: np.random.Generator):
        if isinstance(element, BadRecord):
            return element
        return self.transform.random_map(element, rng)


class _SkipBadRecordsIterator(grain.DatasetIterator):
    def __init__(self, parent, max_bad: int, what: str):
        super().__init__(parent)
        self._max_bad, self._what, self._count = max_bad, what, 0

    def __next__(self):
        while True:
            element = next(self._parent)
            if not isinstance(element, BadRecord):
                return element
            self._count += 1
            where = f"record {element.index} of {self._what} {element.reason}"
            if self._count > self._max_bad:
                raise TooManyBadRecordsError(
                    f"{self._count} corrupt records read, more than data.max_bad_records="
                    f"{self._max_bad}; the last: {where}. Repair or drop the records, or raise "
                    "data.max_bad_records (0 fails on the first)."
                )
            logging.warning("skipping %s (%d skipped so far)", where, self._count)

    def get_state(self):
        # The parent's dict plus the count: a state saved before counting existed still loads.
        return {**self._parent.get_state(), "bad_records": self._count}

    def set_state(self, state):
        state = dict(state)
        self._count = int(state.pop("bad_records", 0))
        self._parent.set_state(state)

    def __str__(self) -> str:
        return f"SkipBadRecordsIterator(max_bad={self._max_bad})"


class SkipBadRecords(grain.IterDataset):
    """Drops the `BadRecord`s of `parent` (after `to_iter_dataset`, so a batch is filled from
    the records that follow), logging and counting each; raises `TooManyBadRecordsError` at the
    (max_bad + 1)-th. `what` names the data in messages (e.g. `mnist5k train`)."""

    def __init__(self, parent: grain.IterDataset, max_bad: int, what: str):
        super().__init__(parent)
        if max_bad < 0:
            raise ValueError(f"data.max_bad_records={max_bad}; valid: an integer >= 0")
        self._max_bad, self._what = max_bad, what

    def __iter__(self):
        return _SkipBadRecordsIterator(self._parent.__iter__(), self._max_bad, self._what)

    def __str__(self) -> str:
        return f"SkipBadRecords(max_bad={self._max_bad})"


def bad_records_seen(iterator) -> int:
    """Corrupt records skipped so far by a training iterator: the sum of every `bad_records`
    count in its state (one per worker process with `worker_count > 0`)."""

    def total(node) -> int:
        if isinstance(node, Mapping):
            return sum(int(v) if k == "bad_records" else total(v) for k, v in node.items())
        if isinstance(node, list | tuple):
            return sum(total(v) for v in node)
        return 0

    return total(iterator.get_state())
