"""Measure the train step: time, throughput, FLOPs and utilization. Prints one final JSON line.

  python scripts/benchmark.py --config experiments/ijepa_in1k.py:variant=S/16,res=224 \
      --batch 16 --steps 5 [--config.model.dtype=float32] [--memory] [--profile_dir DIR] \
      [--config.model.remat=full] [--config.optim.grad_accum_steps=4]
  python scripts/benchmark.py --suite=device   # I-JEPA ViT-B/16, L/16, H/14 at 224 px
  python scripts/benchmark.py --suite=tiny     # the same suite at toy size (CPU, CI)
  python scripts/benchmark.py --input_pipeline --config experiments/ijepa_in1k.py:variant=H/14 \
      [--workers=0,1,2]                        # images/s the host's input pipeline feeds

On an accelerator ``mfu`` is the step's FLOPs per second over the device's nominal dense bf16
peak (``nominal_peak_flops_per_s``, named by ``device_kind``); everywhere ``utilization`` is
relative to a dense matmul measured in this process.

Images are synthetic, so data loading is excluded; masks are sampled on the host each step as
in training, and their cost is reported separately (``mask_s_median``). FLOPs come from XLA's
cost analysis of the compiled step (of the step without micro-batches when
``optim.grad_accum_steps`` > 1: XLA counts a loop body once); the peak is a dense matmul of the
same dtype measured in this process on the same devices, so ``utilization`` is relative to what
this machine can do.
With ``--profile_dir`` one more step is traced with ``jax.profiler`` (open it in Perfetto or
TensorBoard) and the ops with the most self time are printed, named by their JAX source.
With ``--memory`` the JSON has ``memory``: per-device bytes of the step (``jepa/memory.py``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jepa import hardware, masking, memory, optim, sharding, validation
from jepa import state as state_lib
from jepa import step as step_lib
from jepa.hardware import nominal_peak
from jepa.methods import ijepa
from jepa.models import layers

config_flags.DEFINE_config_file("config", None, "experiments/NAME.py[:ARGS]", lock_config=True)
flags.DEFINE_integer("steps", 10, "timed steps (after one compile step and one warm-up step)")
flags.DEFINE_integer("batch", 0, "global batch size (0: the config's)")
flags.DEFINE_integer("per_device_batch", 0, "images per device (0: --batch)")
flags.DEFINE_bool(
    "memory",
    False,
    "report per-device bytes: params, target params, optimizer state (from their shardings), "
    "other arguments, temporaries (activations), outputs (from XLA's memory analysis)",
)
flags.DEFINE_string("profile_dir", "", "also trace one step with jax.profiler into this folder")
flags.DEFINE_enum(
    "suite",
    "",
    ["", "device", "tiny"],
    "device: the I-JEPA step of ViT-B/16, L/16 and H/14 at 224 px (bf16, the paper's masks and "
    "predictor, 128 images per device, halved until it fits), each in its own process; tiny: the "
    "same at toy size",
)
flags.DEFINE_bool(
    "input_pipeline",
    False,
    "measure the training input pipeline instead of the step: JPEG-encoded array_record records "
    "of ImageNet size decoded and augmented as --config says (I-JEPA's crops and flips), images/s "
    "for each --workers, beside the rate the step needs",
)
flags.DEFINE_list("workers", ["0", "1", "2"], "--input_pipeline: grain worker processes to try")
flags.DEFINE_integer("images", 512, "--input_pipeline: synthetic JPEGs to write")
FLAGS = flags.FLAGS

# (experiment, images per device): the paper's 2048 images on 16 GPUs for ViT-H/14.
SUITES = {
    "device": [
        ("experiments/ijepa_in1k.py:variant=B/16,res=224", 128),
        ("experiments/ijepa_in1k.py:variant=L/16,res=224", 128),
        ("experiments/ijepa_in1k.py:variant=H/14,res=224", 128),
    ],
    "tiny": [
        ("experiments/ijepa_in1k.py:variant=Ti/8,res=64", 2),
        ("experiments/ijepa_in1k.py:variant=Ti/16,res=96", 2),
    ],
}


def peak_memory_bytes(compiled) -> int | None:
    """Bytes the device allocator held at most in this process (GPU/TPU), else XLA's estimate
    for the step: arguments + temporaries + outputs not aliased to arguments."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    m = memory.compiled_memory(compiled)
    if not m:
        return None
    return m["argument_bytes"] + m["temp_bytes"] + m["output_bytes"] - m["alias_bytes"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak_matmul_probe(dtype, mesh):
    """A function ``reps → best dense-matmul FLOP/s`` (per process, on all devices, in the
    step's compute dtype). The benchmark samples it before the steps and after each one and
    keeps the best: on a shared VM a single burst can land in a slow spell and report a peak
    below what the step itself achieved (a utilization above 1)."""
    n = 2048 if jax.default_backend() == "cpu" else 8192
    rows = n * mesh.size
    spec = sharding.batch_sharding(mesh, 2)
    a = jax.device_put(jnp.ones((rows, n), dtype), spec)
    b = jax.device_put(jnp.ones((n, n), dtype), sharding.replicated(mesh))
    # Through the models' einsum: in bf16 that is bf16 operands with float32 accumulation, the
    # fast path the step's dots take (a plain bf16 ``x @ y`` runs at the float32 rate on CPU).
    matmul = jax.jit(lambda x, y: layers.einsum("mk,kn->mn", x, y), out_shardings=spec)
    matmul(a, b).block_until_ready()

    def best(reps: int) -> float:
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            matmul(a, b).block_until_ready()
            times.append(time.perf_counter() - t)
        return 2.0 * rows * n * n / min(times)

    return best


def cost_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", 0.0)) if cost else 0.0


def one_batch_flops(config, tx, mesh, shardings, state, batch) -> float:
    """FLOPs of the step without micro-batches, from its lowered HLO (no compile). XLA's cost
    analysis counts a loop body once, so a step with ``optim.grad_accum_steps=k`` would show
    about 1/k of the FLOPs it does; the arithmetic is the same as one big batch's."""
    plain = ml_collections.ConfigDict(config.to_dict())
    plain.optim.grad_accum_steps = 1
    train_step = step_lib.jit_train_step(plain, tx, mesh, shardings)
    with jax.set_mesh(mesh):
        return cost_flops(train_step.lower(state, batch))


def top_ops(trace_dir: str, compiled_text: str, limit: int = 15) -> list[dict]:
    """Self time per HLO op of the traced step, grouped by the op's source (JAX op_name)."""
    import collections
    import glob
    import gzip
    import re

    path = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)[0]
    with gzip.open(path) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    source = dict(re.findall(r"%?([\w.\-]+) = [^\n]*?op_name=\"([^\"]*)\"", compiled_text))
    total: collections.Counter = collections.Counter()
    for e in events:
        name = e["name"]
        if name.startswith(("Thunk", "$", "Slinky", "end:", "Pjit", "Common")):
            continue
        op = re.sub(r"block_\d+", "block_N", source.get(name, name))
        total[(re.sub(r"\.\d+$", "", name), op)] += e["dur"]
    return [
        {"ms": round(us / 1e3, 1), "kind": kind, "op": op}
        for (kind, op), us in total.most_common(limit)
    ]


