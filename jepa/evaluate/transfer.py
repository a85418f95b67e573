"""Transfer check: digits the encoder never saw, drawn by other writers and digitized otherwise.

scikit-learn's ``load_digits`` (UCI optdigits: 1,797 digits by 43 writers, 8 × 8 cells, 17
gray levels, each cell the ink count of a 4 × 4 block of a 32 × 32 bitmap) is shaped like
MNIST here — upsampled to 20 × 20 and centred in 28 × 28 as MNIST centres its 20 × 20 digits —
so a 28-px grayscale encoder reads it as is. A logistic regression on the encoder's pooled
embedding (what ``jepa.load_encoder`` returns) is set beside one on the same images' raw
pixels, on one fixed stratified split: an embedding that only memorized mnist5k's strokes
falls to or below pixels here.
"""

from __future__ import annotations

import jax
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from jepa.evaluate.features import batched

SIZE, DIGIT = 28, 20  # MNIST's frame and the box its digits are scaled into


def heldout_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [1797, 28, 28, 1], labels [1797]): ``load_digits`` on MNIST's canvas."""
    digits = load_digits()
    cells = digits.images.astype(np.float32) / 16.0  # 17 gray levels → [0, 1]
    big = np.asarray(jax.image.resize(cells, (len(cells), DIGIT, DIGIT), "linear"))
    pad = (SIZE - DIGIT) // 2
    canvas = np.zeros((len(cells), SIZE, SIZE), np.float32)
    canvas[:, pad : pad + DIGIT, pad : pad + DIGIT] = np.clip(big, 0.0, 1.0)
    return np.round(canvas * 255).astype(np.uint8)[..., None], digits.target.astype(np.int32)


def logreg_top1(train_x, train_y, test_x, test_y) -> float:
    """Top-1 % of an L2 logistic regression (C = 1) on standardized features."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    model.fit(train_x, train_y)
    return round(100.0 * float((model.predict(test_x) == test_y).mean()), 2)


def transfer_check(encoder, batch_size: int = 256) -> dict:
    """Logistic regression on the held-out digits: ``encoder``'s pooled embedding (a
    ``PretrainedEncoder``) against raw pixels, half the digits to fit, half to test."""
    images, labels = heldout_digits()
    pooled = batched(lambda x: encoder(x)[1], images, size=batch_size)
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    index = np.arange(len(images))
    tr, te = train_test_split(index, test_size=0.5, stratify=labels, random_state=0)
    return {
        "dataset": "sklearn load_digits on a 28 px canvas",
        "train": len(tr),
        "test": len(te),
        "pooled": logreg_top1(pooled[tr], labels[tr], pooled[te], labels[te]),
        "pixels": logreg_top1(pixels[tr], labels[tr], pixels[te], labels[te]),
        "pooled_dim": int(pooled.shape[1]),
    }
