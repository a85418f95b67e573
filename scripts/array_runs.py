"""Train the video experiments on a machine without TFDS/grain (a rented GPU box), then bring
the run home as an ordinary workdir for ``jepa-eval --level N`` / ``python -m
jepa.evaluate.energy``. The step is the repo's own jitted train step; only the input differs:
batches are drawn with numpy from exported sequences instead of the grain pipeline, and there
are no checkpoints, metrics files or plots on the remote side (a wall-clock budget ends it).

  # here: export the train split of a video dataset (uint8 frames, zlib-compressed npz)
  python scripts/array_runs.py export stochastic_moving_mnist/1 runs/smm1_train.npz
  # there (needs jax, flax, optax, orbax, ml_collections): one or more jobs, params pickled
  python scripts/array_runs.py train runs/jobs.json OUT_DIR
  # here: the pickle → WORKDIR/checkpoints/STEP
  python scripts/array_runs.py import OUT_DIR/NAME.pkl WORKDIR

A job is {"name", "path" (experiment file), "arg", "data" (npz), "budget_s", overrides...}.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
import time

import numpy as np


def load_config(path: str, arg: str, overrides: dict):
    from jepa import config as config_lib

    spec = importlib.util.spec_from_file_location("experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    config_lib.apply_overrides(config, {k: str(v) for k, v in overrides.items()})
    return config


def export(dataset: str, path: str) -> None:
    from jepa.data import pipeline, sequences

    data = sequences.load_sequences(pipeline.load_data_source(dataset, "train", None))
    np.savez_compressed(path, frames=data["frames"])
    print(path, data["frames"].shape)


def sample_batch(config, frames: np.ndarray, rng: np.random.Generator) -> dict:
    """One batch as the grain pipeline would make it: clips (objective "future") or windows
    (objective "hierarchy") of uint8 sequences [n, T, H, W, 1], normalized with 0.5 / 0.5."""
    n, t = frames.shape[:2]
    idx = rng.integers(0, n, config.batch_size)
    if config.objective == "future":
        c, h = config.data.clip.context_frames, config.data.clip.horizon
        starts = rng.integers(0, t - c - h + 1, config.batch_size)
        picks = np.stack([np.r_[np.arange(s, s + c), s + c - 1 + h] for s in starts])
    else:
        f = config.data.sequence.frames
        starts = rng.integers(0, t - f + 1, config.batch_size)
        picks = starts[:, None] + np.arange(f)[None]
    return {"image": (frames[idx[:, None], picks].astype(np.float32) / 255.0 - 0.5) / 0.5}


def train(name, path, arg, data, budget_s, out_dir, **overrides) -> None:
    import jax

    from jepa import optim, sharding
    from jepa import state as state_lib
    from jepa import step as step_lib

    t0 = time.time()
    config = load_config(path, arg, overrides)
    frames = np.load(data)["frames"]
    tx = optim.make_optimizer(config)
    mesh = sharding.make_mesh(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    step_fn = step_lib.jit_train_step(config, tx, mesh, shardings)
    rng = np.random.default_rng(config.seed)
    done, history = 0, []
    for step in range(config.total_steps):
        with jax.set_mesh(mesh):
            batch = sharding.global_batch(sample_batch(config, frames, rng), mesh)
            state, metrics = step_fn(state, batch)
        done = step + 1
        if done % 250 == 0 or done == config.total_steps:
            values = {k: round(float(v), 4) for k, v in metrics.items() if "nonfinite" not in k}
            history.append((done, values))
            print(name, done, f"{time.time() - t0:.0f}s", values, flush=True)
        if time.time() - t0 > budget_s:
            print(name, "stopping at the budget after step", done, flush=True)
            break
    run = {
        "name": name,
        "path": path,
        "arg": arg,
        "overrides": overrides,
        "step": done,
        "params": jax.device_get(state.params),
        "target": jax.device_get(state.target_params),
        "history": history,
        "wall_s": time.time() - t0,
    }
    with open(os.path.join(out_dir, f"{name}.pkl"), "wb") as f:
        pickle.dump(run, f)


def import_run(pickle_path: str, workdir: str) -> None:
    import jax
    import jax.numpy as jnp

    from jepa import checkpointing, optim, sharding
    from jepa import state as state_lib

    with open(pickle_path, "rb") as f:
        run = pickle.load(f)
    config = load_config(run["path"], run["arg"], {**run["overrides"], "mesh.data": 1})
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    tx = optim.make_optimizer(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    state = state.replace(
        params=jax.device_put(run["params"], shardings.params),
        target_params=jax.device_put(run["target"], shardings.target_params),
        step=jnp.asarray(run["step"], jnp.int32),
    )
    ckpt = checkpointing.Checkpointer(workdir, every=1, keep=1)
    ckpt.save(run["step"], state, None, config, force=True)
    ckpt.close()
    summary = {k: run[k] for k in ("name", "arg", "overrides", "step", "history")}
    with open(os.path.join(workdir, "array_run.json"), "w") as f:
        json.dump({**summary, "wall_s": round(run["wall_s"], 1)}, f, indent=1)
    print("imported", run["name"], "at step", run["step"], "into", workdir)


def main(argv: list[str]) -> None:
    sys.path.insert(0, os.getcwd())
    command, *args = argv
    if command == "export":
        export(*args)
    elif command == "train":
        jobs, out_dir = args
        with open(jobs) as f:
            for job in json.load(f):
                train(out_dir=out_dir, **job)
    elif command == "import":
        import_run(*args)
    else:
        raise SystemExit(f"unknown command {command!r}; valid: export, train, import")


if __name__ == "__main__":
    main(sys.argv[1:])
