"""Converting official I-JEPA PyTorch checkpoints (jepa.ijepa_import).

The checkpoints are built here with the official key names and shapes and random values, for
ViT-Ti/16 (the real depth of 12; checks are strict, so no cut-down depth) at 32 px, a 2×2 patch
grid. Our forward is compared with a slow NumPy forward of the official ViT written below from
its definition (conv patch embedding, timm's qkv layout, erf GELU), not from our modules.
"""

import math
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy.special import erf

from jepa import hub
from jepa.ijepa_import import from_ijepa_torch, resample_pos_embed, torch_bicubic_matrix

VARIANT, RES, PATCH, WIDTH, DEPTH, HEADS, HIDDEN = "Ti/16", 32, 16, 192, 12, 3, 768
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


# ---------------------------------------------------------------------------------------------
# An official-style checkpoint
# ---------------------------------------------------------------------------------------------


def official_sincos(dim: int, grid: int) -> np.ndarray:
    """I-JEPA's get_2d_sincos_pos_embed, restated: an 'xy' meshgrid whose first plane (the
    column index) fills the first half of the width, the row index the second."""
    cols, rows = np.meshgrid(np.arange(grid, dtype=float), np.arange(grid, dtype=float))
    freqs = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))

    def one_axis(pos):
        angles = pos.reshape(-1)[:, None] * freqs[None]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([one_axis(cols), one_axis(rows)], axis=1)[None].astype(np.float32)


def official_state_dict(seed: int, grid: int = RES // PATCH) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def linear(out, fan_in):  # unit-scale activations, so every block matters in the output
        return rng.normal(0, fan_in**-0.5, (out, fan_in)).astype(np.float32)

    def vec(n, mean=0.0):
        return (mean + rng.normal(0, 0.1, n)).astype(np.float32)

    sd = {
        "patch_embed.proj.weight": linear(WIDTH, 3 * PATCH * PATCH).reshape(WIDTH, 3, PATCH, PATCH),
        "patch_embed.proj.bias": vec(WIDTH),
        "pos_embed": official_sincos(WIDTH, grid),
        "norm.weight": vec(WIDTH, 1.0),
        "norm.bias": vec(WIDTH),
    }
    for i in range(DEPTH):
        b = f"blocks.{i}."
        sd.update(
            {
                b + "norm1.weight": vec(WIDTH, 1.0),
                b + "norm1.bias": vec(WIDTH),
                b + "attn.qkv.weight": linear(3 * WIDTH, WIDTH),
                b + "attn.qkv.bias": vec(3 * WIDTH),
                b + "attn.proj.weight": linear(WIDTH, WIDTH),
                b + "attn.proj.bias": vec(WIDTH),
                b + "norm2.weight": vec(WIDTH, 1.0),
                b + "norm2.bias": vec(WIDTH),
                b + "mlp.fc1.weight": linear(HIDDEN, WIDTH),
                b + "mlp.fc1.bias": vec(HIDDEN),
                b + "mlp.fc2.weight": linear(WIDTH, HIDDEN),
                b + "mlp.fc2.bias": vec(WIDTH),
            }
        )
    return sd


def official_checkpoint(prefix: str = "module.") -> dict:
    """What I-JEPA's save_checkpoint writes (DDP-wrapped modules, hence the prefix)."""

    def wrap(sd):
        return {prefix + k: v for k, v in sd.items()}

    return {
        "encoder": wrap(official_state_dict(1)),
        "target_encoder": wrap(official_state_dict(2)),
        "predictor": wrap({"mask_token": np.zeros((1, 1, 384), np.float32)}),
        "epoch": 300,
        "lr": 1e-3,
    }


# ---------------------------------------------------------------------------------------------
# A NumPy forward of the official ViT
# ---------------------------------------------------------------------------------------------


def layer_norm(x, sd, name):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * sd[name + ".weight"] + sd[name + ".bias"]


def linear(x, sd, name):
    return x @ sd[name + ".weight"].T.astype(np.float64) + sd[name + ".bias"]


def reference_forward(sd, images_uint8, pos_embed=None):
    x = (images_uint8 / 255.0 - MEAN) / STD
    b, h, w, c = x.shape
    gh, gw = h // PATCH, w // PATCH
    # Conv2d(stride=kernel=PATCH) as a sum over each patch: out[y, x, d] = Σ w[d, c, i, j] · in.
    patches = x.reshape(b, gh, PATCH, gw, PATCH, c)
    kernel = sd["patch_embed.proj.weight"].astype(np.float64)
    tokens = np.einsum("byixjc,dcij->byxd", patches, kernel) + sd["patch_embed.proj.bias"]
    pos = sd["pos_embed"] if pos_embed is None else pos_embed
    x = tokens.reshape(b, gh * gw, WIDTH) + pos.reshape(gh * gw, WIDTH)
    hd = WIDTH // HEADS
    for i in range(DEPTH):
        p = f"blocks.{i}."
        qkv = linear(layer_norm(x, sd, p + "norm1"), sd, p + "attn.qkv")
        q, k, v = qkv.reshape(b, -1, 3, HEADS, hd).transpose(2, 0, 3, 1, 4)
        logits = q @ k.transpose(0, 1, 3, 2) * hd**-0.5
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        heads = (attn @ v).transpose(0, 2, 1, 3).reshape(b, -1, WIDTH)
        x = x + linear(heads, sd, p + "attn.proj")
        hidden = linear(layer_norm(x, sd, p + "norm2"), sd, p + "mlp.fc1")
        x = x + linear(0.5 * hidden * (1 + erf(hidden / math.sqrt(2))), sd, p + "mlp.fc2")
    return layer_norm(x, sd, "norm")


def random_images(res: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, res, res, 3), dtype=np.uint8)