def run_suite(name: str, steps: int) -> list[dict]:
    """Each config of ``SUITES[name]`` in its own process, at its per-device batch, halved
    while the device runs out of memory; a line per config on stderr as it finishes. This
    process never opens the devices: a TPU admits one process, and on a GPU each config gets a
    clean allocator, so one config's peak memory and fragmentation do not leak into the next."""
    import subprocess

    results = []
    for experiment, per_device in SUITES[name]:
        while True:
            here = os.path.abspath(__file__)
            config = os.path.join(os.path.dirname(os.path.dirname(here)), experiment)
            cmd = [sys.executable, here, "--config", config]
            cmd += ["--per_device_batch", str(per_device), "--steps", str(steps)]
            log(f"$ benchmark.py --config {experiment} --per_device_batch {per_device}")
            run = subprocess.run(cmd, capture_output=True, text=True)
            out_of_memory = "RESOURCE_EXHAUSTED" in run.stderr or "out of memory" in run.stderr
            if run.returncode == 0 or not out_of_memory or per_device == 1:
                break
            log(f"out of memory at {per_device} images per device; halving")
            per_device //= 2
        if run.returncode != 0:
            tail = run.stderr.strip().splitlines()[-5:]
            failed = {"experiment": experiment, "per_device_batch": per_device, "error": tail}
            results.append(failed)
            log("\n".join(tail))
            continue
        result = {"experiment": experiment, **json.loads(run.stdout.strip().splitlines()[-1])}
        results.append(result)
        mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a"
        mem = (result["peak_memory_bytes"] or 0) / 2**30
        log(
            f"{result['config']:>6} batch {result['batch']}: {result['step_s_median']:.3f} s/step, "
            f"{result['images_per_s']:.1f} img/s, MFU {mfu}, peak memory {mem:.1f} GiB, "
            f"compiles {result['compiles']}"
        )
    return results


