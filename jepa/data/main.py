"""``jepa-data``: a folder of images (or a .npy/.npz array) → a TFDS dataset jepa can train on.
Thin entry point; the logic lives in :mod:`jepa.data.folder`."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from jepa.data import folder

EPILOG = """\
layouts of FOLDER:
  FOLDER/CLASS/*.png                 labelled: one class per subfolder
  FOLDER/*.png                       unlabeled: pretraining needs no labels
  FOLDER/train/..., FOLDER/test/...  either layout, split into the given splits

examples:
  jepa-data ./pets --name pets --data_dir ./tfds --test_fraction 0.2 --size 32
  jepa-data ./frames --name frames --data_dir ./tfds           # unlabeled
  jepa-data images.npz --name digits --data_dir ./tfds         # arrays 'images' [, 'labels']
  jepa-data files.txt --name mine --data_dir ./tfds            # a list: PATH [CLASS] per line

then: jepa-train --config experiments/mnist_ijepa.py --workdir runs/pets \\
        --config.data.dataset=pets --config.data.data_dir=./tfds \\
        --config.model.image_size=32 --config.model.channels=3
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jepa-data",
        description="Turn a folder of images, or a .npy/.npz array of them, into a TFDS dataset "
        "(array_record) that --config.data.dataset=NAME --config.data.data_dir=DIR reads.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        metavar="FOLDER",
        help="folder of images, a .npy/.npz file, or a .txt list of image paths (relative to the "
        "list), each optionally followed by its class",
    )
    p.add_argument("--name", required=True, help="dataset name: lowercase, digits, underscores")
    p.add_argument("--data_dir", required=True, help="TFDS data directory to write into")
    p.add_argument(
        "--test_fraction", type=float, default=0.0, help="the part of each class held out as 'test'"
    )
    p.add_argument("--size", type=int, help="resize the shorter side and centre-crop to SIZE²")
    p.add_argument("--channels", type=int, choices=(1, 3), help="default: 1 if all gray, else 3")
    p.add_argument(
        "--encoding", choices=folder.ENCODINGS, default="png", help="jpeg: smaller, lossy"
    )
    p.add_argument("--overwrite", action="store_true", help="replace DATA_DIR/NAME if it exists")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _arrays(path: str) -> tuple:
    """(images, labels or None) of a .npy (images) or .npz (``images``, optional ``labels``)."""
    if path.endswith(".npy"):
        return np.load(path), None
    with np.load(path) as f:
        if "images" not in f:
            raise folder.FolderError(
                f"{path} has arrays {sorted(f.files)}; valid: 'images' [, 'labels']"
            )
        return f["images"], f["labels"] if "labels" in f else None


def _file_list(path: str) -> tuple[list[str], list[int] | None, list[str] | None]:
    """(paths, labels, class names) of a list file: one image path per line, relative to the
    list's folder, optionally followed by whitespace and a class name (all lines or none)."""
    root = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        rows = [line.split(None, 1) for line in f if line.strip() and not line.startswith("#")]
    paths = [os.path.join(root, os.path.expanduser(r[0])) for r in rows]
    named = [len(r) == 2 for r in rows]
    if any(named) and not all(named):
        first = named.index(not named[0]) + 1
        raise folder.FolderError(
            f"{path}: some lines name a class and some do not (first differing entry: {first}); "
            "valid: PATH on every line (unlabeled), or PATH CLASS on every line"
        )
    if not all(named):
        return paths, None, None
    classes = sorted({r[1].strip() for r in rows})
    return paths, [classes.index(r[1].strip()) for r in rows], classes


def write(args) -> dict:
    kw = {k: getattr(args, k) for k in ("size", "channels", "overwrite", "encoding")}
    common = dict(name=args.name, data_dir=args.data_dir, test_fraction=args.test_fraction)
    if args.source.endswith((".npy", ".npz")) and os.path.isfile(args.source):
        images, labels = _arrays(args.source)
        return folder.write_arrays(images, labels, **common, **kw)
    if args.source.endswith(".txt") and os.path.isfile(args.source):
        paths, labels, classes = _file_list(args.source)
        return folder.write_files(paths, labels, class_names=classes, **common, **kw)
    return folder.write_folder(args.source, **common, **kw)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary = write(args)
    except (folder.FolderError, OSError) as e:
        if args.debug:
            raise
        raise SystemExit(f"jepa-data: {e}") from None
    print("\n".join(folder.summary_lines(summary)), file=sys.stderr)
    print(json.dumps(summary), flush=True)
    return summary


def run():
    main()


if __name__ == "__main__":
    run()
