"""TFDS builders for the data this project can make offline; importing registers them with TFDS.

`BUILDERS` is the one registry of names that `jepa.data.pipeline` prepares on first use. A new
builder module is imported here and added to it.
"""

from jepa.data.builders.mnist5k import Mnist5k
from jepa.data.builders.stochastic_moving_mnist import StochasticMovingMnist

BUILDERS = {Mnist5k.name: Mnist5k, StochasticMovingMnist.name: StochasticMovingMnist}

__all__ = ["BUILDERS", "Mnist5k", "StochasticMovingMnist"]
