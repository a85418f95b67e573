"""Model shapes, parameter counts against the reference, and initialization statistics."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa.models import layers
from jepa.models.predictor import Predictor
from jepa.models.vit import VisionTransformer, parse_variant, patchify


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(tree)))


def abstract_params(variant, res, pred_depth):
    h = parse_variant(variant)
    patch = h.pop("patch_size")
    grid = res // patch
    enc = VisionTransformer((res, res), patch, **h)
    pred = Predictor((grid, grid), h["width"], 384, pred_depth, h["num_heads"])
    key = jax.random.key(0)
    e = jax.eval_shape(lambda: enc.init(key, jnp.zeros((1, res, res, 3)))["params"])
    p = jax.eval_shape(
        lambda: pred.init(
            key,
            jnp.zeros((1, 4, h["width"])),
            jnp.zeros((1, 4), jnp.int32),
            jnp.zeros((1, 2, 3), jnp.int32),
        )["params"]
    )
    return e, p


# Trainable parameter counts of facebookresearch/ijepa's models (fixed pos-embeddings excluded).
@pytest.mark.parametrize(
    "variant,res,pred_depth,encoder_count,predictor_count",
    [
        ("S/16", 224, 6, 21_589_632, 10_943_616),
        ("B/16", 224, 6, 85_646_592, 11_238_912),
        ("H/14", 224, 12, 630_434_560, 22_279_424),
    ],
)
def test_parameter_counts_match_reference(variant, res, pred_depth, encoder_count, predictor_count):
    enc, pred = abstract_params(variant, res, pred_depth)
    assert count(enc) == encoder_count
    assert count(pred) == predictor_count


def test_every_parameter_has_logical_axis_names():
    enc, pred = abstract_params("Ti/16", 64, 1)
    for tree in (enc, pred):
        leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
        assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
        assert all(len(x.names) == len(x.value.shape) for x in leaves)


def test_initialization_matches_reference():
    width, depth = 192, 4
    enc = VisionTransformer((64, 64), 16, width, depth, 3)
    params = nn.unbox(enc.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)))["params"])
    for i in range(depth):
        block = params[f"block_{i}"]
        expected = 0.02 / math.sqrt(2 * (i + 1))  # per-layer rescale of output projections
        for kernel in (block["attn"]["proj_kernel"], block["mlp"]["fc2"]["kernel"]):
            assert np.std(kernel) == pytest.approx(expected, rel=0.05)
        for kernel in (block["attn"]["qkv_kernel"], block["mlp"]["fc1"]["kernel"]):
            assert np.std(kernel) == pytest.approx(0.02, rel=0.05)
        for bias in (block["attn"]["qkv_bias"], block["mlp"]["fc1"]["bias"]):
            assert not np.any(bias)
        np.testing.assert_array_equal(block["norm1"]["scale"], 1.0)
        np.testing.assert_array_equal(block["norm1"]["bias"], 0.0)
    assert np.std(params["patch_embed"]["kernel"]) == pytest.approx(0.02, rel=0.05)


def test_sincos_matches_hand_computed_values():
    emb = layers.sincos_2d(8, 2, 3)  # 2 rows × 3 columns, width 8: [w-part(4), h-part(4)]
    assert emb.shape == (6, 8)
    # Patch at row 1, column 2 (raster index 5). 1-D part of width 4: omega = [1, 1/100].
    omega = np.array([1.0, 0.01])
    expect_w = np.concatenate([np.sin(2 * omega), np.cos(2 * omega)])
    expect_h = np.concatenate([np.sin(1 * omega), np.cos(1 * omega)])
    np.testing.assert_allclose(emb[5], np.concatenate([expect_w, expect_h]), rtol=1e-6)
    assert layers.sincos_3d(16, 2, 2, 2).shape == (8, 16)


def test_patchify_order_and_token_selection():
    images = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
    patches = patchify(images, 2)
    assert patches.shape == (2, 4, 4)
    np.testing.assert_array_equal(patches[0, 1], [2, 3, 6, 7])  # top-right patch

    enc = VisionTransformer((16, 16), 4, 32, 1, 2)
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    params = enc.init(jax.random.key(1), x)
    full, aux = enc.apply(params, x)
    assert full.shape == (2, 16, 32) and "block_0" in aux
    idx = jnp.array([[0, 5, 7], [1, 2, 15]])
    part, _ = enc.apply(params, x, idx)
    assert part.shape == (2, 3, 32)


def test_gaussian_blur_by_hand_and_the_blurred_patch_embedding():
    sigma = 1.0  # radius ceil(3σ) = 3
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    k /= k.sum()
    delta = np.zeros((1, 9, 9, 1), np.float32)
    delta[0, 4, 4, 0] = 1.0  # far enough from the border: the kernel's outer product
    out = layers.gaussian_blur(jnp.asarray(delta), sigma)
    np.testing.assert_allclose(out[0, 1:8, 1:8, 0], np.outer(k, k), rtol=1e-5, atol=1e-7)
    # edge padding: a constant image (and each channel of it) stays constant
    const = jnp.broadcast_to(jnp.array([0.3, -2.0]), (1, 6, 6, 2))
    np.testing.assert_allclose(layers.gaussian_blur(const, 2.0), const, rtol=1e-5)

    # The encoder with patch_blur sees the blurred image, and gains no parameters.
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 1))
    blurred_enc = VisionTransformer((16, 16), 4, 32, 1, 2, patch_blur=1.0)
    plain_enc = VisionTransformer((16, 16), 4, 32, 1, 2)
    params = plain_enc.init(jax.random.key(1), x)
    assert jax.tree.structure(blurred_enc.init(jax.random.key(1), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(
        blurred_enc.apply(params, x)[0],
        plain_enc.apply(params, layers.gaussian_blur(x, 1.0))[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_predictor_output_shape_and_block_independence():
    pred = Predictor((4, 4), 32, 16, 1, 2)
    ctx = jax.random.normal(jax.random.key(0), (2, 5, 32))
    ctx_idx = jnp.tile(jnp.arange(5), (2, 1))
    tgt = jnp.array([[[8, 9, 10], [12, 13, 14]]] * 2)
    params = pred.init(jax.random.key(1), ctx, ctx_idx, tgt)
    out = pred.apply(params, ctx, ctx_idx, tgt)
    assert out.shape == (2, 2, 3, 32)
    # Each block is predicted in its own sequence: changing block 1's positions leaves block 0.
    tgt2 = tgt.at[:, 1].set(jnp.array([15, 11, 7]))
    out2 = pred.apply(params, ctx, ctx_idx, tgt2)
    np.testing.assert_allclose(out[:, 0], out2[:, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[:, 1], out2[:, 1])


def test_bfloat16_compute_keeps_float32_params():
    enc = VisionTransformer((16, 16), 4, 32, 1, 2, dtype=jnp.bfloat16)
    x = jnp.ones((1, 16, 16, 3))
    params = enc.init(jax.random.key(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.unbox(params)))
    out, _ = enc.apply(params, x)
    assert out.dtype == jnp.bfloat16


@pytest.mark.parametrize("remat,attention_impl", [("none", None), ("dots", "xla")])
def test_last_block_trim_gives_the_full_blocks_outputs(remat, attention_impl):
    """The predictor's last block computes only the mask tokens' outputs: those must equal the
    same positions of a full last block (the trim saves FLOPs, never changes values)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 11, 32))

    class Stack(nn.Module):
        keep: int | None

        @nn.compact
        def __call__(self, x):
            return layers.stack_blocks(
                x, 2, 4, 4.0, jnp.float32, remat, attention_impl, last_block_outputs=self.keep
            )

    params = jax.jit(Stack(None).init)(jax.random.PRNGKey(1), x)
    full = jax.jit(Stack(None).apply)(params, x)
    trimmed = jax.jit(Stack(4).apply)(params, x)
    assert trimmed.shape == (3, 4, 32)
    np.testing.assert_allclose(trimmed, full[:, -4:], rtol=1e-5, atol=1e-5)
    grads = [
        jax.jit(jax.grad(lambda p, k=k: Stack(k).apply(p, x)[:, -4:].sum()))(params)
        for k in (None, 4)
    ]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *grads)


