"""Two Rooms reference numbers: the true-dynamics planner's success rate (the ceiling a world
model planning with the same optimizer can reach), random actions' (the floor), planning
seconds per episode, and the exploratory data policy's trajectories per second.

    python scripts/two_rooms_baselines.py plan --planner mppi --seeds 3 --episodes 20
    python scripts/two_rooms_baselines.py rollouts --batch 256 --image-size 65

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
import numpy as np

from jepa import planning
from jepa.envs import two_rooms as tr
from jepa.envs import two_rooms_planning as tp


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
            cost_builder=tp.true_dynamics_cost(settings, args.cost, args.metric),
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
    p.add_argument("--metric", choices=["euclidean", "geodesic"], default="euclidean")
    p.add_argument("--horizon", type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--samples", type=int)
    p.add_argument("--elites", type=int)
    r = sub.add_parser("rollouts")
    r.add_argument("--batch", type=int, default=256)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--image-size", type=int, default=65)
    for q in (p, r):
        q.add_argument("--json", help="also write the summary here")
    args = parser.parse_args()
    summary = plan(args) if args.command == "plan" else rollouts(args)
    print(json.dumps({k: v for k, v in summary.items() if k != "seeds"}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
