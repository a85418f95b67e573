"""Two Rooms reference numbers: the true-dynamics planner's success rate (the ceiling a world
model planning with the same optimizer can reach), random actions' (the floor), planning
seconds per episode, the exploratory data policy's trajectories per second, and whether the
world model's predictor learns the wall when it is given the true state.

    python scripts/two_rooms_baselines.py plan --planner mppi --seeds 3 --episodes 20
    python scripts/two_rooms_baselines.py rollouts --batch 256 --image-size 65
    python scripts/two_rooms_baselines.py predictor --hidden 64 --steps 1000 --batch 64

Each seed is one jitted, vmapped evaluation of ``--episodes`` tasks (eb_jepa's protocol:
200 steps, success = final position within 4.5 of the goal); seconds per episode are that
evaluation's wall time over its episode count, compile excluded (reported apart).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa import planning
from jepa import world_model_loss as wml
from jepa.envs import two_rooms as tr
from jepa.envs import two_rooms_planning as tp
from jepa.evaluate import world_model as wall_check
from jepa.models.world_model import ResidualPredictor


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def plan(args) -> dict:
    config = planning.CEMConfig() if args.planner == "cem" else planning.MPPIConfig()
    overrides = {
        k: v
        for k, v in dict(
            horizon=args.horizon,
            iterations=args.iterations,
            samples=args.samples,
            elites=args.elites,
        ).items()
        if v is not None
    }
    config = dataclasses.replace(config, **overrides)
    settings = tr.TwoRoomsSettings()
    evaluate = jax.jit(
        functools.partial(
            tp.evaluate_planner,
            config=config,
            episodes=args.episodes,
            settings=settings,
            cost_builder=tp.true_dynamics_cost(settings, args.cost, args.metric, args.room_penalty),
            replan_every=args.replan_every,
            warm_start=args.warm_start,
        )
    )
    random = jax.jit(functools.partial(tp.evaluate_random, episodes=args.episodes))
    compile_s = _timed(evaluate.lower(jax.random.key(0)).compile)[1]
    rows = []
    for seed in range(args.seeds):
        key = jax.random.key(seed)
        out, seconds = _timed(evaluate, key)
        floor = random(key)
        rows.append(
            dict(
                seed=seed,
                success=float(np.mean(out.success)),
                final_distance=float(np.mean(out.final_distance)),
                random_success=float(np.mean(floor.success)),
                seconds_per_episode=seconds / args.episodes,
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    summary = dict(
        planner=dataclasses.asdict(config) | dict(name=args.planner),
        cost=args.cost,
        metric=args.metric,
        room_penalty=args.room_penalty if args.metric == "rooms" else None,
        replan_every=args.replan_every,
        warm_start=args.warm_start,
        episodes=args.episodes,
        compile_s=compile_s,
        success_mean=float(np.mean([r["success"] for r in rows])),
        success_std=float(np.std([r["success"] for r in rows])),
        random_success_mean=float(np.mean([r["random_success"] for r in rows])),
        seconds_per_episode=float(np.mean([r["seconds_per_episode"] for r in rows])),
        device=str(jax.devices()[0].device_kind),
        seeds=rows,
    )
    return summary


def rollouts(args) -> dict:
    settings = tr.TwoRoomsSettings(image_size=args.image_size)
    steps = settings.trajectory_steps
    generate = jax.jit(jax.vmap(lambda k: tr.rollout(k, settings, steps)))
    keys = [jax.random.split(jax.random.key(i), args.batch) for i in range(args.repeats + 1)]
    compile_s = _timed(generate, keys[0])[1]
    times = [_timed(generate, k)[1] for k in keys[1:]]
    best = min(times)
    return dict(
        image_size=args.image_size,
        steps=steps,
        batch=args.batch,
        compile_s=compile_s,
        seconds_per_batch=times,
        trajectories_per_s=args.batch / best,
        frames_per_s=args.batch * (steps + 1) / best,
        device=str(jax.devices()[0].device_kind),
    )


def predictor(args) -> dict:
    """The recipe's predictor (``ResidualPredictor``, 2 hidden layers) trained as the world model
    trains it (16-step open-loop rollout, squared error, AdamW 1e-3 with 5 % warmup and cosine
    decay, clip 2) but on the true state: (x, y, wall_x, door_y) scaled to about unit spread,
    the layout held fixed along the rollout. Then ``wall_contact``'s check in state space: on
    fresh trajectories with at least 4 moves undone at the dividing wall, the distance of the
    16th prediction to the true position and to where the same actions go with no wall. If
    the first is not well below the second, no representation can rescue that predictor.
    ``undone_predicted_share``: over the moves the data policy undid (at any wall), the length
    the predictor moves the dot one step from the true state, over the actions' length."""
    s, window = tr.TwoRoomsSettings(), 16
    centre, scale = jnp.array([32.0, 32.0, 32.0, 32.0]), jnp.array([16.0, 16.0, 8.0, 13.0])
    model = ResidualPredictor(args.hidden, 2)

    def trajectories(key, n):
        first, actions, positions = jax.vmap(lambda k: tr.explore(k, s, window))(
            jax.random.split(key, n)
        )
        layout = jnp.broadcast_to(
            jnp.stack([first.wall_x, first.door_y], -1)[:, None], (*positions.shape[:2], 2)
        )
        return (jnp.concatenate([positions, layout], -1) - centre) / scale, actions, first

    def rollout(params, states, actions):
        def step(z, a):  # the layout is not the predictor's to change
            return model.apply(params, z, a).at[..., 2:].set(z[..., 2:])

        return wml.unroll(step, states[:, 0], actions)

    params = model.init(jax.random.key(0), jnp.zeros((1, 4)), jnp.zeros((1, 2)))
    schedule = optax.warmup_cosine_decay_schedule(4e-5, 1e-3, args.steps // 20, args.steps, 1e-6)
    opt = optax.chain(optax.clip_by_global_norm(2.0), optax.adamw(schedule, weight_decay=1e-5))
    opt_state = opt.init(params)

    @jax.jit
    def update(params, opt_state, key):
        states, actions, _ = trajectories(key, args.batch)

        def loss(p):
            return jnp.mean((rollout(p, states, actions)[..., :2] - states[:, 1:, :2]) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    start = time.perf_counter()
    for i in range(args.steps):
        params, opt_state, value = update(params, opt_state, jax.random.key(i + 1))
    seconds = time.perf_counter() - start

    states, actions, first = trajectories(jax.random.key(-1), 4096)
    positions = states[..., :2] * scale[:2] + centre[:2]
    last = rollout(params, states, actions)[:, -1, :2] * scale[:2] + centre[:2]
    free = wall_check.free_end(positions[:, 0], actions, s)
    blocked = np.asarray(jnp.sum(wall_check.wall_stops(positions, first.wall_x), -1) >= 4)

    def mean_distance(target, rows):
        return round(float(np.linalg.norm(np.asarray(last - target), axis=-1)[rows].mean()), 3)

    # One step from each true state: where the data policy's move was undone (the dot did not
    # move though the action did), how far the predictor still moves it, as a share of the
    # action's length (0: it stops the dot, 1: it ignores the wall).
    one = (model.apply(params, states[:, :-1], actions) - states[:, :-1])[..., :2] * scale[:2]
    moved = np.linalg.norm(np.asarray(positions[:, 1:] - positions[:, :-1]), axis=-1)
    length = np.linalg.norm(np.asarray(actions), axis=-1)
    undone = (moved < 1e-6) & (length > 0.3)
    predicted = np.linalg.norm(np.asarray(one), axis=-1)

    return dict(
        hidden=args.hidden,
        steps=args.steps,
        batch=args.batch,
        final_loss=float(value),
        train_seconds=seconds,
        wall_trajectories=float(blocked.mean()),
        wall_to_true=mean_distance(positions[:, -1], blocked),
        wall_to_free=mean_distance(free, blocked),
        others_to_true=mean_distance(positions[:, -1], ~blocked),
        undone_moves=round(float(undone.mean()), 4),
        undone_predicted_share=round(float(predicted[undone].sum() / length[undone].sum()), 3),
        device=str(jax.devices()[0].device_kind),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--planner", choices=["cem", "mppi"], default="mppi")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--replan-every", type=int, default=1)
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--cost", choices=["sum", "last"], default="sum")
    p.add_argument("--metric", choices=["euclidean", "geodesic", "rooms"], default="euclidean")
    p.add_argument("--room-penalty", type=float, default=30.0, help="--metric rooms: pixels")
    p.add_argument("--horizon", type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--samples", type=int)
    p.add_argument("--elites", type=int)
    r = sub.add_parser("rollouts")
    r.add_argument("--batch", type=int, default=256)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--image-size", type=int, default=65)
    q = sub.add_parser("predictor")
    q.add_argument("--hidden", type=int, default=64)
    q.add_argument("--steps", type=int, default=1000)
    q.add_argument("--batch", type=int, default=64)
    for each in (p, r, q):
        each.add_argument("--json", help="also write the summary here")
    args = parser.parse_args()
    summary = {"plan": plan, "rollouts": rollouts, "predictor": predictor}[args.command](args)
    print(json.dumps({k: v for k, v in summary.items() if k != "seeds"}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