@pytest.mark.parametrize(
    "spec,shape_a,shape_b",
    [
        ("bld,dthk->tbhlk", (2, 5, 8), (8, 3, 2, 4)),  # heads-major qkv projection
        ("bhqk,bhsk->bhqs", (2, 3, 5, 4), (2, 3, 6, 4)),  # attention logits (batch axes)
        ("abd,dz->abz", (2, 5, 8), (8, 16)),  # a dense layer
    ],
)
def test_mixed_precision_einsum_matches_float32_forward_and_gradients(spec, shape_a, shape_b):
    """bf16 operands with float32 accumulation: the value and both gradients equal the float32
    einsum of the bf16-rounded operands to within the bf16 rounding of the results (2⁻⁸
    relative), and come back in the operands' dtype."""
    ka, kb, kg = jax.random.split(jax.random.key(0), 3)
    a = jax.random.normal(ka, shape_a).astype(jnp.bfloat16)
    b = jax.random.normal(kb, shape_b).astype(jnp.bfloat16)
    out = layers.einsum(spec, a, b)
    ref = jnp.einsum(spec, a.astype(jnp.float32), b.astype(jnp.float32))
    assert out.dtype == jnp.bfloat16 and out.shape == ref.shape
    np.testing.assert_allclose(out.astype(jnp.float32), ref, rtol=2**-8, atol=1e-2)
    cot = jax.random.normal(kg, ref.shape).astype(jnp.bfloat16)
    grads = jax.grad(
        lambda a, b: (layers.einsum(spec, a, b) * cot).astype(jnp.float32).sum(), (0, 1)
    )(a, b)
    ref_grads = jax.grad(lambda a, b: (jnp.einsum(spec, a, b) * cot).sum(), (0, 1))(
        a.astype(jnp.float32), b.astype(jnp.float32)
    )
    for g, r in zip(grads, ref_grads, strict=True):
        assert g.dtype == jnp.bfloat16
        np.testing.assert_allclose(g.astype(jnp.float32), r, rtol=2**-7, atol=2e-2)
    # A float32 operand (a kernel) computed in bf16 gets a float32 gradient straight from the
    # accumulator: no bf16 rounding, so it matches far tighter than the bf16 gradient above.
    b32 = b.astype(jnp.float32)
    grad_b32 = jax.grad(
        lambda b: (layers.einsum(spec, a, b, dtype=jnp.bfloat16) * cot).astype(jnp.float32).sum()
    )(b32)
    assert grad_b32.dtype == jnp.float32
    np.testing.assert_allclose(grad_b32, ref_grads[1], rtol=1e-5, atol=1e-4)
    # float32 operands take plain jnp.einsum: bit-identical to it.
    a32, b32 = a.astype(jnp.float32), b.astype(jnp.float32)
    np.testing.assert_array_equal(layers.einsum(spec, a32, b32), jnp.einsum(spec, a32, b32))


