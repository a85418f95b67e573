"""Input pipeline: TFDS `data_source` (array_record) → grain → per-host numpy batches → jax.Arrays.

No TensorFlow: TFDS only reads records at random (decoding images with Pillow) and grain does
the shuffling, per-host sharding, augmentation and batching, all in numpy.

Checkpointing the train iterator. `make_train_iterator` returns a `grain.DatasetIterator`;
`it.get_state()` is a small JSON-serializable dict (the position in the shuffled, repeated
stream) and `it.set_state(state)` on a fresh iterator built from the same config and seed
resumes at exactly the next batch. `jepa.checkpointing.Checkpointer` saves it as the `data`
item, with grain's Orbax handler (one JSON file per process).
"""

from __future__ import annotations

import logging
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import flags

from jepa.data import augment, records
from jepa.data.builders import BUILDERS, prepare
from jepa.data.sequences import SequencePreprocess

# Threads decoding and augmenting records in this process (Pillow releases the GIL); the
# pipeline config's `read_threads` overrides it (tests use fewer).
DEFAULT_READ_THREADS = 16


# ------------------------------------------------------------------------------------------ sources


def _prepared_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """Our builders are prepared on first use; any other dataset must already be prepared."""
    base, _, builder_config = name.partition("/")  # "stochastic_moving_mnist/tiny"
    if base in BUILDERS:
        kwargs = {"config": builder_config} if builder_config else {}
        builder = BUILDERS[base](data_dir=data_dir, file_format="array_record", **kwargs)
        if not builder.is_prepared():
            logging.info("preparing dataset %s in %s (once)", name, builder.data_dir)
            prepare(builder)
        return builder
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"unknown dataset {name!r}: neither one of jepa's builders {sorted(BUILDERS)} "
            f"nor a TFDS dataset found in data_dir={data_dir!r}; a folder of images becomes "
            "one with `jepa-data FOLDER --name NAME --data_dir DIR`"
        ) from e
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared under data_dir={data_dir!r} (looked in "
            f"{builder.data_dir}). Prepare it once, without TensorFlow, with "
            f"`tfds.builder({name!r}, data_dir=...).download_and_prepare("
            "file_format='array_record')` (imagenet2012 also needs its manual download)."
        )
    return builder


def load_data_source(name: str, split: str, data_dir: str | None = None):
    """A TFDS `ArrayRecordDataSource` (`len()`, `[index]` → `{'image': uint8 [H, W, C],
    'label': int, ...}`) of `split` (e.g. `train[:90%]`) of dataset `name` in `data_dir` (None:
    TFDS's default). jepa's own builders are prepared there on first use; hosts sharing one
    data_dir should prepare it once before a multi-host launch, so they do not all build it."""
    _prepared_builder(name, data_dir)
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def dataset_info(
    name: str, data_dir: str | None = None, split: str = "train"
) -> tuple[int, tuple[int | None, ...], int]:
    """`(num_examples in split, image shape [H, W, C], num_classes)` from the builder's info
    (num_classes 0: unlabeled), for turning epochs into steps; jepa's builders are prepared."""
    info = _prepared_builder(name, data_dir).info
    features = info.features
    num_classes = features["label"].num_classes if "label" in features else 0
    return info.splits[split].num_examples, tuple(features["image"].shape), num_classes


def check_labelled(name: str, data_dir: str | None, splits: dict, key: str, why: str) -> None:
    """Raise naming the dataset (set by config key ``key``) when its records have no `label`,
    or as `check_splits` does. Pretraining never reads labels; what does (a probe) calls this
    before any work."""
    info = _prepared_builder(name, data_dir).info
    if "label" not in info.features:
        raise ValueError(
            f"{key}={name!r} has no 'label' field (its features: {sorted(info.features)}); {why} "
            "needs labels. Valid: --config.eval.dataset=NAME (and --config.eval.data_dir=DIR) "
            "naming a labelled dataset, e.g. one `jepa-data` made from class subfolders"
        )
    check_splits(info, splits, key, name)


