"""Frames of one sequence as views: level 1's identity term (``method.level1.views_*``).

Predicting the next frame is met by features of *where* the ink is and how it moves; the shape
of the digit, which never changes along a sequence, costs that objective more than it pays
(on SM-MNIST, identity falls as level 1 learns, from every start). This term asks for what
the frames of one sequence share. ``V`` frames of each sequence, each warped on its own (a
rotation and a rescaling about the ink's centroid, strokes thickened at random), are encoded;
their pooled embeddings, projected, must agree (LeJEPA's invariance: the squared distance to
the views' mean) while SIGReg keeps the projections of each view an isotropic Gaussian over the
batch (Balestriero & LeCun 2025), so agreeing cannot mean collapsing. Position differs between
the frames, so it cannot carry the agreement; the warps take away what else a single digit
image shares with itself (its exact slant, size and stroke width), which leaves its shape.

Everything here is pure JAX on normalized images (background = the image's minimum), inside
the jitted step: no host-side augmentation pipeline is involved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jepa import objectives


def sample_views(frames: jax.Array, num_views: int, key: jax.Array) -> jax.Array:
    """[b, T, H, W, C] → [b, num_views, H, W, C]: distinct frames of each sequence, drawn
    uniformly without replacement, independently per sequence."""
    b, t = frames.shape[:2]
    order = jax.vmap(lambda k: jax.random.permutation(k, t))(jax.random.split(key, b))
    return jnp.take_along_axis(frames, order[:, :num_views, None, None, None], axis=1)


def warp_about_centroid(images: jax.Array, angle: jax.Array, scale: jax.Array) -> jax.Array:
    """Rotate each image [n, H, W, C] by ``angle`` [n] radians (counter-clockwise on screen)
    and magnify it by ``scale`` [n] about its intensity centroid (above the image's minimum),
    bilinearly; what comes in from outside is the minimum (the background)."""
    h, w = images.shape[1:3]
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )

    def one(img, theta, s):
        background = img.min()
        mass = (img - background).sum(-1)
        total = mass.sum() + 1e-6
        cy, cx = (mass * rows).sum() / total, (mass * cols).sum() / total
        # Output pixel p samples the input at centroid + R(-theta) (p - centroid) / s.
        dy, dx = rows - cy, cols - cx
        cos, sin = jnp.cos(theta) / s, jnp.sin(theta) / s
        src_r = cos * dy + sin * dx + cy
        src_c = -sin * dy + cos * dx + cx

        def channel(c):  # cval must be static: warp the image above its background
            return jax.scipy.ndimage.map_coordinates(
                c - background, [src_r, src_c], order=1, mode="constant", cval=0.0
            )

        return jnp.stack([channel(img[..., k]) for k in range(img.shape[-1])], -1) + background

    return jax.vmap(one)(images, angle, scale)


def dilate(images: jax.Array) -> jax.Array:
    """3 × 3 grey dilation (max filter) of [n, H, W, C]: bright strokes one pixel thicker."""
    return jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")


def augment(
    images: jax.Array, key: jax.Array, rotate_deg: float, scale: float, dilate_prob: float
) -> jax.Array:
    """Independent random warps of [n, H, W, C]: a rotation uniform in ±``rotate_deg``, a
    magnification uniform in 1 ± ``scale``, then with probability ``dilate_prob`` thicker
    strokes. (No erosion: it erases the thinnest MNIST digits.)"""
    n = images.shape[0]
    k_angle, k_scale, k_dilate = jax.random.split(key, 3)
    if rotate_deg or scale:
        angle = jnp.deg2rad(rotate_deg) * jax.random.uniform(k_angle, (n,), minval=-1, maxval=1)
        factor = 1.0 + scale * jax.random.uniform(k_scale, (n,), minval=-1, maxval=1)
        images = warp_about_centroid(images, angle, factor)
    if dilate_prob:
        thicker = jax.random.uniform(k_dilate, (n, 1, 1, 1)) < dilate_prob
        images = jnp.where(thicker, dilate(images), images)
    return images


def invariance_and_sigreg(
    z: jax.Array, key: jax.Array, num_slices: int = 256
) -> tuple[jax.Array, jax.Array]:
    """z [b, V, d] (V views of b sequences) → (the mean squared distance of each view to its
    sequence's mean view, SIGReg of each view's batch averaged over the views)."""
    invariance = jnp.square(z - z.mean(1, keepdims=True)).mean()
    keys = [jax.random.fold_in(key, v) for v in range(z.shape[1])]
    per_view = [objectives.sigreg(z[:, v], k, num_slices) for v, k in enumerate(keys)]
    return invariance, jnp.mean(jnp.stack(per_view))
