"""A user's own images, as a new user meets them: folders of PNGs become datasets with
jepa-data, jepa-train pretrains on labelled and unlabeled ones, jepa-eval probes the labelled
one; the run, copied elsewhere and with its latest step truncated, still loads and probes."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from helpers import tiny_config
from PIL import Image

import jepa
from jepa import train
from jepa.data import folder, pipeline
from jepa.data import main as data_main
from jepa.evaluate import main as eval_main


def write_pngs(root, classes, per_class, size=(20, 24), mode="RGB", seed=0):
    """``per_class`` PNGs per class folder (``classes`` None: a flat, unlabeled folder); class
    k's images are brighter on average, so a probe can tell them apart."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    for k, cls in enumerate(classes or [None]):
        out = os.path.join(root, cls) if cls else root
        os.makedirs(out, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 128, (*size, channels)) + 100 * k
            array = np.clip(pixels, 0, 255).astype(np.uint8)
            Image.fromarray(array[..., 0] if channels == 1 else array).save(f"{out}/{i}.png")


# ------------------------------------------------------------------------------- layouts
def test_class_folders_split_per_class_by_fraction(tmp_path):
    write_pngs(tmp_path, ["cat", "dog"], 10)
    s = folder.scan_folder(str(tmp_path), test_fraction=0.2)
    assert s.class_names == ("cat", "dog")
    counts = {k: np.bincount([e.label for e in v]).tolist() for k, v in s.splits.items()}
    assert counts == {"train": [8, 8], "test": [2, 2]}
    keys = [e.key for v in s.splits.values() for e in v]
    assert len(set(keys)) == 20 and "cat/0.png" in keys
    again = folder.scan_folder(str(tmp_path), test_fraction=0.2)
    assert [e.key for e in again.splits["test"]] == [e.key for e in s.splits["test"]]


def test_flat_folder_is_unlabeled_and_split_folders_are_kept(tmp_path):
    write_pngs(tmp_path / "flat", None, 5)
    s = folder.scan_folder(str(tmp_path / "flat"))
    assert not s.labelled and {e.label for e in s.splits["train"]} == {-1}
    write_pngs(tmp_path / "split" / "train", ["a", "b"], 3)
    write_pngs(tmp_path / "split" / "test", ["a", "b"], 2)
    s = folder.scan_folder(str(tmp_path / "split"))
    assert {k: len(v) for k, v in s.splits.items()} == {"train": 6, "test": 4}


def test_arrays_become_a_dataset_tfds_reads_by_name(tmp_path):
    images = np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8)
    out = folder.write_arrays(images, [0, 1, 0, 1, 0, 1], name="tiny", data_dir=str(tmp_path))
    assert out["splits"] == {"train": 6} and out["image_shape"] == [8, 8, 1]
    source = pipeline.load_data_source("tiny", "train", str(tmp_path))
    got = sorted((int(r["label"]), r["image"].tobytes()) for r in (source[i] for i in range(6)))
    want = sorted((i % 2, images[i][..., None].tobytes()) for i in range(6))
    assert got == want  # lossless, every image once, with its label


def test_a_list_of_files_becomes_a_dataset_with_its_classes(tmp_path, capfd):
    write_pngs(tmp_path / "pics", ["a", "b"], 3)
    lines = [f"pics/{c}/{i}.png {c}" for c in ("b", "a") for i in range(3)]
    (tmp_path / "list.txt").write_text("# path class\n" + "\n".join(lines) + "\n")
    data_main.main([str(tmp_path / "list.txt"), "--name", "listed", "--data_dir", str(tmp_path)])
    printed = capfd.readouterr()
    # jepa-data's summary only: TFDS's shuffling bars and banner stay off the terminal.
    assert "wrote listed to" in printed.err
    assert "Shuffling" not in printed.out + printed.err
    assert "downloaded and prepared" not in printed.out + printed.err
    source = pipeline.load_data_source("listed", "train", str(tmp_path))
    labels = sorted(int(source[i]["label"]) for i in range(len(source)))
    assert labels == [0, 0, 0, 1, 1, 1]  # classes sorted by name: a → 0, b → 1
    a0 = np.asarray(Image.open(tmp_path / "pics" / "a" / "0.png"))
    assert any(np.array_equal(source[i]["image"], a0) for i in range(len(source)))
    (tmp_path / "mixed.txt").write_text("pics/a/0.png a\npics/a/1.png\n")
    with pytest.raises(SystemExit, match="some lines name a class"):
        data_main.main([str(tmp_path / "mixed.txt"), "--name", "mixed", "--data_dir", "x"])