def check_splits(info: tfds.core.DatasetInfo, splits: dict, key: str, name: str) -> None:
    """Raise naming the config key of a split (``splits``: key → split string, optionally
    sliced like ``train[:90%]``) that dataset ``name`` (set by config key ``key``) lacks."""
    for split_key, split in splits.items():
        base = split.split("[")[0]  # "train[:90%]" → "train"
        if base not in info.splits:
            raise ValueError(
                f"{split_key}={split!r}: {key}={name!r} has no split {base!r}; valid: "
                f"{sorted(info.splits)}, optionally sliced like 'train[:80%]' / 'train[80%:]'"
            )


# ----------------------------------------------------------------------------------------- training


def _stream_seed(seed: int) -> int:
    # The seed of the one global stream, the same on every host. The 0 was once the host index
    # (hosts had streams of their own); it stays so that the stream of a single host, and the
    # runs measured with it, are unchanged.
    return int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])


class HostChunks(grain.MapDataset):
    """Host `index` of `count`'s records of a global stream cut into chunks of `chunk`.

    Position j here is global position `(c * count + index) * chunk + r`, where
    `c, r = divmod(j, chunk)`: host h takes chunks h, h + count, h + 2 * count, … — the same
    records as `parent.batch(chunk)[index::count]`, one at a time (so reading and augmenting
    stay parallel per record). With `chunk` = the local batch, the k-th local batches of hosts
    0 … count-1, stacked, are the k-th global batch of the global stream; with count = 1 this
    is `parent` itself. Lazy: a host reads only its own records.
    """

    def __init__(self, parent: grain.MapDataset, chunk: int, index: int, count: int):
        super().__init__(parent)
        if not 0 <= index < count:
            raise ValueError(f"host index {index} is outside [0, {count})")
        self._chunk, self._index, self._count = chunk, index, count

    def __len__(self) -> int:
        return len(self._parent) // (self._chunk * self._count) * self._chunk

    def _global(self, j: int) -> int:
        c, r = divmod(j, self._chunk)
        return (c * self._count + self._index) * self._chunk + r

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self._global(index)]

    def _getitems(self, indices):
        return self._parent._getitems([self._global(j) for j in indices])  # noqa: SLF001

    def __str__(self) -> str:
        return f"HostChunks(chunk={self._chunk}, host={self._index} of {self._count})"


def _mean_std(cfg) -> dict[str, tuple[float, ...] | None]:
    """`config.data.mean/std`; None (or absent) → defaults by channel count."""
    return {key: cfg.get(key) for key in ("mean", "std")}


