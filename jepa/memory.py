"""Per-device memory of the train step.

Two sources that check each other: the train state's bytes per device, exact, from its
shardings (each leaf's shard shape × item size; nothing is allocated or compiled), and XLA's
memory analysis of the compiled step (arguments, outputs, and temporaries — the activations
kept for the backward pass plus scratch). Used by ``scripts/benchmark.py --memory`` and
``scripts/memory_table.py``.
"""

from __future__ import annotations

import math

import jax
import numpy as np


def shard_bytes(x, sharding) -> int:
    """Bytes of one device's shard of ``x`` (an array or ``ShapeDtypeStruct``)."""
    return math.prod(sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize


def bytes_per_device(tree, shardings) -> int:
    """Bytes one device holds of ``tree``, given the matching tree of ``NamedSharding``s."""
    return int(sum(jax.tree.leaves(jax.tree.map(shard_bytes, tree, shardings))))


def state_bytes(state, shardings) -> dict[str, int]:
    """Per-device bytes of a (possibly abstract) ``TrainState``: online ``params`` (encoder +
    predictor), ``target_params`` (EMA encoder), ``opt_state`` (Adam moments), ``other``
    (step counter, rng)."""
    out = {
        name: bytes_per_device(getattr(state, name), getattr(shardings, name))
        for name in ("params", "target_params", "opt_state")
    }
    out["other"] = bytes_per_device((state.step, state.rng), (shardings.step, shardings.rng))
    return out


def unsharded_leaves(tree, shardings) -> list[tuple[str, int]]:
    """``(path, bytes)`` of every leaf that is fully replicated although the mesh has more than
    one device: what FSDP leaves whole on every device (biases of sharded-elsewhere axes, dims
    the mesh does not divide)."""
    out = []
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    for (path, x), s in zip(flat, jax.tree.leaves(shardings), strict=True):
        if s.mesh.size > 1 and s.is_fully_replicated:
            out.append((jax.tree_util.keystr(path), shard_bytes(x, s)))
    return out


def compiled_memory(compiled) -> dict[str, int]:
    """XLA's per-device memory analysis of a compiled step ({} where the backend has none)."""
    m = compiled.memory_analysis()
    if m is None:
        return {}
    keys = ("argument", "output", "temp", "alias", "generated_code")
    return {f"{k}_bytes": int(getattr(m, f"{k}_size_in_bytes", 0)) for k in keys}


def step_memory(compiled, state, shardings) -> dict[str, int]:
    """Per-device bytes of the compiled step: the state split by part, ``other_argument_bytes``
    (the batch and whatever else the step reads), ``temp_bytes`` (activations and scratch),
    ``output_bytes`` (the new state, aliased to the donated old one, and metrics)."""
    parts = state_bytes(state, shardings)
    known = parts["params"] + parts["target_params"] + parts["opt_state"]
    out = {f"{k}_bytes": v for k, v in parts.items() if k != "other"} | compiled_memory(compiled)
    if "argument_bytes" in out:
        out["other_argument_bytes"] = out["argument_bytes"] - known
    return out