def leaves_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: np.array_equal(x, y), a, b)))


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_forward_matches_official_vit():
    ckpt = official_checkpoint()
    enc = from_ijepa_torch(ckpt, VARIANT, res=RES)
    assert type(enc) is hub.PretrainedEncoder and enc.step is None
    m = enc.config.model
    assert (m.variant, m.image_size, m.patch_size, m.depth, m.channels) == (
        VARIANT,
        RES,
        PATCH,
        DEPTH,
        3,
    )
    assert tuple(enc.config.data.mean) == tuple(MEAN) and tuple(enc.config.data.std) == tuple(STD)
    images = random_images(RES)
    tokens, pooled = enc(images)
    sd = official_state_dict(2)  # the target encoder, read by default
    want = reference_forward(sd, images)
    np.testing.assert_allclose(np.asarray(tokens), want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(pooled), want.mean(1), atol=1e-4, rtol=1e-4)
    # [0, 1] floats are the same images.
    np.testing.assert_allclose(np.asarray(enc(images / 255.0)[0]), want, atol=1e-4, rtol=1e-4)


def test_weights_choice_and_module_prefix():
    ckpt = official_checkpoint()
    target = from_ijepa_torch(ckpt, VARIANT, res=RES).params
    context = from_ijepa_torch(ckpt, VARIANT, res=RES, weights="context").params
    bare = from_ijepa_torch(official_state_dict(1), VARIANT, res=RES).params
    unprefixed = from_ijepa_torch(official_checkpoint(prefix=""), VARIANT, res=RES).params
    assert leaves_equal(context, bare)  # "context" reads "encoder", prefix stripped
    assert leaves_equal(target, unprefixed)
    fc1 = official_state_dict(2)["blocks.7.mlp.fc1.weight"]
    np.testing.assert_array_equal(target["block_7"]["mlp"]["fc1"]["kernel"], fc1.T)
    with pytest.raises(ValueError, match="weights='ema'"):
        from_ijepa_torch(ckpt, VARIANT, res=RES, weights="ema")
    with pytest.raises(ValueError, match="target_encoder"):
        from_ijepa_torch({"encoder": official_state_dict(1)}, VARIANT, res=RES)


def _missing(sd):
    del sd["blocks.5.attn.proj.bias"]
    return "missing in the I-JEPA checkpoint: blocks.5.attn.proj.bias (192,)"


def _unexpected(sd):
    sd["blocks.0.attn.q_norm.weight"] = np.ones(WIDTH, np.float32)
    return "not in the model: blocks.0.attn.q_norm.weight (192,)"


def _reshaped(sd):
    sd["blocks.2.mlp.fc1.weight"] = sd["blocks.2.mlp.fc1.weight"][:100]
    return (
        "shape (100, 192) in the I-JEPA checkpoint, (768, 192) in the model: "
        "blocks.2.mlp.fc1.weight"
    )


def _extra_block(sd):
    sd.update({k.replace("blocks.11.", "blocks.12."): v for k, v in sd.items() if "s.11." in k})
    return "the checkpoint has depth 13 and width 192"


def _bad_pos_embed(sd):
    sd["pos_embed"] = sd["pos_embed"][:, :3]
    return "shape (1, 3, 192) in the I-JEPA checkpoint, (1, 'n²', 192) in the model: pos_embed"


@pytest.mark.parametrize(
    "corrupt", [_missing, _unexpected, _reshaped, _extra_block, _bad_pos_embed]
)
def test_mismatched_state_dict_names_the_keys(corrupt):
    sd = official_state_dict(0)
    message = corrupt(sd)
    with pytest.raises(ValueError, match=re.escape(message)):
        from_ijepa_torch(sd, VARIANT, res=RES)