def test_jpeg_encoding_stores_smaller_records_that_decode_close_to_the_images(tmp_path):
    smooth = np.linspace(0, 255, 48 * 64 * 3).reshape(48, 64, 3)
    images = np.stack([smooth, smooth[::-1], 255 - smooth]).astype(np.uint8)
    for encoding in ("png", "jpeg"):
        folder.write_arrays(images, name=encoding, data_dir=str(tmp_path), encoding=encoding)
    source = pipeline.load_data_source("jpeg", "train", str(tmp_path))
    decoded = sorted((source[i]["image"] for i in range(3)), key=lambda x: int(x[0, 0, 0]))
    want = sorted(images, key=lambda x: int(x[0, 0, 0]))
    error = np.abs(np.stack(decoded).astype(int) - np.stack(want)).mean()
    assert 0 < error < 3  # lossy, but the same pictures
    for encoding in ("png", "jpeg"):
        with open(tmp_path / encoding / "1.0.0" / "features.json") as f:
            assert f'"encodingFormat": "{encoding}"' in f.read()
    with pytest.raises(folder.FolderError, match="valid: one of"):
        folder.write_arrays(images, name="webp", data_dir=str(tmp_path), encoding="webp")


# ---------------------------------------------------------------------------- end to end
def tiny_own_config(name, data_dir, **overrides):
    """The 32-px RGB tiny ViT on dataset ``name``: 4 steps, checkpoints at 2 and 4."""
    return tiny_config(
        **{
            "data.dataset": name,
            "data.data_dir": data_dir,
            "data.test_split": "test",
            "total_steps": 4,
            "checkpoint_every": 2,
            "log_every": 2,
            "health_every": 0,
            "eval.probe_epochs": 2,
            "eval.lrs": (1e-2,),
            "eval.wds": (0.0,),
            **overrides,
        }
    )


def truncate_state(step_dir):
    """Cut every array data file of the step's ``state`` item to a third."""
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        if os.path.basename(root) == "d":
            for f in files:
                path = os.path.join(root, f)
                with open(path, "r+b") as fh:
                    fh.truncate(os.path.getsize(path) // 3)


@pytest.mark.slow
def test_own_images_pretrain_probe_and_relocate(tmp_path, monkeypatch, caplog, capsys):
    write_pngs(tmp_path / "pets", ["cat", "dog"], 12)
    write_pngs(tmp_path / "frames", None, 16, seed=1)
    # Relative paths, as a user types them: the run must store them absolute.
    monkeypatch.chdir(tmp_path)
    labelled = data_main.main(
        ["pets", "--name", "pets", "--data_dir", "tfds", "--test_fraction", "0.25", "--size", "32"]
    )
    assert labelled["splits"] == {"train": 18, "test": 6} and labelled["image_shape"] == [
        32
    ] * 2 + [3]
    assert labelled["classes"] == {"cat": {"train": 9, "test": 3}, "dog": {"train": 9, "test": 3}}
    unlabeled = data_main.main(["frames", "--name", "frames", "--data_dir", "tfds", "--size", "32"])
    assert unlabeled["classes"] == {} and unlabeled["splits"] == {"train": 16}

    train.train_and_evaluate(tiny_own_config("frames", "tfds"), "runs/frames")  # no labels
    train.train_and_evaluate(tiny_own_config("pets", "tfds"), "runs/pets")
    with pytest.raises(SystemExit, match=r"data\.dataset='frames' has no 'label' field"):
        eval_main.main(["--workdir", "runs/frames"])
    probe = eval_main.main(
        ["--workdir", "runs/frames", "--config.eval.dataset=pets", "--config.eval.data_dir=tfds"]
    )
    assert probe[-1]["dataset"] == "pets" and probe[-1]["step"] == 4

    # The run copied elsewhere, read from a third directory, its latest step truncated.
    shutil.copytree(tmp_path / "runs" / "pets", tmp_path / "moved" / "pets")
    truncate_state(str(tmp_path / "moved" / "pets" / "checkpoints" / "4"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        enc = jepa.load_encoder("../moved/pets")
    assert enc.step == 2
    assert any(
        "step 4" in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records
    )
    tokens, pooled = enc(np.zeros((2, 32, 32, 3), np.uint8))
    assert pooled.shape == (2, 64)
    capsys.readouterr()
    results = eval_main.main(["--workdir", "../moved/pets"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result == results[-1] and result["step"] == 2 and result["dataset"] == "pets"
    assert not os.path.exists(tmp_path / "elsewhere" / "tfds")  # nothing prepared here
    assert os.listdir(tmp_path / "elsewhere") == []
    # An explicit corrupt step is named, with the steps there are.
    with pytest.raises(
        SystemExit, match=r"checkpoint step 4 .* unreadable .*valid: another step \[2\]"
    ):
        eval_main.main(["--workdir", "../moved/pets", "--step", "4"])
