"""Multiview JEPA with VICReg instead of SIGReg, no EMA: the demo's run
(``mnist_sigreg_jepa.py``) with only the anti-collapse term changed.

Every view's pooled projection predicts the mean of the global views' (squared-L2 energy, the
VICReg invariance term); VICReg's variance hinge (std of each dimension over the batch ≥ 1)
and covariance penalty (off-diagonal covariance → 0) on each view's batch of projections keep
the embedding from collapsing. VICReg's 25 : 25 : 1 ratio of invariance, variance and
covariance weights (Bardes et al., 2022), written as 1 : 1 : 0.04.

I-JEPA with VICReg on its pooled context embeddings, the EMA target kept, is a different run:
``experiments/mnist_ijepa.py`` with
``--config.method.loss.vicreg_var=1 --config.method.loss.vicreg_cov=0.04``.
"""

import importlib.util
import os

from jepa import config as config_lib


def _sigreg_config(arg):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_sigreg_jepa.py")
    spec = importlib.util.spec_from_file_location("mnist_sigreg_jepa", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(arg=None):
    c = _sigreg_config(arg)
    c.unlock()
    loss = c.method.loss
    loss.sigreg = 0.0
    loss.view_weight = 1.0
    loss.vicreg_var = 1.0
    loss.vicreg_cov = 0.04
    return config_lib.finalize(c)
