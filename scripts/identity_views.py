"""Level 1's digit identity, outside the hierarchy: how fast a frame encoder learns digit shape
under frames-as-views (the ``hierarchy.level1.views_*`` term alone) or under labels (the
supervised ceiling), with the patch or the conv stem, watched by the converged identity probe
of ``jepa-eval --level 1`` (frames 0, 4, … of the 2,000 train / 500 test sequences).

It reads the npz exports of ``scripts/array_runs.py`` (so it runs where there is no grain or
TFDS, e.g. a rented GPU) and prints one JSON line per probe:

  python scripts/array_runs.py export stochastic_moving_mnist/1 runs/smm1_train.npz
  python scripts/array_runs.py export stochastic_moving_mnist/1 runs/smm1_test.npz test
  python scripts/identity_views.py --mode views --stem conv --width 256 --views 8 --seqs 32 \\
      --rotate 25 --scale 0.2 --dilate 0.4 --steps 4000 --every 500

The encoder is the hierarchy's level 1 (ViT depth 3, 4 heads, 8-px cells of a 64-px frame);
the views term, warps, projector and SIGReg are the package's own (``jepa/frame_views.py``,
``model.projector``), so what this measures is what the hierarchy's term does without the
next-frame terms beside it. docs/results/hjepa.md has the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("views", "supervised"), default="views")
    p.add_argument("--stem", choices=("patch", "conv"), default="conv")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--blur", type=float, default=0.0, help="patch stem's model.patch_blur")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seqs", type=int, default=64, help="sequences per step")
    p.add_argument("--views", type=int, default=4, help="frames per sequence per step")
    p.add_argument("--rotate", type=float, default=0.0, help="± degrees")
    p.add_argument("--scale", type=float, default=0.0, help="± fraction")
    p.add_argument("--dilate", type=float, default=0.0, help="probability of thicker strokes")
    p.add_argument("--sigreg", type=float, default=0.05, help="LeJEPA's λ")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=500, help="probe every N steps")
    p.add_argument("--budget", type=float, default=1e9, help="stop after this many seconds")
    p.add_argument("--data", default="runs/smm1", help="prefix of the _train/_test npz")
    p.add_argument("--out", default="", help="JSON file rewritten after every probe")
    args = p.parse_args()

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from jepa import config as config_lib
    from jepa import frame_views
    from jepa.data.normalization import normalize_frames
    from jepa.evaluate import levels
    from jepa.models.projector import Projector
    from jepa.models.vit import VisionTransformer

    encoder = VisionTransformer(
        image_size=(64, 64),
        patch_size=8,
        width=args.width,
        depth=args.depth,
        num_heads=4,
        patch_embed_init="fan_in",
        patch_blur=args.blur,
        stem=args.stem,
    )
    projector = Projector(512, 2, 64)
    train, test = np.load(args.data + "_train.npz"), np.load(args.data + "_test.npz")
    frames, digits = train["frames"], train["digits"][:, 0]
    test_frames, test_digits = test["frames"], test["digits"][:, 0]

    def normalize(u8):  # grayscale: the framework's default 0.5 / 0.5
        return normalize_frames(u8, None, None)

    key = jax.random.PRNGKey(0)
    params = {
        "encoder": nn.unbox(encoder.init(key, jnp.zeros((1, 64, 64, 1)))["params"]),
        "projector": nn.unbox(projector.init(key, jnp.zeros((1, args.width)))["params"]),
        "head": {"w": jnp.zeros((args.width, 10)), "b": jnp.zeros(10)},
    }
    schedule = optax.warmup_cosine_decay_schedule(
        1e-4, args.lr, min(300, args.steps // 10), args.steps, 1e-6
    )
    tx = optax.adamw(schedule, weight_decay=0.05)
    opt_state = tx.init(params)

    def pooled(encoder_params, x):
        return encoder.apply({"params": encoder_params}, x)[0].astype(jnp.float32).mean(1)

    def loss_fn(params, x, y, key):
        b, v = x.shape[:2]
        flat = frame_views.augment(
            x.reshape(b * v, 64, 64, 1), key, args.rotate, args.scale, args.dilate
        )
        h = pooled(params["encoder"], flat)
        if args.mode == "supervised":
            logits = h @ params["head"]["w"] + params["head"]["b"]
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.repeat(y, v))
            return ce.mean(), (ce.mean(), 0.0)
        z = projector.apply({"params": params["projector"]}, h).reshape(b, v, -1)
        inv, sig = frame_views.invariance_and_sigreg(z, jax.random.fold_in(key, 1))
        return (1 - args.sigreg) * inv + args.sigreg * sig, (inv, sig)

    @jax.jit
    def step(params, opt_state, x, y, key):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, aux

    features = jax.jit(pooled)

    def identity(encoder_params) -> float:
        """``jepa-eval --level 1``'s probe (``levels.identity_probe``) on frames 0, 4, …"""

        def embed(f):
            flat = f[:, ::4].reshape(-1, 64, 64, 1)
            out = [
                np.asarray(features(encoder_params, jnp.asarray(normalize(flat[i : i + 500]))))
                for i in range(0, len(flat), 500)
            ]
            return np.concatenate(out).reshape(len(f), -1, args.width)

        result = levels.identity_probe(
            config_lib.base_config(), embed(frames), digits, embed(test_frames), test_digits, 1
        )
        return float(result["top1"])

    log, t0 = [], time.time()

    def record(**entry):
        log.append(entry)
        print(json.dumps(entry), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "log": log}, f)

    record(step=0, identity=identity(params["encoder"]), seconds=round(time.time() - t0))
    rng = np.random.default_rng(0)
    for s in range(1, args.steps + 1):
        idx = rng.integers(0, len(frames), args.seqs)
        which = np.stack([rng.choice(frames.shape[1], args.views, replace=False) for _ in idx])
        x = jnp.asarray(normalize(frames[idx[:, None], which]))
        params, opt_state, loss, (a, b) = step(
            params, opt_state, x, jnp.asarray(digits[idx]), jax.random.PRNGKey(s)
        )
        if not np.isfinite(float(loss)):
            record(step=s, error="non-finite loss")
            break
        last = s == args.steps or time.time() - t0 > args.budget
        if s % args.every == 0 or last:
            record(
                step=s,
                loss=float(loss),
                invariance_or_ce=float(a),
                sigreg=float(b),
                identity=identity(params["encoder"]),
                seconds=round(time.time() - t0),
            )
        if last:
            break


if __name__ == "__main__":
    main()
