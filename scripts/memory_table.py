"""Per-device memory of the train step under FSDP, over 1, 2, 4, 8 devices. Compiles, never runs.

  python scripts/memory_table.py --config experiments/ijepa_in1k.py:variant=L/16 --batch 8

Mesh (1, n, 1) over the first n devices; on CPU the devices are simulated (this script asks
XLA for 8 host devices unless ``XLA_FLAGS`` already sets a count). Parameter and optimizer
bytes are exact, from the state's shardings (each leaf's shard shape × item size; nothing is
allocated); the step is then lowered and compiled (``--nocompile`` skips it) and XLA's memory
analysis gives the temporaries (activations and scratch) and the argument bytes, which must
equal the state's bytes plus one device's share of the batch. Prints a markdown table, what
FSDP leaves unsharded, and one final JSON line.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jepa import masking, memory, optim, sharding, validation  # noqa: E402
from jepa import state as state_lib  # noqa: E402
from jepa import step as step_lib  # noqa: E402
from jepa.methods import ijepa  # noqa: E402

config_flags.DEFINE_config_file("config", None, "experiments/NAME.py[:ARGS]", lock_config=True)
flags.DEFINE_integer("batch", 8, "global batch size per step (divisible by every device count)")
flags.DEFINE_string("devices", "1,2,4,8", "device counts n; the mesh is (data=1, fsdp=n, tensor=1)")
flags.DEFINE_bool("compile", True, "compile the step for XLA's memory analysis (slow for ViT-L)")
FLAGS = flags.FLAGS

MIB = 2**20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def abstract_batch(config) -> dict:
    """Shapes and dtypes of one masked-objective batch (images and the sampled masks)."""
    if config.objective != "masked":
        raise ValueError(f"objective={config.objective!r}: this table covers 'masked' (I-JEPA)")
    m, b = config.model, config.batch_size
    masks = masking.masks_for_step(config.seed, 0, b, ijepa.mask_spec(config))
    return {
        "image": jax.ShapeDtypeStruct((b, m.image_size, m.image_size, m.channels), "float32"),
        "context": jax.ShapeDtypeStruct(masks.context.shape, masks.context.dtype),
        "targets": jax.ShapeDtypeStruct(masks.targets.shape, masks.targets.dtype),
    }


def measure(base, n: int, compile_step: bool) -> dict:
    """One row: per-device bytes of the state on a (1, n, 1) mesh, and of the compiled step."""
    config = ml_collections.ConfigDict(base.to_dict())
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, n, 1
    validation.validate(config, n)
    mesh = sharding.make_mesh(config, jax.devices()[:n])
    tx = optim.make_optimizer(config)
    abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
    parts = memory.state_bytes(abstract, shardings)
    row = {"devices": n, "mesh": [1, n, 1], **{f"{k}_bytes": v for k, v in parts.items()}}
    row["unsharded"] = memory.unsharded_leaves(abstract.params, shardings.params)
    if compile_step:
        batch = abstract_batch(config)
        t = time.perf_counter()
        with jax.set_mesh(mesh):
            train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
            compiled = train_step.lower(abstract, batch).compile()
        row["compile_s"] = round(time.perf_counter() - t, 1)
        row.update(memory.compiled_memory(compiled))
        batch_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(batch)) // n
        row["batch_bytes"] = batch_bytes
        # Cross-check: what XLA says the step reads = the state computed from its shardings +
        # this device's rows of the batch (a few bytes of alignment at most).
        row["argument_check_bytes"] = row["argument_bytes"] - sum(parts.values()) - batch_bytes
    return row


def markdown(rows: list[dict]) -> str:
    one = rows[0]["params_bytes"] + rows[0]["opt_state_bytes"]
    head = (
        "| devices | mesh (data, fsdp, tensor) | params | EMA target | Adam state "
        "| params + Adam | vs 1 device | temp (activations) | XLA arguments |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        both = r["params_bytes"] + r["opt_state_bytes"]
        temp = f"{r['temp_bytes'] / MIB:,.0f} MiB" if "temp_bytes" in r else "–"
        args = f"{r['argument_bytes'] / MIB:,.0f} MiB" if "argument_bytes" in r else "–"
        lines.append(
            f"| {r['devices']} | {tuple(r['mesh'])} | {r['params_bytes'] / MIB:,.0f} MiB "
            f"| {r['target_params_bytes'] / MIB:,.0f} MiB | {r['opt_state_bytes'] / MIB:,.0f} MiB "
            f"| {both / MIB:,.0f} MiB | 1/{one / both:.2f} | {temp} | {args} |"
        )
    return "\n".join(lines)


def main(_):
    config = FLAGS.config
    config.unlock()
    config.batch_size = FLAGS.batch
    config.total_steps = config.total_steps or 100_000
    counts = [int(n) for n in FLAGS.devices.split(",")]
    if max(counts) > jax.device_count():
        raise ValueError(f"--devices={FLAGS.devices}: only {jax.device_count()} devices")
    rows = []
    for n in counts:
        rows.append(measure(config, n, FLAGS.compile))
        log(f"{n} devices: " + json.dumps({k: v for k, v in rows[-1].items() if k != "unsharded"}))
    print(markdown(rows), flush=True)
    last = rows[-1]
    unsharded = sum(b for _, b in last["unsharded"])
    print(
        f"\nLeft whole on every device at {last['devices']} devices: {len(last['unsharded'])} "
        f"parameter arrays, {unsharded / MIB:.2f} MiB of params ({3 * unsharded / MIB:.2f} MiB "
        "with their two Adam moments), e.g. "
        + ", ".join(path for path, _ in last["unsharded"][:4]),
        flush=True,
    )
    one = rows[0]["params_bytes"] + rows[0]["opt_state_bytes"]
    result = {
        "config": config.model.variant,
        "image_size": config.model.image_size,
        "batch": config.batch_size,
        "dtype": config.model.dtype,
        "remat": config.model.remat,
        "platform": jax.default_backend(),
        "rows": [{k: v for k, v in r.items() if k != "unsharded"} for r in rows],
        "unsharded_param_bytes": unsharded,
        "params_opt_ratio": (last["params_bytes"] + last["opt_state_bytes"]) / one,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