def test_mixed_precision_einsum_rejects_a_one_sided_sum():
    a = jnp.ones((2, 3), jnp.bfloat16)
    with pytest.raises(ValueError, match="index 'j'"):
        layers.einsum("ij,k->ik", a, jnp.ones((4,), jnp.bfloat16))


def test_low_precision_bias_gradient_is_the_float32_sum():
    """einsum with a bias in bf16: the bias is added before rounding; its gradient is the
    float32 sum of the cotangent over the broadcast axes (hand-computed), in float32."""
    a = jnp.ones((2, 3, 1), jnp.bfloat16)
    b = jnp.full((1, 4), 0.5, jnp.bfloat16)
    bias = jnp.arange(3.0)[:, None]  # [3, 1]: broadcast over axes 0 and 2 of [2, 3, 4]
    out = layers.einsum("bqk,kn->bqn", a, b, bias)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(out[1, :, 2], [0.5, 1.5, 2.5])
    cot = jnp.arange(24.0).reshape(2, 3, 4).astype(jnp.bfloat16)

    def loss(bias):
        return (layers.einsum("bqk,kn->bqn", a, b, bias) * cot).astype(jnp.float32).sum()

    grad = jax.grad(loss)(bias)
    assert grad.dtype == jnp.float32 and grad.shape == (3, 1)
    np.testing.assert_array_equal(grad[:, 0], np.arange(24.0).reshape(2, 3, 4).sum((0, 2)))


