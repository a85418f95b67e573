"""Your own images as a TFDS dataset (array_record), readable by name like any other.

  write_folder("pics/", name="pics", data_dir="tfds/")     # class subfolders → labels
  write_arrays(images, labels, name="pics", data_dir=...)  # a numpy array (labels optional)
  write_files(paths, labels, name="pics", data_dir=...)    # a list of image files

Folder layouts (``scan_folder``): ``FOLDER/CLASS/*.png`` (labelled), ``FOLDER/*.png``
(unlabeled: records hold only ``image``), or either of these under split folders
``FOLDER/train/…``, ``FOLDER/test/…``. Without split folders, ``test_fraction`` holds out that
part of every class (of all images when unlabeled) as ``test``, chosen by a fixed seed.

The written dataset is read back by ``tfds.builder(name, data_dir=...)`` from its files alone
(TFDS falls back to the files for a name it has no code for), so
``--config.data.dataset=NAME --config.data.data_dir=DIR`` is all a run needs. Writing needs no
TensorFlow: images reach TFDS as PIL images, which it encodes with Pillow (PNG, lossless).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from jepa.data.builders import prepare

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_NAMES = ("train", "test", "validation")
# PIL modes whose pixels are one gray value (an alpha channel is dropped).
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
SPLIT_SEED = 0
DATASET_VERSION = "1.0.0"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class FolderError(ValueError):
    """The input cannot become a dataset; the message names the path or argument."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One image: a file path or a uint8 array, its label (-1: unlabeled) and a unique key."""

    key: str
    source: str | np.ndarray
    label: int = -1


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """What will be written: examples per split and the class names (empty: unlabeled)."""

    splits: dict[str, list[Example]]
    class_names: tuple[str, ...]

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)


def check_name(name: str) -> None:
    """A TFDS dataset name that no builder with code claims (TFDS would read that one)."""
    if not _NAME.match(name or ""):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", (name or "").lower()).strip("_") or "my_images"
        if not suggestion[0].isalpha():
            suggestion = f"images_{suggestion}"
        raise FolderError(
            f"--name {name!r} is not a valid dataset name; valid: lowercase letters, digits and "
            f"underscores, starting with a letter, e.g. {suggestion!r}"
        )
    try:
        tfds.builder_cls(name)
    except tfds.core.registered.DatasetNotFoundError:
        return
    raise FolderError(
        f"--name {name!r} is taken by a dataset TFDS or jepa already knows; valid: another name, "
        f"e.g. 'my_{name}'"
    )


def _images_in(folder: str) -> list[str]:
    names = (f for f in os.listdir(folder) if not f.startswith("."))
    return sorted(os.path.join(folder, f) for f in names if f.lower().endswith(IMAGE_SUFFIXES))


def _subfolders(folder: str) -> list[str]:
    return sorted(
        f for f in os.listdir(folder) if os.path.isdir(os.path.join(folder, f)) and f[0] != "."
    )


def _scan_split(folder: str, root: str) -> tuple[dict[str, list[str]], list[str]]:
    """(class → files) for class subfolders, or ({}, files) for a flat folder."""
    classes, files = _subfolders(folder), _images_in(folder)
    if classes and files:
        raise FolderError(
            f"{folder} holds both images ({os.path.relpath(files[0], root)}, …) and subfolders "
            f"({classes[0]}, …); valid: only class subfolders (labelled) or only images "
            "(unlabeled)"
        )
    if not classes:
        if not files:
            raise FolderError(
                f"{folder} holds no images; valid: image files ({', '.join(IMAGE_SUFFIXES)}) "
                "or class subfolders of them"
            )
        return {}, files
    by_class = {cls: _images_in(os.path.join(folder, cls)) for cls in classes}
    empty = [cls for cls, found in by_class.items() if not found]
    if empty:
        raise FolderError(
            f"class folder {os.path.join(folder, empty[0])} holds no images; valid: remove it, "
            f"or put {', '.join(IMAGE_SUFFIXES)} files in it"
        )
    return by_class, []


