"""TFDS builders for the data this project can make offline; importing registers them with TFDS.

`BUILDERS` is the one registry of names that `jepa.data.pipeline` prepares on first use. A new
builder module is imported here and added to it.
"""

import contextlib
import io

import tensorflow_datasets as tfds

from jepa.data.builders.mnist5k import Mnist5k
from jepa.data.builders.stochastic_moving_mnist import StochasticMovingMnist

BUILDERS = {Mnist5k.name: Mnist5k, StochasticMovingMnist.name: StochasticMovingMnist}

__all__ = ["BUILDERS", "Mnist5k", "StochasticMovingMnist", "prepare"]


def prepare(builder: tfds.core.DatasetBuilder) -> None:
    """Write ``builder``'s dataset as array_record. Nothing is downloaded (the data ships with
    installed packages, is generated, or is the user's): ``try_download_gcs=False`` keeps TFDS
    from looking for a copy on GCS. TFDS's own banners and progress bars on stdout are dropped;
    the callers say in one line what they do."""
    tfds.disable_progress_bar()
    with contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