def synthetic_photos(n: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, 375, 500, 3], ImageNet's typical size: smooth colour fields plus fine noise,
    so that JPEG files come out at a photograph's size (tens of KB) and decode like one."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 12, 16, 3)).astype(np.float32)
    smooth = coarse.repeat(32, axis=1).repeat(32, axis=2)[:, :375, :500]
    grain = rng.normal(0, 12, smooth.shape).astype(np.float32)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def step_flops_per_image(config) -> float:
    """FLOPs of one image's train step from the lowered program (abstract state: nothing is
    allocated or compiled, so a ViT-H/14 step is counted on any host)."""
    mesh = sharding.make_mesh(config)
    tx = optim.make_optimizer(config)
    abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
    spec = ijepa.mask_spec(config)
    m, b = config.model, config.batch_size
    masks = masking.masks_for_step(config.seed, 0, b, spec)
    batch = {
        "image": jax.ShapeDtypeStruct((b, m.image_size, m.image_size, m.channels), jnp.float32),
        "context": jax.ShapeDtypeStruct(masks.context.shape, masks.context.dtype),
        "targets": jax.ShapeDtypeStruct(masks.targets.shape, masks.targets.dtype),
    }
    train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
    with jax.set_mesh(mesh):
        return cost_flops(train_step.lower(abstract, batch)) / b


def run_input_pipeline(config, workers: list[int], batches: int = 8) -> dict:
    """Images/s of ``jepa.data.pipeline.make_train_iterator`` on JPEG records of ImageNet size
    with ``config``'s augmentations, per worker count; and the images/s one device's step needs
    at 40 % and 55 % MFU of an H200 (989 TFLOP/s bf16), from the step's FLOPs per image."""
    import tempfile

    from jepa.data import folder, pipeline
    from jepa.methods import data_config

    data_dir = tempfile.mkdtemp(prefix="jepa-input-")
    t = time.perf_counter()
    folder.write_arrays(
        synthetic_photos(FLAGS.images),
        name="synthetic_photos",
        data_dir=data_dir,
        encoding="jpeg",
    )
    log(f"wrote {FLAGS.images} JPEGs of 500 x 375 in {time.perf_counter() - t:.0f}s")
    config.unlock()
    config.data.dataset, config.data.data_dir = "synthetic_photos", data_dir
    config.lock()
    batch = 64
    rates = []
    for w in workers:
        config.unlock()
        config.data.worker_count = w
        config.lock()
        it = pipeline.make_train_iterator(data_config(config), batch, seed=0)
        next(it)  # worker start-up and the first reads
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        rate = batches * batch / (time.perf_counter() - t)
        per_core = rate / max(w, 1)  # 0 workers: decoding threads of this one process
        rates.append({"workers": w, "images_per_s": rate, "images_per_s_per_core": per_core})
        log(f"{w} workers: {rate:.0f} images/s ({rate / max(w, 1):.0f} per worker)")
        del it
    per_image = step_flops_per_image(config)
    need = {f"mfu_{p}": p / 100 * 989e12 / per_image for p in (40, 55)}
    log(
        f"the step: {per_image / 1e9:.0f} GFLOP per image; one H200 at 40% MFU needs "
        f"{need['mfu_40']:.0f} images/s, at 55% {need['mfu_55']:.0f}"
    )
    return {
        "input_pipeline": config.model.variant,
        "image_size": config.model.image_size,
        "crop_scale": list(config.data.crop_scale),
        "record": "jpeg 500x375x3",
        "batch": batch,
        "cpu_cores": os.cpu_count(),
        "rates": rates,
        "step_flops_per_image": per_image,
        "h200_needs_images_per_s": need,
    }


