"""Train the video experiments on a machine without TFDS/grain (a rented GPU box), then bring
the run home as an ordinary workdir for ``jepa-eval --level N`` / ``jepa-eval --protocol
energy``. The step is the repo's own jitted train step; only the input differs:
batches are drawn with numpy from exported sequences instead of the grain pipeline, and there
are no checkpoints, metrics files or plots on the remote side (a wall-clock budget ends it).

  # here: export a split of a video dataset (uint8 frames and the per-frame labels, zlib npz)
  python scripts/array_runs.py export stochastic_moving_mnist/1 runs/smm1_train.npz
  python scripts/array_runs.py export stochastic_moving_mnist/1 runs/smm1_test.npz test
  # there (needs jax, flax, optax, orbax, ml_collections): one or more jobs, params pickled
  python scripts/array_runs.py train runs/jobs.json OUT_DIR
  # here: the pickle → WORKDIR/checkpoints/STEP
  python scripts/array_runs.py import OUT_DIR/NAME.pkl WORKDIR

A job is {"name", "path" (experiment file), "arg", "data" (npz), "budget_s", overrides...};
for a hierarchy job, "probe_data" (an exported test split) and "probe_every" (steps) add the
level-1 digit-identity probe of ``jepa-eval --level 1`` (``levels.identity_probe``: the same
rows, solver and selection, on the encoder ``eval.weights`` names) during the run and at its end
(there on both encoders), so a remote run reports the number that decides it. A greedy
hierarchy job (``mode=greedy``) names an earlier job's pickle as its ``init_from``
(``init_from=OUT_DIR/NAME.pkl``): its lower levels and level-1 target encoder are loaded from
it (the workdir loader, ``hierarchy_modes.load_lower_levels``, needs orbax and grain, which
such a box may lack). With ``"hierarchy.cached_inputs": true`` in such a job,
the frozen level 1 runs once over the exported sequences before training instead of on every
step (same batches, same losses: tested), which makes level 2's step several times cheaper.
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


def export(dataset: str, path: str, split: str = "train") -> None:
    from jepa.data import pipeline, sequences

    data = sequences.load_sequences(pipeline.load_data_source(dataset, split, None))
    np.savez_compressed(path, **data)
    print(path, {k: v.shape for k, v in data.items()})


def make_identity_probe(config, train, test):
    """``encoder params → level-1 digit identity (top-1, %)`` as ``jepa-eval --level 1``
    measures it: the encoder's tokens averaged per frame, ``levels.identity_probe`` on the two
    splits. Built once per run, so each probe reuses the compiled encoder."""
    import jax

    from jepa import hierarchy
    from jepa.evaluate import levels

    model = hierarchy.Hierarchy(config)
    embed = jax.jit(lambda p, f: model.frame_tokens(p, f).mean(2))
    every = 4  # the frames levels.identity_probe keeps, so only those are encoded
    train_frames, test_frames = train["frames"][:, ::every], test["frames"][:, ::every]

    def features(target_params, frames):
        out = [
            np.asarray(embed(target_params, normalize(config, frames[i : i + 64])))
            for i in range(0, len(frames), 64)
        ]
        return np.concatenate(out)

    def probe(target_params) -> float:
        result = levels.identity_probe(
            config,
            features(target_params, train_frames),
            train["digits"][:, 0],
            features(target_params, test_frames),
            test["digits"][:, 0],
            every=1,
        )
        return round(100 * float(result["top1"]), 2)

    return probe


def normalize(config, frames_u8: np.ndarray) -> np.ndarray:
    """uint8 → the framework's input range, with the config's ``data.mean`` / ``data.std``
    (the grain-free ``jepa.data.normalization``, as the input pipeline)."""
    from jepa.data.normalization import normalize_frames

    return normalize_frames(frames_u8, tuple(config.data.mean), tuple(config.data.std))


def sample_batch(config, frames: np.ndarray, rng: np.random.Generator, cache=None) -> dict:
    """One batch as the grain pipeline would make it: clips (objective "future") or windows
    (objective "hierarchy") of uint8 sequences [n, T, H, W, 1], normalized with 0.5 / 0.5.
    With ``cache`` (``hierarchy.cached_inputs``: the frozen level 1's per-frame outputs of
    every sequence, [n, T, features]) the same windows are taken from it instead, so the
    draws, and hence the batches, are those of an uncached run."""
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
        if cache is not None:
            return {"frozen_inputs": cache[idx[:, None], picks]}
    return {"image": normalize(config, frames[idx[:, None], picks])}


def frozen_level_outputs(config, params, frames: np.ndarray, chunk: int = 32) -> np.ndarray:
    """``hierarchy.cached_inputs``: what the first learning level reads of every sequence,
    [n, T, features] float32, from the frozen level 1 (``Hierarchy.frozen_outputs``), computed
    once, ``chunk`` sequences at a time."""
    import jax

    from jepa import hierarchy

    model = hierarchy.Hierarchy(config)
    fn = jax.jit(model.frozen_outputs)
    out = [
        np.asarray(fn(params, normalize(config, frames[i : i + chunk])))
        for i in range(0, len(frames), chunk)
    ]
    return np.concatenate(out)


def train(
    name, path, arg, data, budget_s, out_dir, probe_data="", probe_every=0, **overrides
) -> None:
    import jax

    from jepa import optim, sharding
    from jepa import state as state_lib
    from jepa import step as step_lib

    t0 = time.time()
    # Made before training: a missing folder used to surface only when the run was saved.
    os.makedirs(out_dir, exist_ok=True)
    config = load_config(path, arg, overrides)
    train_split = dict(np.load(data))
    frames = train_split["frames"]
    identity_probe = None
    if probe_data:
        identity_probe = make_identity_probe(config, train_split, dict(np.load(probe_data)))
    tx = optim.make_optimizer(config)
    mesh = sharding.make_mesh(config)
    state, shardings = state_lib.create_train_state(config, tx, mesh)
    cache = None
    if config.objective == "hierarchy" and config.hierarchy.mode == "greedy":
        state = load_lower_levels_from_pickle(config, state, shardings)
        if config.hierarchy.cached_inputs:
            params = jax.device_get(state.params)
            cache = frozen_level_outputs(config, params, frames)
            print(
                name,
                f"frozen level 1 run once over {len(frames)} sequences:",
                cache.shape,
                f"{time.time() - t0:.0f}s",
                flush=True,
            )
    step_fn = step_lib.jit_train_step(config, tx, mesh, shardings)
    rng = np.random.default_rng(config.seed)
    done, history = 0, []
    for step in range(config.total_steps):
        with jax.set_mesh(mesh):
            batch = sharding.global_batch(sample_batch(config, frames, rng, cache), mesh)
            state, metrics = step_fn(state, batch)
        done = step + 1
        over_budget = time.time() - t0 > budget_s
        last = over_budget or done == config.total_steps
        every_now = bool(probe_every) and done % probe_every == 0
        probe_now = identity_probe is not None and (last or every_now)
        if done % 250 == 0 or last or probe_now:
            values = {k: round(float(v), 4) for k, v in metrics.items() if "nonfinite" not in k}
            if probe_now:
                # The encoder jepa-eval --level 1 reads (eval.weights); at the end the other
                # one too: the EMA lags the online encoder while it still improves.
                values["identity_top1"] = identity_probe(state.encoder(config.eval.weights))
                if last:
                    other = "context" if config.eval.weights == "target" else "target"
                    values[f"identity_top1_{other}"] = identity_probe(state.encoder(other))
            history.append((done, values))
            print(name, done, f"{time.time() - t0:.0f}s", values, flush=True)
        if over_budget:
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


def load_lower_levels_from_pickle(config, state, shardings):
    """Greedy mode: level 1 (its encoder, predictor, latent) and its target encoder from the
    pickle of an earlier job named by ``hierarchy.init_from`` (only its level 1 is taken);
    strict about shapes, as the workdir loader is."""
    import jax

    source = config.hierarchy.init_from
    if not source.endswith(".pkl"):
        raise ValueError(
            f"hierarchy.init_from={source!r}: a greedy array job loads its lower levels from "
            "an earlier job's pickle (OUT_DIR/NAME.pkl)"
        )
    if config.hierarchy.frozen_levels != 1:
        raise ValueError("array jobs load level 1 only: hierarchy.frozen_levels must be 1")
    with open(source, "rb") as f:
        run = pickle.load(f)
    params = dict(state.params)
    for name in ("encoder", "predictor", "latent"):
        if name not in run["params"] and name not in params:
            continue
        got = jax.tree.map(np.shape, run["params"].get(name, {}))
        want = jax.tree.map(np.shape, params.get(name, {}))
        if got != want:
            raise ValueError(
                f"{source}: level 1's {name!r} does not match this config's (a different "
                "width, depth, patch or latent?)"
            )
        params[name] = run["params"][name]
    # level 1's identity-term projector is only used while level 1 trains: taken if both have it
    if "views_projector" in run["params"] and "views_projector" in params:
        params["views_projector"] = run["params"]["views_projector"]
    print("loaded level 1 from", source, "at step", run["step"], flush=True)
    return state.replace(
        params=jax.device_put(params, shardings.params),
        target_params=jax.device_put(run["target"], shardings.target_params),
    )


def import_run(pickle_path: str, workdir: str) -> None:
    import jax
    import jax.numpy as jnp

    from jepa import checkpointing, optim, sharding
    from jepa import state as state_lib

    with open(pickle_path, "rb") as f:
        run = pickle.load(f)
    # cached_inputs is how the job was fed, not what it learned: the workdir is for jepa-train
    overrides = {**run["overrides"], "mesh.data": 1, "hierarchy.cached_inputs": False}
    config = load_config(run["path"], run["arg"], overrides)
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
