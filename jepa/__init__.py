"""jepa: Joint Embedding Predictive Architectures in JAX/Flax."""

from jepa.hub import load_encoder
from jepa.version import __version__

__all__ = ["__version__", "from_ijepa_torch", "load_encoder"]


def from_ijepa_torch(path_or_state_dict, variant="H/14", res=224, weights="target", **kwargs):
    """Official I-JEPA PyTorch weights as a pretrained encoder; see :mod:`jepa.ijepa_import`."""
    # Imported when called: the importer is the torch extra's, and ``import jepa.hub`` stays
    # free of it.
    from jepa import ijepa_import

    return ijepa_import.from_ijepa_torch(path_or_state_dict, variant, res, weights, **kwargs)