def test_wrong_variant_or_patch_size():
    sd = official_state_dict(0)
    with pytest.raises(ValueError, match=r"variant 'S/16' has depth 12 and width 384.*'Ti'"):
        from_ijepa_torch(sd, "S/16", res=RES)
    expected = "shape (192, 3, 16, 16) in the I-JEPA checkpoint, (192, 3, 8, 8) in the model"
    with pytest.raises(ValueError, match=re.escape(expected)):
        from_ijepa_torch(sd, VARIANT, res=RES, patch_size=8)


def test_position_table_must_be_sincos_at_its_own_grid():
    sd = official_state_dict(0)
    sd["pos_embed"] = sd["pos_embed"] + 1e-2
    with pytest.raises(ValueError, match="sin-cos"):
        from_ijepa_torch(sd, VARIANT, res=RES)


def torch_bicubic_reference(n_in: int, n_out: int, a: float = -0.75) -> np.ndarray:
    """[n_out, n_in]: torch's bicubic (align_corners=False) along one axis, restated one output
    and one tap at a time: source s = (i + 0.5) · n_in / n_out - 0.5, taps floor(s) - 1 …
    floor(s) + 2 weighted by Keys' kernel at their distance from s, indices clamped."""

    def kernel(x):
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0

    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        s = (i + 0.5) * n_in / n_out - 0.5
        for k in range(math.floor(s) - 1, math.floor(s) + 3):
            m[i, min(max(k, 0), n_in - 1)] += kernel(s - k)
    return m


def test_resolution_change_resamples_the_position_table():
    sd = official_state_dict(2)
    res, grid = 48, 3  # the checkpoint's grid is 2×2
    enc = from_ijepa_torch(official_checkpoint(), VARIANT, res=res)
    assert isinstance(enc, hub.PretrainedEncoder) and enc.config.model.image_size == res
    m = torch_bicubic_reference(2, grid)
    table = np.einsum("yi,xj,ijd->yxd", m, m, sd["pos_embed"].reshape(2, 2, WIDTH))
    np.testing.assert_allclose(enc.pos_embed, table.reshape(grid * grid, WIDTH), atol=1e-6)
    images = random_images(res, seed=1)
    want = reference_forward(sd, images, pos_embed=table)
    np.testing.assert_allclose(np.asarray(enc(images)[0]), want, atol=1e-4, rtol=1e-4)
    # Same grid: the table comes back unchanged.
    np.testing.assert_allclose(resample_pos_embed(sd["pos_embed"], 2, 2), sd["pos_embed"][0])
    with pytest.raises(ValueError, match="pos_embed has shape"):
        enc(random_images(RES))