def test_dense_keeps_nn_dense_parameters_and_values():
    """layers.Dense has nn.Dense's parameter tree (checkpoints are interchangeable) and, in
    float32, its exact outputs."""
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    ours = layers.Dense(16, bias_init=nn.initializers.normal(1.0))
    params = ours.init(jax.random.key(2), x)
    theirs = nn.Dense(16)
    ref_params = theirs.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6)
    low = layers.Dense(16, dtype=jnp.bfloat16).apply(params, x)
    assert low.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        low.astype(jnp.float32), theirs.apply(params, x), rtol=0.02, atol=0.05
    )


def test_conv_stem_tokens_move_with_the_image():
    """model.stem="conv": log2(p) stride-2 convs give one token input per p × p cell, and an
    image shifted by p pixels shifts the stem's features by one cell (away from the borders,
    where the zero padding differs) — what a fixed patch grid cannot do for sub-patch motion."""
    enc = VisionTransformer(
        image_size=(64, 64), patch_size=8, width=32, depth=1, num_heads=2, stem="conv"
    )
    x = np.zeros((1, 64, 64, 1), np.float32)
    x[0, 20:36, 18:30] = np.random.default_rng(0).standard_normal((16, 12, 1))
    params = enc.init(jax.random.PRNGKey(0), jnp.asarray(x))["params"]
    assert {"stem_conv0", "stem_conv1", "stem_conv2"} <= set(params)
    assert nn.unbox(params["stem_conv2"]["kernel"]).shape == (3, 3, 16, 32)  # channels double

    def stem_out(img):
        (tokens, _), state = enc.apply(
            {"params": params},
            jnp.asarray(img),
            capture_intermediates=True,
            mutable=["intermediates"],
        )
        assert tokens.shape == (1, 64, 32)
        return np.asarray(state["intermediates"]["stem_norm2"]["__call__"][0])  # [1, 8, 8, 32]

    shifted = np.roll(x, (8, 16), axis=(1, 2))  # one cell down, two right
    a, b = stem_out(x), stem_out(shifted)
    np.testing.assert_allclose(b[0, 2:7, 3:8], a[0, 1:6, 1:6], atol=1e-5)
    for bad, match in ((12, "power of 2"),):
        with pytest.raises(ValueError, match=match):
            VisionTransformer(
                image_size=(48, 48), patch_size=bad, width=32, depth=1, num_heads=2, stem="conv"
            ).init(jax.random.PRNGKey(0), jnp.zeros((1, 48, 48, 1)))
    tube = VisionTransformer(
        image_size=(64, 64), patch_size=8, width=32, depth=1, num_heads=2, stem="conv", num_frames=4
    )
    with pytest.raises(ValueError, match="tubelet"):
        tube.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 64, 64, 1)))


@pytest.mark.parametrize("num_queries", [None, 3])
def test_fused_attention_matches_einsum_attention(num_queries):
    """attention_impl="xla" (jax.nn.dot_product_attention, the path the cuDNN kernel takes on
    GPUs) against the einsum attention with the same parameters: outputs and every gradient,
    for full attention and for the predictor's last-block queries."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 32))

    def module(impl):
        return layers.Attention(num_heads=4, attention_impl=impl)

    params = module(None).init(jax.random.PRNGKey(1), x)
    # Non-zero biases, so a bias routed to the wrong one of q, k, v shows.
    params = jax.tree.map(lambda p: p + 0.1 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), params)
    outputs, grads = {}, {}
    for impl in (None, "xla"):
        apply = lambda p, x, impl=impl: module(impl).apply(p, x, num_queries)  # noqa: E731
        outputs[impl] = jax.jit(apply)(params, x)
        loss = lambda p, x, apply=apply: jnp.sum(apply(p, x) * jnp.cos(apply(p, x)))  # noqa: E731
        grads[impl] = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    assert outputs["xla"].shape == (2, num_queries or 7, 32)
    np.testing.assert_allclose(outputs["xla"], outputs[None], rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        grads["xla"],
        grads[None],
    )
