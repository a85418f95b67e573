"""Low-shot probes in closed form: ridge regression onto one-hot labels (big_vision's few-shot
evaluator does the same), on 1 % / 10 % of the labels or N labelled images per class.

With a handful of labels there is no validation set worth carving, so the ridge strength is
chosen by exact leave-one-out accuracy, which ridge gives for free (``ridge.py``: one SVD serves
every λ and its leave-one-out predictions).
Subsets are drawn per class, ``seeds`` times; the mean and std over draws are reported.
"""

from __future__ import annotations

import re
import zlib

import jax.numpy as jnp
import numpy as np

from jepa.evaluate.linear_probe import standardize
from jepa.evaluate.ridge import ridge_classifier

# The ridge strengths: λ = alpha · mean squared singular value of the centered features, so the
# grid means the same thing whatever the feature scale and width.
ALPHAS = tuple(float(a) for a in np.logspace(-4, 2, 13))


def parse_subset(spec: str) -> tuple[str, float]:
    """``"10-shot"`` → ("shot", 10); ``"1%"`` → ("percent", 1.0)."""
    if m := re.fullmatch(r"(\d+)-shot", spec):
        return "shot", int(m.group(1))
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", spec):
        return "percent", float(m.group(1))
    raise ValueError(f"eval.fewshot entry {spec!r}: use 'N-shot' (per class) or 'P%' (of train)")


def subset_indices(labels: np.ndarray, spec: str, seed) -> np.ndarray:
    """Indices of a class-stratified labelled subset: N per class (``N-shot``) or P % of each
    class, at least one (``P%``). Deterministic in ``seed``; sorted."""
    kind, amount = parse_subset(spec)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(amount) if kind == "shot" else max(1, int(round(amount / 100 * len(members))))
        if k > len(members):
            raise ValueError(f"{spec}: class {c} has only {len(members)} training samples")
        picked.append(rng.choice(members, k, replace=False))
    return np.sort(np.concatenate(picked))


def fewshot_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    subsets=("10-shot", "1%", "10%"),
    seeds: int = 3,
    batchnorm: bool = True,
    seed: int = 0,
) -> dict:
    """Test top-1 per subset (mean and std over ``seeds`` draws); ``top1`` is the first
    subset's mean, in [0, 1]."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    train_x = train_x.reshape(len(train_x), -1).astype(np.float32)
    test_x = test_x.reshape(len(test_x), -1).astype(np.float32)
    results = {}
    for spec in subsets:
        accs, chosen = [], []
        for s in range(seeds):
            idx = subset_indices(train_y, spec, seed=[seed, s, zlib.crc32(spec.encode())])
            fit_x, te_x = standardize(train_x[idx], test_x) if batchnorm else (train_x[idx], test_x)
            clf = ridge_classifier(fit_x, train_y[idx], num_classes, ALPHAS)
            pred = np.asarray((jnp.asarray(te_x) @ clf["w"] + clf["b"]).argmax(-1))
            accs.append(float((pred == test_y).mean()))
            chosen.append(clf["alpha"])
        results[spec] = {
            "top1": float(np.mean(accs)),
            "top1_std": float(np.std(accs)),
            "labels": int(len(idx)),
            "alphas": chosen,
        }
    return {"top1": results[subsets[0]]["top1"], "subsets": results}
