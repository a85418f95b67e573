"""Time the official PyTorch I-JEPA train step on this machine: the race in docs/performance.md.

Imports the reference implementation from a checkout of facebookresearch/ijepa (its
``init_model``, ``init_opt``, ``MaskCollator``, ``apply_masks``, ``repeat_interleave_batch``)
and runs the body of its ``src/train.py`` step on synthetic images: target encoder forward +
LayerNorm + gather, context encoder + predictor, smooth-L1, backward, AdamW step, EMA. Data
loading is excluded as in ``scripts/benchmark.py``; masks are sampled on the host each step by
the reference collator (its batch-minimum trimming included) and timed apart.

    python -m venv /tmp/torch && /tmp/torch/bin/pip install torch==2.13.0 numpy pyyaml
    /tmp/torch/bin/python scripts/baseline_ijepa_torch.py --ijepa /path/to/ijepa --steps 5

Prints one JSON line (median / min step seconds, images/s, token counts), like the benchmark.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ijepa", required=True, help="checkout of facebookresearch/ijepa")
    parser.add_argument("--model", default="vit_small")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pred_depth", type=int, default=6)
    parser.add_argument("--pred_width", type=int, default=384)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="forward and loss under bfloat16 autocast, as the reference's use_bfloat16 (its "
        "torch.cuda.amp.autocast is a no-op on CPU, so this uses torch.autocast('cpu'))",
    )
    args = parser.parse_args()

    sys.path.insert(0, args.ijepa)
    import torch
    import torch.nn.functional as F
    from src.helper import init_model, init_opt
    from src.masks.multiblock import MaskCollator
    from src.masks.utils import apply_masks
    from src.utils.tensors import repeat_interleave_batch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    encoder, predictor = init_model(
        device=device,
        patch_size=args.patch,
        crop_size=args.res,
        pred_depth=args.pred_depth,
        pred_emb_dim=args.pred_width,
        model_name=args.model,
    )
    target_encoder = copy.deepcopy(encoder)  # as the reference's train.py
    for p in target_encoder.parameters():
        p.requires_grad = False
    # The paper's ImageNet recipe (configs/in1k_vith14_ep300.yaml), as in our ijepa_in1k config.
    collator = MaskCollator(
        input_size=args.res,
        patch_size=args.patch,
        pred_mask_scale=(0.15, 0.2),
        enc_mask_scale=(0.85, 1.0),
        aspect_ratio=(0.75, 1.5),
        nenc=1,
        npred=4,
        allow_overlap=False,
        min_keep=10,
    )
    total = args.warmup + args.steps
    optimizer, _, scheduler, wd_scheduler = init_opt(
        encoder=encoder,
        predictor=predictor,
        wd=0.04,
        final_wd=0.4,
        start_lr=2e-4,
        ref_lr=1e-3,
        final_lr=1e-6,
        iterations_per_epoch=total,
        warmup=1,
        num_epochs=10,
        ipe_scale=1.0,
        use_bfloat16=False,
    )
    images = torch.randn(args.batch, 3, args.res, args.res)
    samples = [(images[i], 0) for i in range(args.batch)]

    def train_step(imgs, masks_enc, masks_pred, m):
        scheduler.step()
        wd_scheduler.step()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            h = target_encoder(imgs)
            h = F.layer_norm(h, (h.size(-1),))
            h = apply_masks(h, masks_pred)
            h = repeat_interleave_batch(h, len(imgs), repeat=len(masks_enc))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            z = predictor(encoder(imgs, masks_enc), masks_enc, masks_pred)
            loss = F.smooth_l1_loss(z, h)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            for q, k in zip(encoder.parameters(), target_encoder.parameters(), strict=True):
                k.data.mul_(m).add_((1.0 - m) * q.detach().data)
        return float(loss)

    step_times, mask_times, tokens = [], [], None
    for step in range(total):
        t0 = time.perf_counter()
        _, masks_enc, masks_pred = collator(samples)
        t1 = time.perf_counter()
        train_step(images, masks_enc, masks_pred, 0.996 + 0.004 * step / total)
        t2 = time.perf_counter()
        tokens = (masks_enc[0].shape[1], masks_pred[0].shape[1])
        print(f"step {step}: {t2 - t1:.3f} s (masks {1e3 * (t1 - t0):.1f} ms)", file=sys.stderr)
        if step >= args.warmup:
            step_times.append(t2 - t1)
            mask_times.append(t1 - t0)
    median = statistics.median(step_times)
    print(
        json.dumps(
            {
                "implementation": "facebookresearch/ijepa (PyTorch)",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "model": args.model,
                "precision": "bfloat16 autocast" if args.bf16 else "float32",
                "batch": args.batch,
                "step_seconds_median": round(median, 4),
                "step_seconds_min": round(min(step_times), 4),
                "images_per_second": round(args.batch / median, 3),
                "mask_seconds_median": round(statistics.median(mask_times), 5),
                "context_tokens_last_step": tokens[0],
                "target_tokens_last_step": tokens[1],
                "steps": args.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