def _host_share(global_batch: int, index: int | None, count: int | None):
    """(this host's index, the number of hosts, its share of ``global_batch``); JAX's by default."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    if global_batch % count:
        raise ValueError(f"batch size {global_batch} is not divisible by process_count={count}")
    return index, count, global_batch // count


def _read_options(cfg) -> grain.ReadOptions:
    # The buffer counts single examples (batching comes after it), so a few per thread suffice;
    # grain's default of 500 would hold ~300 MB of 224-pixel float32 images per host.
    threads = cfg.get("read_threads", DEFAULT_READ_THREADS)
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2 * threads, 64))


def _train_preprocess(cfg):
    if cfg.get("sequence_frames"):  # hierarchy, V-JEPA: whole windows of a video dataset
        return SequencePreprocess(frames=int(cfg.sequence_frames), **_mean_std(cfg))
    if cfg.get("clip_context_frames"):  # objective="future": clips of a video dataset
        return augment.ClipPreprocess(
            context_frames=int(cfg.clip_context_frames),
            horizon=int(cfg.clip_horizon),
            **_mean_std(cfg),
        )
    return augment.TrainPreprocess(
        image_size=cfg.image_size,
        crop_scale=tuple(cfg.get("crop_scale", (0.3, 1.0))),
        hflip=bool(cfg.get("hflip", False)),
        num_views=int(cfg.get("num_views", 1)),
        local_views=int(cfg.get("local_views", 0)),
        local_size=int(cfg.get("local_size", 0)),
        local_crop_scale=tuple(cfg.get("local_crop_scale", (0.05, 0.3))),
        **_mean_std(cfg),
    )


def make_train_iterator(
    cfg,
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.DatasetIterator:
    """An endless, checkpointable iterator of augmented training batches for this host.

    One global stream — the split reshuffled each epoch, repeated, each record augmented with
    randomness keyed by its position in the stream — is the same on every host, which reads
    and decodes only its chunks of it (`HostChunks`), so the global batch of a step does not
    depend on the number of hosts (with `worker_count=0`). Batches run across epoch boundaries.

    Corrupt records are skipped and counted, up to `max_bad_records` on one host
    (`jepa/data/records.py`).

    `worker_count=0` (`config.data`) decodes and augments in threads of this process; N > 0
    adds N worker processes, each assembling whole batches from every N-th example, so the
    batches are deterministic for a given N but differ between values of N: resume with the
    same N. With `worker_count` fixed, the order and the crops are a function of `seed` alone.

    Yields `{'image': float32 [local_batch, S, S, C], 'label': int32 [local_batch]}` (clips
    `[local_batch, C + 1, S, S, ch]` with `clip_context_frames`), local_batch =
    global_batch_size / process_count (default: JAX's hosts).
    """
    process_index, process_count, local_batch = _host_share(
        global_batch_size, process_index, process_count
    )
    split = cfg.get("train_split", "train")
    source = load_data_source(cfg.dataset, split, cfg.get("data_dir"))
    if len(source) < global_batch_size:
        raise ValueError(
            f"{cfg.dataset} {split} has {len(source)} examples, fewer than one global batch "
            f"of {global_batch_size}"
        )
    preprocess = records.PassBadRecords(_train_preprocess(cfg))
    ds = (
        grain.MapDataset.source(records.CheckedSource(source, records.pixel_shapes(source)))
        .seed(_stream_seed(seed))
        .shuffle()  # before repeat: each epoch gets its own permutation of the whole split
        .repeat()
        .random_map(preprocess)
    )
    ds = HostChunks(ds, local_batch, process_index, process_count).to_iter_dataset(
        _read_options(cfg)
    )
    max_bad = int(cfg.get("max_bad_records", 100))  # base_config's data.max_bad_records
    ds = records.SkipBadRecords(ds, max_bad, f"{cfg.dataset} {split}")
    ds = ds.batch(local_batch, drop_remainder=True)
    workers = cfg.get("worker_count", 0)
    if workers:
        # grain's worker processes read absl flags; outside `absl.app.run` (tests, notebooks)
        # nobody parsed them, and reading their defaults is what we want there.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(ds)


# --------------------------------------------------------------------------------------- evaluation


def make_eval_batches(
    cfg,
    split: str,
    batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """One deterministic pass over `split`, eval view (no augmentation), padded to full batches:
    a re-iterable `grain.IterDataset` of `{'image': float32 [local_batch, S, S, C],
    'label': int32 [local_batch], 'mask': bool [local_batch]}`, local_batch = batch_size /
    process_count. Every example appears exactly once with mask True; padding (copies of the
    last example) has mask False. All hosts yield the same number of batches.

    Global batch k holds padded indices [k*B, (k+1)*B); host p reads its chunk
    [k*B + p*L, k*B + (p+1)*L) (`HostChunks`), so stacking the hosts' k-th batches restores order.
    """
    process_index, process_count, local_batch = _host_share(
        batch_size, process_index, process_count
    )
    source = load_data_source(cfg.dataset, split, cfg.get("data_dir"))
    n = len(source)
    num_batches = -(-n // batch_size)
    preprocess = augment.EvalPreprocess(image_size=cfg.image_size, **_mean_std(cfg))

    def read(i: int) -> dict[str, Any]:
        return {**preprocess.map(source[min(i, n - 1)]), "mask": np.bool_(i < n)}

    padded = grain.MapDataset.range(num_batches * batch_size).map(read)
    return (
        HostChunks(padded, local_batch, process_index, process_count)
        .to_iter_dataset(_read_options(cfg))
        .batch(local_batch)
    )