def test_bicubic_matches_hand_computed_values():
    """torch's bicubic, worked by hand. Output i reads source s = (i + 0.5) · n_in / n_out - 0.5
    and the samples floor(s) - 1 … floor(s) + 2 (indices clamped to [0, n_in - 1]), weighted by
    Keys' kernel with A = -0.75 at their distance x from s:
      W(x) = 1.25 x³ - 2.25 x² + 1           for x ≤ 1
      W(x) = -0.75 x³ + 3.75 x² - 6 x + 3     for 1 < x < 2
    so W(0.25) = 0.87890625, W(0.75) = 0.26171875, W(1.25) = -0.10546875, W(1.75) = -0.03515625,
    W(0.5) = 0.59375, W(1.5) = -0.09375.

    2 → 4: s = -0.25, 0.25, 0.75, 1.25.
      s = -0.25: samples -2, -1, 0, 1 (→ 0, 0, 0, 1) at x = 1.75, 0.75, 0.25, 1.25:
        out[0] = (-0.03515625 + 0.26171875 + 0.87890625) v0 - 0.10546875 v1
               = 1.10546875 v0 - 0.10546875 v1
      s = 0.25: samples -1, 0, 1, 2 (→ 0, 0, 1, 1) at x = 1.25, 0.25, 0.75, 1.75:
        out[1] = (-0.10546875 + 0.87890625) v0 + (0.26171875 - 0.03515625) v1
               = 0.7734375 v0 + 0.2265625 v1
      out[2], out[3] mirror these. v = (0, 1) → (-0.10546875, 0.2265625, 0.7734375, 1.10546875).
    4 → 2: s = 0.5, 2.5, each at x = 1.5, 0.5, 0.5, 1.5 from its four samples:
      out[0] = (-0.09375 + 0.59375) v0 + 0.59375 v1 - 0.09375 v2    (samples -1, 0, 1, 2)
      out[1] = -0.09375 v1 + 0.59375 v2 + (0.59375 - 0.09375) v3    (samples 1, 2, 3, 4)
    """
    up = [
        [1.10546875, -0.10546875],
        [0.7734375, 0.2265625],
        [0.2265625, 0.7734375],
        [-0.10546875, 1.10546875],
    ]
    down = [[0.5, 0.59375, -0.09375, 0.0], [0.0, -0.09375, 0.59375, 0.5]]
    np.testing.assert_allclose(torch_bicubic_matrix(2, 4), up, rtol=0, atol=1e-12)
    np.testing.assert_allclose(torch_bicubic_matrix(4, 2), down, rtol=0, atol=1e-12)
    # 2-D, raster order, one axis after the other: a 2×2 table whose channels are the column
    # index, the row index and their product resamples to v[x], v[y] and v[y]·v[x].
    v = np.array([-0.10546875, 0.2265625, 0.7734375, 1.10546875])
    rows, cols = np.meshgrid([0.0, 1.0], [0.0, 1.0], indexing="ij")
    table = np.stack([cols, rows, rows * cols], -1).reshape(1, 4, 3).astype(np.float32)
    got = resample_pos_embed(table, 2, 4).reshape(4, 4, 3)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[..., 0], np.broadcast_to(v, (4, 4)), rtol=0, atol=1e-7)
    np.testing.assert_allclose(got[..., 1], np.broadcast_to(v[:, None], (4, 4)), rtol=0, atol=1e-7)
    np.testing.assert_allclose(got[..., 2], np.outer(v, v), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "grid,new_grid", [(2, 3), (2, 4), (4, 2), (14, 16), (16, 14), (16, 20), (16, 12), (7, 5)]
)
def test_resample_matches_torch_interpolate(grid, new_grid):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 * grid + new_grid)
    # The sin-cos table a checkpoint holds, and a generic one with values in the same range.
    generic = rng.uniform(-1, 1, (1, grid * grid, 32)).astype(np.float32)
    for table in [official_sincos(WIDTH, grid), generic]:
        width = table.shape[-1]
        got = resample_pos_embed(table, grid, new_grid)
        nchw = torch.from_numpy(table).reshape(1, grid, grid, width).permute(0, 3, 1, 2)
        # By output size, and by the scale factor I-JEPA's interpolate_pos_encoding computes
        # (without its class-token offset), whose inverse torch then maps coordinates with.
        for how in [
            {"size": (new_grid, new_grid)},
            {"scale_factor": math.sqrt(new_grid**2 / grid**2)},
        ]:
            want = torch.nn.functional.interpolate(nchw, mode="bicubic", align_corners=False, **how)
            want = want.permute(0, 2, 3, 1).reshape(new_grid * new_grid, width).numpy()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=str(how))


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=re.escape("pip install 'jepa[torch]'")):
        from_ijepa_torch("IN1K-vit.h.14-300e.pth.tar", VARIANT, res=RES)


def test_torch_checkpoint_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    ckpt = official_checkpoint()
    as_torch = {
        k: {n: torch.from_numpy(a) for n, a in v.items()} if isinstance(v, dict) else v
        for k, v in ckpt.items()
    }
    path = tmp_path / "IN1K-vit.ti.16.pth.tar"
    torch.save(as_torch, path)
    loaded = from_ijepa_torch(str(path), VARIANT, res=RES, weights="context")
    direct = from_ijepa_torch(ckpt, VARIANT, res=RES, weights="context")
    assert leaves_equal(loaded.params, direct.params)
    # Tensors in an already-loaded dict work too.
    tensors = from_ijepa_torch(as_torch, VARIANT, res=RES, weights="context")
    assert leaves_equal(tensors.params, direct.params)

    # bfloat16 weights (NumPy has no bfloat16) read as their values in float32. The fixed
    # sin-cos table stays float32: rounded, it would fail the importer's sin-cos check.
    def bf16(name, t):
        return t if name.endswith("pos_embed") else t.to(torch.bfloat16)

    half = {
        k: {n: bf16(n, t) for n, t in v.items()} if isinstance(v, dict) else v
        for k, v in as_torch.items()
    }
    torch.save(half, tmp_path / "half.pth.tar")
    rounded = {
        k: {n: t.float().numpy() for n, t in v.items()} if isinstance(v, dict) else v
        for k, v in half.items()
    }
    loaded = from_ijepa_torch(str(tmp_path / "half.pth.tar"), VARIANT, res=RES, weights="context")
    assert leaves_equal(
        loaded.params, from_ijepa_torch(rounded, VARIANT, res=RES, weights="context").params
    )


def test_the_hub_does_not_import_the_importer():
    """The importer builds hub's PretrainedEncoder, so it sits above jepa.hub: the hub (and
    load_encoder) never loads it, and the two do not import each other (``lint-imports``
    checks there is no cycle)."""
    code = "import sys, jepa.hub; assert 'jepa.ijepa_import' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