def main(_):
    from jepa import console

    console.configure(None)  # the libraries' INFO lines would bury the measurements
    if FLAGS.input_pipeline:
        if FLAGS.config is None:
            raise SystemExit(
                "--input_pipeline needs --config, e.g. experiments/ijepa_in1k.py:variant=H/14"
            )
        result = run_input_pipeline(FLAGS.config, [int(w) for w in FLAGS.workers])
        print(json.dumps(result), flush=True)
        return
    if FLAGS.suite:
        results = run_suite(FLAGS.suite, FLAGS.steps)
        ran = [r for r in results if "error" not in r]
        summary = {"suite": FLAGS.suite, "results": results}
        for key in ("backend", "device_kind", "devices", "nominal_peak_flops_per_s"):
            summary[key] = ran[0][key] if ran else None
        print(json.dumps(summary), flush=True)
        if len(ran) < len(results):
            raise SystemExit(1)
        return
    config = FLAGS.config
    batch = FLAGS.per_device_batch * jax.device_count() if FLAGS.per_device_batch else FLAGS.batch
    if batch:
        config.unlock()
        config.batch_size = batch
        config.lock()
    if not config.total_steps:
        config.unlock()
        config.total_steps = 100_000
        config.lock()
    # The JSON names the dtype that ran and, for model.dtype="auto", why it was chosen.
    dtype_choice = "set by the config"
    if config.model.dtype == "auto":
        dtype_choice = hardware.auto_compute_dtype(jax.default_backend())[1]
    config = hardware.resolve_auto_dtype(config)
    validation.validate(config, jax.device_count())
    mesh = sharding.make_mesh(config)
    tx = optim.make_optimizer(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
    spec = ijepa.mask_spec(config)
    m = config.model
    b = config.batch_size
    rng = np.random.default_rng(0)
    images = rng.standard_normal((b, m.image_size, m.image_size, m.channels), np.float32)

    def make_batch(step):
        t = time.perf_counter()
        masks = masking.masks_for_step(config.seed, step, b, spec)
        mask_s = time.perf_counter() - t
        local = {"image": images, "context": masks.context, "targets": masks.targets}
        return sharding.global_batch(local, mesh), mask_s

    batch, _ = make_batch(0)
    t = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = train_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t
    flops = cost_flops(compiled)
    if config.optim.grad_accum_steps > 1:
        flops = one_batch_flops(config, tx, mesh, shardings, state, batch)
    log(f"compiled in {compile_s:.1f}s; {flops / 1e9:.2f} GFLOP per step")
    # Before the first step: it donates (deletes) these arrays.
    mem = memory.step_memory(compiled, state, shardings) if FLAGS.memory else None

    dtype = jnp.bfloat16 if m.dtype == "bfloat16" else jnp.float32
    peak_probe = peak_matmul_probe(dtype, mesh)
    peak = peak_probe(5)
    step_times, mask_times = [], []
    with jax.set_mesh(mesh):
        for i in range(FLAGS.steps + 1):  # the first call after compile is a warm-up
            batch, mask_s = make_batch(i + 1)
            t = time.perf_counter()
            state, metrics = train_step(state, batch)
            jax.block_until_ready(metrics["loss"])
            if i:
                step_times.append(time.perf_counter() - t)
                mask_times.append(mask_s)
                peak = max(peak, peak_probe(2))
                log(f"step {i}: {step_times[-1]:.3f}s loss {float(metrics['loss']):.4f}")

    profile = None
    if FLAGS.profile_dir:
        with jax.set_mesh(mesh):
            batch, _ = make_batch(FLAGS.steps + 2)
            jax.profiler.start_trace(FLAGS.profile_dir, create_perfetto_trace=True)
            state, metrics = train_step(state, batch)
            jax.block_until_ready(metrics["loss"])
            jax.profiler.stop_trace()
        hlo = compiled.as_text()
        with open(os.path.join(FLAGS.profile_dir, "compiled_step.hlo.txt"), "w") as f:
            f.write(hlo)  # to join trace events with their JAX source beyond the top ops
        profile = top_ops(FLAGS.profile_dir, hlo)
        for row in profile:
            log(f"{row['ms']:9.1f} ms  {row['kind']:28s} {row['op'][-100:]}")

    median = statistics.median(step_times)
    device_kind = jax.devices()[0].device_kind
    nominal = nominal_peak(device_kind) if jax.default_backend() != "cpu" else None
    result = {
        "config": m.variant,
        "image_size": m.image_size,
        "batch": b,
        "dtype": m.dtype,
        "remat": m.remat,
        "grad_accum_steps": config.optim.grad_accum_steps,
        "steps": len(step_times),
        "step_s_median": median,
        "step_s_min": min(step_times),
        "images_per_s": b / median,
        "mask_s_median": statistics.median(mask_times),
        "compile_s": compile_s,
        "flops_per_step": flops,
        "achieved_flops_per_s": flops / median,
        "peak_matmul_flops_per_s": peak,
        "utilization": flops / median / peak,
        "nominal_peak_flops_per_s": nominal,
        "mfu": flops / median / (nominal * jax.device_count()) if nominal else None,
        "peak_memory_bytes": peak_memory_bytes(compiled),
        "compiles": train_step._cache_size(),
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "device_kind": device_kind,
        "dtype_choice": dtype_choice,
        "cpu": hardware.cpu_info() if jax.default_backend() == "cpu" else None,
        "mesh": dict(zip(mesh.axis_names, mesh.devices.shape, strict=True)),
        "context_tokens": config.method.mask.context_tokens,
        "target_tokens": config.method.mask.target_tokens,
    }
    if mem is not None:
        result["memory"] = mem
    if profile is not None:
        result["top_ops"] = profile
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
