"""jepa: Joint Embedding Predictive Architectures in JAX/Flax."""

__version__ = "0.1.0"


def load_encoder(path_or_workdir, step=None, weights="target"):
    """Load a pretrained encoder for downstream use; see :mod:`jepa.hub`."""
    from jepa import hub

    return hub.load_encoder(path_or_workdir, step=step, weights=weights)