def _split_by_fraction(items: list[Example], test_fraction: float) -> dict[str, list[Example]]:
    """``round(n * test_fraction)`` of each class's n examples (of all n when unlabeled) as
    ``test``, drawn with ``SPLIT_SEED``; at least one on each side when n > 1, so that every
    class is in both splits."""
    if not test_fraction:
        return {"train": items}
    rng = np.random.default_rng(SPLIT_SEED)
    splits = {"train": [], "test": []}
    for label in sorted({e.label for e in items}):
        members = [e for e in items if e.label == label]
        n = len(members)
        k = min(max(round(n * test_fraction), 1), n - 1) if n > 1 else round(n * test_fraction)
        held_out = set(rng.permutation(n)[:k].tolist())
        for i, e in enumerate(members):
            splits["test" if i in held_out else "train"].append(e)
    return splits


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise FolderError(f"--test_fraction {test_fraction}; valid: a number in [0, 1)")


def scan_folder(folder: str, test_fraction: float = 0.0) -> ImageSet:
    """The examples of ``folder`` (layouts in the module docstring), split into train/test."""
    _check_fraction(test_fraction)
    folder = os.path.abspath(folder)
    if not os.path.isdir(folder):
        raise FolderError(
            f"{folder} is not a folder; valid: a folder of images, of class subfolders, or of "
            f"split folders {SPLIT_NAMES}"
        )
    subfolders = _subfolders(folder)
    split_folders = [s for s in subfolders if s in SPLIT_NAMES]
    if split_folders and test_fraction:
        raise FolderError(
            f"{folder} has split folders {split_folders} and --test_fraction {test_fraction} "
            "was given; valid: one of the two"
        )
    if split_folders and set(subfolders) - set(split_folders):
        raise FolderError(
            f"{folder} mixes split folders {split_folders} with other folders "
            f"{sorted(set(subfolders) - set(split_folders))}; valid: only {SPLIT_NAMES}, or only "
            "class folders"
        )
    scanned = {s: _scan_split(os.path.join(folder, s), folder) for s in split_folders}
    if not split_folders:
        scanned = {"train": _scan_split(folder, folder)}
    labelled = {s for s, (by_class, _) in scanned.items() if by_class}
    if labelled and labelled != set(scanned):
        raise FolderError(
            f"splits {sorted(labelled)} of {folder} have class folders and "
            f"{sorted(set(scanned) - labelled)} have loose images; valid: the same layout in all"
        )
    class_names = tuple(sorted({c for by_class, _ in scanned.values() for c in by_class}))
    index = {c: i for i, c in enumerate(class_names)}
    splits = {}
    for split, (by_class, files) in scanned.items():
        pairs = [(p, index[c]) for c, paths in by_class.items() for p in paths]
        pairs = pairs or [(p, -1) for p in files]
        splits[split] = [Example(os.path.relpath(p, folder), p, label) for p, label in pairs]
    if not split_folders:
        splits = _split_by_fraction(splits["train"], test_fraction)
    return ImageSet(splits, class_names)


def from_sources(sources: Sequence, labels=None, class_names=None, test_fraction=0.0) -> ImageSet:
    """An ImageSet of files or arrays (``labels``: ints, or None for unlabeled)."""
    _check_fraction(test_fraction)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(sources),) or not np.issubdtype(labels.dtype, np.integer):
            raise FolderError(
                f"labels of shape {labels.shape} and dtype {labels.dtype}; valid: integers of "
                f"shape ({len(sources)},), one per image"
            )
        if labels.min() < 0:
            raise FolderError(f"labels hold {labels.min()}; valid: integers >= 0")
        n_classes = int(labels.max()) + 1
        class_names = tuple(class_names or (str(i) for i in range(n_classes)))
        if len(class_names) < n_classes:
            raise FolderError(
                f"{len(class_names)} class_names for labels up to {n_classes - 1}; valid: "
                f"{n_classes} names or more"
            )
    items = [
        Example(str(i), s, -1 if labels is None else int(labels[i])) for i, s in enumerate(sources)
    ]
    if not items:
        raise FolderError("no images given; valid: at least one image")
    return ImageSet(_split_by_fraction(items, test_fraction), tuple(class_names or ()))


