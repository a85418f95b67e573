"""One device mesh ``('data', 'fsdp', 'tensor')``, logical-axis rules, and the shardings of the
train state and of the batches.

Data parallelism is ``mesh = (N, 1, 1)``; FSDP shards every parameter's ``embed`` axis (and the
optimizer state with it) over ``fsdp``; tensor parallelism shards ``mlp``/``heads`` over
``tensor``. Batches are split over ``data × fsdp``. Everything is plain ``jax.jit`` with
``NamedSharding``s; no pmap, no shard_map.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jepa import config as config_lib

BATCH_AXES = ("data", "fsdp")


def make_mesh(config, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """The mesh described by ``config.mesh`` (one axis may be -1 to take the rest)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = config_lib.mesh_shape(config, len(devices))
    return jax.make_mesh(
        shape,
        config_lib.MESH_AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * len(shape),
        devices=devices,
    )


def rules_of(config) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    return tuple(
        (name, tuple(axes) if isinstance(axes, list) else axes)
        for name, axes in config.sharding_rules
    )


def _mesh_axes_for(logical: PartitionSpec, shape, mesh, rules) -> PartitionSpec:
    """Map one logical spec to mesh axes; a dim the mesh axes do not divide stays replicated
    (small models on big meshes: a 48-wide patch kernel is not worth padding)."""
    table = dict(rules)
    out = []
    used: set[str] = set()
    names = tuple(logical) + (None,) * (len(shape) - len(logical))
    for name, dim in zip(names, shape, strict=True):
        axes = table.get(name) or ()
        axes = (axes,) if isinstance(axes, str) else axes
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if not axes or dim % math.prod(mesh.shape[a] for a in axes):
            out.append(None)
            continue
        used.update(axes)
        out.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def param_shardings(boxed_params, mesh, rules):
    """NamedShardings for (abstract) params that still carry flax's logical-partitioning boxes."""
    logical = nn.get_partition_spec(boxed_params)
    shapes = nn.unbox(boxed_params)
    return jax.tree.map(
        lambda spec, x: NamedSharding(mesh, _mesh_axes_for(spec, x.shape, mesh, rules)),
        logical,
        shapes,
        is_leaf=lambda s: isinstance(s, PartitionSpec),
    )


def opt_state_shardings(tx, abstract_opt_state, params_sharding, mesh):
    """Optimizer moments follow their parameters' shardings; counters are replicated."""
    return optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        abstract_opt_state,
        params_sharding,
        transform_non_params=lambda _: replicated(mesh),
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )


def batch_sharding(mesh, ndim: int) -> NamedSharding:
    """Leading (batch) axis over ``data × fsdp``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Per-host numpy arrays → global ``jax.Array``s split over the batch axes of the mesh."""
    return {
        k: jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v)
        for k, v in local.items()
    }


DISTRIBUTED_MODES = ("auto", "on", "off")
# What a SLURM job step (srun) sets for each task; the batch script itself lacks the STEP ones,
# so a `jepa-train` run there without srun stays a single process.
_SLURM_STEP_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _cluster_detected() -> str | None:
    """The multi-process launcher JAX can auto-detect, if any: a SLURM step of several tasks,
    or a TPU pod that lists its workers (GKE, and VMs that export the list)."""
    if all(v in os.environ for v in _SLURM_STEP_VARS) and int(os.environ["SLURM_NTASKS"]) > 1:
        return "slurm"
    hosts = os.environ.get("TPU_PROCESS_ADDRESSES") or os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if len([h for h in hosts.split(",") if h.strip()]) > 1:
        return "cloud_tpu"
    return None


def maybe_initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    mode: str | None = None,
) -> bool:
    """Start JAX's multi-process runtime (``jax.distributed.initialize``) when asked to, before
    anything touches a device; True when it was started. A coordinator (the arguments, else
    ``JEPA_COORDINATOR`` etc.) wins; then ``mode`` (else ``JEPA_DISTRIBUTED``, else ``auto``):
    ``auto`` initializes under a SLURM step of several tasks (``srun``) or on a TPU pod whose
    worker list is in the environment; ``on`` always, leaving every value to JAX's
    auto-detection (what ``scripts/launch_tpu_pod.sh`` needs: a TPU VM's worker list is not in
    its environment); ``off`` never (e.g. independent runs as the tasks of one SLURM step)."""
    coordinator = coordinator or os.environ.get("JEPA_COORDINATOR") or None
    num_processes = num_processes if num_processes is not None else _env_int("JEPA_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JEPA_PROCESS_ID")
    mode = mode or os.environ.get("JEPA_DISTRIBUTED") or "auto"
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"--distributed={mode!r}; valid: {', '.join(DISTRIBUTED_MODES)}")
    if coordinator:
        if num_processes is None or process_id is None:
            raise ValueError(
                f"--coordinator={coordinator} needs --num_processes and --process_id (or "
                "JEPA_NUM_PROCESSES and JEPA_PROCESS_ID); without a coordinator, SLURM and TPU "
                "pods are detected by themselves"
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(
                f"--process_id={process_id} is outside [0, --num_processes={num_processes})"
            )
        jax.distributed.initialize(coordinator, num_processes, process_id)
        return True
    if mode == "off" or (mode == "auto" and not _cluster_detected()):
        return False
    jax.distributed.initialize()
    return True
