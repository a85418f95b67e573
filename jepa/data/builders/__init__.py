"""TFDS builders for the data this project can make offline; importing registers them with TFDS.

`BUILDERS` is the one registry of names that `jepa.data.pipeline` prepares on first use. A new
builder module is imported here and added to it.
"""

from jepa.data.builders.mnist5k import Mnist5k

BUILDERS = {Mnist5k.name: Mnist5k}

__all__ = ["BUILDERS", "Mnist5k"]