# ------------------------------------------------------------------------------------------- pixels


def _open(source):
    """A PIL image of a file path or a uint8 ``[H, W]`` / ``[H, W, C]`` array."""
    if isinstance(source, np.ndarray):
        array = source[..., 0] if source.ndim == 3 and source.shape[-1] == 1 else source
        return Image.fromarray(np.ascontiguousarray(array))
    return Image.open(source)


def stored_shape(image_set: ImageSet, size: int | None, channels: int | None) -> tuple:
    """``(size, size, C)``, or the images' common ``(H, W, C)`` (``None`` sides for sizes that
    vary); C ``channels``, or 1 when every image is grayscale and else 3. Reads only the image
    headers, and stops once both are settled."""
    gray, sizes = channels is None, set()
    for e in (e for examples in image_set.splits.values() for e in examples):
        if isinstance(e.source, np.ndarray):
            gray &= e.source.ndim == 2 or e.source.shape[-1] == 1
            sizes.add(e.source.shape[:2])
        else:
            with _open(e.source) as image:
                gray &= image.mode in GRAY_MODES
                sizes.add(image.size[::-1])
        if not gray and (size or len(sizes) > 1):
            break
    channels = channels or (1 if gray else 3)
    height, width = sizes.pop() if len(sizes) == 1 else (None, None)  # None: sizes vary
    return (size, size, channels) if size else (height, width, channels)


def center_resize(image, size: int):
    """Scale the shorter side to ``size`` and crop the centre ``size × size``."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(source, channels: int, size: int | None):
    """The PIL image as it will be stored: ``channels`` (1: L, 3: RGB), resized if ``size``."""
    image = _open(source).convert("L" if channels == 1 else "RGB")
    return center_resize(image, size) if size else image


# ------------------------------------------------------------------------------------------ writing


ENCODINGS = ("png", "jpeg")


def _builder(name: str, data_dir: str, image_set: ImageSet, shape: tuple, size, encoding):
    """A TFDS builder of ``image_set`` (``shape``: see `stored_shape`), defined per call and
    kept out of TFDS's registry (its name is the user's, read back from the files)."""
    features = {"image": tfds.features.Image(shape=shape, encoding_format=encoding)}
    if image_set.labelled:
        features["label"] = tfds.features.ClassLabel(names=list(image_set.class_names))
    dataset_name = name

    with tfds.core.registered.skip_registration():

        class FolderImages(tfds.core.GeneratorBasedBuilder):
            name = dataset_name
            VERSION = tfds.core.Version(DATASET_VERSION)
            RELEASE_NOTES = {DATASET_VERSION: "Written by jepa-data."}
            # As for mnist5k: naming the file skips TFDS's `importlib_resources` code lookup.
            code_path = epath.Path(__file__)

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self,
                    description="Images written by jepa-data.",
                    features=tfds.features.FeaturesDict(features),
                    supervised_keys=("image", "label") if image_set.labelled else None,
                )

            def _split_generators(self, dl_manager):
                del dl_manager
                return {s: self._generate_examples(ex) for s, ex in image_set.splits.items()}

            def _generate_examples(self, examples):
                for e in examples:
                    record = {"image": load_image(e.source, shape[-1], size)}
                    if image_set.labelled:
                        record["label"] = e.label
                    yield e.key, record

    return FolderImages(data_dir=data_dir, file_format="array_record")


def write(
    image_set: ImageSet,
    name: str,
    data_dir: str,
    size: int | None = None,
    channels: int | None = None,
    overwrite: bool = False,
    encoding: str = "png",
) -> dict:
    """Write ``image_set`` as TFDS dataset ``name`` under ``data_dir``; returns the summary
    (``summary_lines`` prints it). ``encoding``: ``png`` (lossless) or ``jpeg`` (PIL quality 75,
    several times smaller for photographs; how TFDS stores ImageNet)."""
    check_name(name)
    if size is not None and size < 1:
        raise FolderError(f"--size {size}; valid: a positive number of pixels")
    if channels not in (None, 1, 3):
        raise FolderError(f"--channels {channels}; valid: 1 (grayscale) or 3 (RGB)")
    if encoding not in ENCODINGS:
        raise FolderError(f"--encoding {encoding}; valid: one of {ENCODINGS}")
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    target = os.path.join(data_dir, name)
    if os.path.exists(target):
        if not overwrite:
            raise FolderError(
                f"{target} already exists; valid: another --name, or --overwrite to replace it"
            )
        shutil.rmtree(target)
    shape = stored_shape(image_set, size, channels)
    builder = _builder(name, data_dir, image_set, shape, size, encoding)
    prepare(builder)  # the summary returned says what was written
    return summary(name, data_dir, image_set, builder.info.features["image"].shape)


def write_folder(folder: str, name: str, data_dir: str, test_fraction=0.0, **kwargs) -> dict:
    """``scan_folder`` then ``write``."""
    return write(scan_folder(folder, test_fraction), name, data_dir, **kwargs)


def write_files(paths, labels=None, *, name, data_dir, class_names=None, test_fraction=0.0, **kw):
    """Image files (``labels``: one int per file, or None) as dataset ``name``."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FolderError(f"{missing[0]} is not a file ({len(missing)} missing); valid: images")
    paths = [os.path.abspath(p) for p in paths]
    return write(from_sources(paths, labels, class_names, test_fraction), name, data_dir, **kw)


