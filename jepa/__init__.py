"""jepa: Joint Embedding Predictive Architectures in JAX/Flax."""

__version__ = "0.1.0"


def load_encoder(path_or_workdir, step=None, weights=None):
    """A pretrained encoder for downstream use: ``enc(images) -> (tokens, pooled)``, plus
    ``enc.params``, ``enc.module``, ``enc.normalize`` and ``enc.config``; see :mod:`jepa.hub`."""
    from jepa import hub

    return hub.load_encoder(path_or_workdir, step=step, weights=weights)


def from_ijepa_torch(path_or_state_dict, variant="H/14", res=224, weights="target", **kwargs):
    """Official I-JEPA PyTorch weights as a pretrained encoder; see :mod:`jepa.ijepa_import`."""
    from jepa import ijepa_import

    return ijepa_import.from_ijepa_torch(path_or_state_dict, variant, res, weights, **kwargs)
