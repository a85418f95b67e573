"""Level 1's identity term (jepa/frame_views.py): views drawn per sequence, the warps by hand,
the invariance and SIGReg parts, and the term inside the hierarchy's loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import with_overrides
from test_hierarchy import frames_batch, tiny_hierarchy_config

from jepa import frame_views, hierarchy, objectives, validation


def test_views_are_distinct_frames_of_their_own_sequence():
    b, t = 6, 10
    frames = np.zeros((b, t, 4, 4, 1), np.float32)
    frames += (100 * np.arange(b)[:, None] + np.arange(t)[None])[..., None, None, None]
    views = np.asarray(frame_views.sample_views(jnp.asarray(frames), 4, jax.random.PRNGKey(0)))
    assert views.shape == (b, 4, 4, 4, 1)
    ids = views[:, :, 0, 0, 0].astype(int)
    assert (ids // 100 == np.arange(b)[:, None]).all()  # each view from its own sequence
    assert all(len(set(row)) == 4 for row in ids % 100)  # without replacement
    assert len({tuple(row) for row in ids % 100}) > 1  # drawn per sequence


def test_warp_by_hand_rotation_magnification_and_background():
    img = np.full((1, 16, 16, 1), -1.0, np.float32)
    img[0, 7:9, 4:12] = 1.0  # a horizontal bar, centroid (7.5, 7.5)
    same = frame_views.warp_about_centroid(jnp.asarray(img), jnp.zeros(1), jnp.ones(1))
    np.testing.assert_allclose(np.asarray(same), img, atol=1e-5)
    turned = np.asarray(
        frame_views.warp_about_centroid(jnp.asarray(img), jnp.full(1, np.pi / 2), jnp.ones(1))
    )
    expected = np.full_like(img, -1.0)
    expected[0, 4:12, 7:9] = 1.0  # the same bar, vertical, about the same centre
    np.testing.assert_allclose(turned, expected, atol=1e-4)
    square = np.full((1, 16, 16, 1), -1.0, np.float32)
    square[0, 6:10, 6:10] = 1.0  # 4 × 4 about (7.5, 7.5)
    big = np.asarray(
        frame_views.warp_about_centroid(jnp.asarray(square), jnp.zeros(1), jnp.full(1, 2.0))
    )
    # ×2 about the centre: pixel centres within 2 px of 7.5 → rows/cols 5…10 fully bright
    np.testing.assert_allclose(big[0, 5:11, 5:11], 1.0, atol=1e-5)
    # row r samples the input at 7.5 + (r − 7.5) / 2, bilinearly: row 4 at 5.75 (¾ bright),
    # row 3 at 5.25 (¼ bright), rows 0-2 at < 5 (background, which stays -1)
    assert big[0, 4, 7, 0] == pytest.approx(0.5) and big[0, 3, 7, 0] == pytest.approx(-0.5)
    assert big[0, :3].max() == -1.0 and big[0, 13:].max() == -1.0


def test_dilation_and_augment_off_is_the_identity():
    img = np.full((1, 7, 7, 1), -1.0, np.float32)
    img[0, 3, 3] = 1.0
    out = np.asarray(frame_views.dilate(jnp.asarray(img)))
    expected = np.full_like(img, -1.0)
    expected[0, 2:5, 2:5] = 1.0
    np.testing.assert_array_equal(out, expected)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 8, 8, 1)), jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(frame_views.augment(x, jax.random.PRNGKey(0), 0, 0, 0)), x
    )
    always = frame_views.augment(x, jax.random.PRNGKey(0), 0, 0, 1.0)
    np.testing.assert_array_equal(np.asarray(always), np.asarray(frame_views.dilate(x)))


def test_invariance_by_hand_and_sigreg_per_view():
    z = jnp.asarray([[[0.0, 0.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])  # [b=2, V=2, d=2]
    key = jax.random.PRNGKey(3)
    inv, sig = frame_views.invariance_and_sigreg(z, key, num_slices=8)
    # sequence 0: views ±(1, 0) from their mean; sequence 1: identical → mean of squares 2/8
    assert float(inv) == pytest.approx(2.0 / 8.0)
    expected = np.mean(
        [float(objectives.sigreg(z[:, v], jax.random.fold_in(key, v), 8)) for v in range(2)]
    )
    assert float(sig) == pytest.approx(expected, rel=1e-6)


def views_config(**overrides):
    return tiny_hierarchy_config(
        **{
            "model.patch_size": 16,
            "model.stem": "conv",
            "method.level1.views_weight": 1.0,
            "method.level1.views": 3,
            **overrides,
        }
    )


def test_views_term_enters_the_level1_loss_with_its_weight_and_trains_its_projector():
    c = views_config()
    model = hierarchy.Hierarchy(c)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    assert "views_projector" in params
    batch = {"image": jnp.asarray(frames_batch(c)["image"])}
    loss_fn = jax.jit(model.loss_fn)
    (loss, aux), grads = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))(
        params, params["encoder"], batch
    )
    inv, sig = float(aux["level1/views_invariance"]), float(aux["level1/views_sigreg"])
    assert inv > 0 and sig > 0
    off = hierarchy.Hierarchy(with_overrides(c, {"method.level1.views_weight": 0.0}))
    loss_off, aux_off = jax.jit(off.loss_fn)(params, params["encoder"], batch)
    assert "level1/views_invariance" not in aux_off
    lam = c.method.level1.views_sigreg
    np.testing.assert_allclose(
        float(loss), float(loss_off) + (1 - lam) * inv + lam * sig, rtol=1e-5
    )
    del loss_fn
    norms = jax.tree.leaves(
        jax.tree.map(lambda g: float(jnp.abs(g).sum()), grads["views_projector"])
    )
    assert all(n > 0 for n in norms)
    stem = grads["encoder"]["stem_conv0"]["kernel"]
    assert float(jnp.abs(stem).sum()) > 0


def test_bad_views_configs_name_the_key():
    cases = [
        ({"method.level1.views": 1}, "method.level1.views=1"),
        ({"method.level1.views": 9}, "method.level1.views=9"),
        ({"method.level1.views_sigreg": 1.5}, "method.level1.views_sigreg=1.5"),
        ({"method.level1.views_scale": 1.0}, "method.level1.views_scale=1.0"),
        ({"method.level1.views_dilate": -0.1}, "method.level1.views_dilate=-0.1"),
        ({"method.level1.views_weight": -1.0}, "method.level1.views_weight=-1.0"),
    ]
    for overrides, key in cases:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            validation.validate(views_config(**overrides), 1)