def write_arrays(images, labels=None, *, name, data_dir, class_names=None, test_fraction=0.0, **kw):
    """uint8 images ``[N, H, W]`` or ``[N, H, W, C]`` (C 1 or 3) as dataset ``name``."""
    images = np.asarray(images)
    layout_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))
    if images.dtype != np.uint8 or not layout_ok or images.shape[-1] == 0:
        raise FolderError(
            f"images of dtype {images.dtype} and shape {images.shape}; valid: uint8 "
            "[N, H, W] or [N, H, W, C] with C 1 or 3"
        )
    images = list(images)
    return write(from_sources(images, labels, class_names, test_fraction), name, data_dir, **kw)


def summary(name: str, data_dir: str, image_set: ImageSet, shape) -> dict:
    """Counts per split and class, the stored image shape, where it lives."""
    counts = {s: len(ex) for s, ex in image_set.splits.items()}
    per_class = {
        c: {s: sum(e.label == i for e in ex) for s, ex in image_set.splits.items()}
        for i, c in enumerate(image_set.class_names)
    }
    return dict(
        name=name, data_dir=data_dir, splits=counts, classes=per_class, image_shape=list(shape)
    )


def summary_lines(s: dict) -> list[str]:
    """The summary as a table, then the flags that read the dataset."""
    shape = tuple("any" if d is None else d for d in s["image_shape"])
    splits = ", ".join(f"{k} {v}" for k, v in s["splits"].items())
    kind = f"{len(s['classes'])} classes" if s["classes"] else "unlabeled (no label field)"
    lines = [f"wrote {s['name']} to {s['data_dir']}: {splits} images of shape {shape}, {kind}"]
    if s["classes"]:
        names = list(s["splits"])
        width = max(len(c) for c in s["classes"]) + 2
        lines.append("class".ljust(width) + "".join(n.rjust(8) for n in names))
        for c, by_split in s["classes"].items():
            lines.append(c.ljust(width) + "".join(str(by_split[n]).rjust(8) for n in names))
    flags = f"--config.data.dataset={s['name']} --config.data.data_dir={s['data_dir']}"
    return [*lines, f"read it with: {flags}"]
