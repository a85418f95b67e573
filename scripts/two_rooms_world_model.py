"""Train the Two Rooms world model on trajectories generated on the fly, then plan with it in
latent space (eb_jepa's evaluation: 20 episodes, 200 steps, re-planning every step). The
defaults are the recipe of docs/two_rooms.md.

python scripts/two_rooms_world_model.py --seed 0 --out runs/two_rooms_s0
python scripts/two_rooms_world_model.py --load runs/two_rooms_s0 --out runs/two_rooms_s0 --mode last
"""

import argparse
import functools
import json
import os
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa import planning
from jepa import world_model_loss as wml
from jepa.envs import two_rooms as tr
from jepa.envs import two_rooms_planning as tp
from jepa.evaluate import ridge
from jepa.models.world_model import WorldModel

TRACES = {"eval": 0}
# Per-channel (dot, walls) mean and std of [0, 1] images of the data policy's trajectories.
NORM = {
    33: ((0.0024, 0.167), (0.0347, 0.373)),
    17: ((0.0023, 0.288), (0.0345, 0.453)),
    65: ((0.0026, 0.0989), (0.0369, 0.2986)),
}


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--image-size", type=int, default=33)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--features", default="16,32,32")
    p.add_argument("--norm", type=int, default=1)
    p.add_argument("--pred-hidden", type=int, default=64)
    p.add_argument("--pred-depth", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=1e-5)
    p.add_argument("--clip", type=float, default=2.0)
    p.add_argument("--w-pred", type=float, default=1.0)
    p.add_argument("--w-var", type=float, default=16.0)
    p.add_argument("--w-cov", type=float, default=8.0)
    p.add_argument("--w-sim", type=float, default=60.0)
    p.add_argument("--w-idm", type=float, default=1.0)
    p.add_argument("--stopgrad", action="store_true")
    p.add_argument("--out", required=True, help="directory for params.pkl and the results")
    p.add_argument("--load", default=None, help="skip training: load params.pkl from here")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument("--planners", default="mppi,cem")
    p.add_argument("--mode", default="sum")
    p.add_argument("--horizon", type=int, default=90)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--max-norm", type=float, default=0.0, help="clip candidates (0: eb_jepa's)")
    p.add_argument("--replan", type=int, default=1)
    p.add_argument("--warm", action="store_true")
    p.add_argument("--eval-size", type=int, default=0, help="episodes per jit call (0: all)")
    return p.parse_args()


def build(args):
    settings = tr.TwoRoomsSettings(image_size=args.image_size)
    model = WorldModel(
        embed_dim=args.embed_dim,
        encoder_features=tuple(int(f) for f in args.features.split(",")),
        predictor_hidden=args.pred_hidden,
        predictor_depth=args.pred_depth,
        input_mean=NORM[args.image_size][0] if args.norm else None,
        input_std=NORM[args.image_size][1] if args.norm else None,
    )
    return settings, model


def train(args, settings, model):
    weights = wml.LossWeights(
        prediction=args.w_pred,
        variance=args.w_var,
        covariance=args.w_cov,
        time_similarity=args.w_sim,
        inverse_dynamics=args.w_idm,
        stop_gradient_target=args.stopgrad,
    )
    key = jax.random.key(args.seed)
    k_init, k_data = jax.random.split(key)
    s = args.image_size
    params = model.init(k_init, jnp.zeros((1, s, s, 2), jnp.uint8), jnp.zeros((1, 2)))
    sched = optax.cosine_onecycle_schedule(args.steps, args.lr, pct_start=0.05)
    opt = optax.chain(
        optax.clip_by_global_norm(args.clip), optax.adamw(sched, weight_decay=args.wd)
    )
    opt_state = opt.init(params)
    gen = jax.vmap(lambda k: tr.rollout(k, settings, steps=args.window))

    @jax.jit
    def step(params, opt_state, k):
        obs, actions, _ = gen(jax.random.split(k, args.batch))
        (loss, aux), grads = jax.value_and_grad(wml.world_model_loss, has_aux=True)(
            params, model, obs, actions, weights
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, aux

    log = []
    t0 = time.time()
    for i in range(args.steps):
        params, opt_state, aux = step(params, opt_state, jax.random.fold_in(k_data, i))
        if i % 100 == 0 or i == args.steps - 1:
            aux = jax.device_get(aux)
            row = {k: float(v) for k, v in aux.items() if k != "prediction_per_step"}
            row["pred_last"] = float(aux["prediction_per_step"][-1])
            row["step"], row["time"] = i, time.time() - t0
            log.append(row)
            print(json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    return params, time.time() - t0, log


def position_probe(args, settings, model, params, horizon=16):
    """A linear (ridge) probe of the dot's position from the embedding, fitted on 256 fresh
    trajectories and tested on 256 others: R² of the encoded frames and of the predictor's
    open-loop embeddings ``horizon`` steps ahead; and the fitted probe, which reads a plan's
    predicted embeddings as positions."""
    gen = jax.jit(jax.vmap(lambda k: tr.rollout(k, settings, steps=horizon)))
    obs, actions, pos = gen(jax.random.split(jax.random.key(args.eval_seed + 1), 512))
    z = model.apply(params, obs, method="encode")
    zp = wml.unroll(lambda s, a: model.apply(params, s, a, method="predict"), z[:, 0], actions)
    z, zp, pos = (np.asarray(x) for x in (z, zp, pos))
    d = z.shape[-1]
    train_x, train_y = z[:256].reshape(-1, d), pos[:256].reshape(-1, 2)
    encoded = ridge.ridge_r2(train_x, train_y, z[256:].reshape(-1, d), pos[256:].reshape(-1, 2))
    read = ridge.ridge_map(train_x, train_y, encoded["alpha"])
    ahead = ridge.r2(read(zp[256:, -1]), pos[256:, -1])
    return {"r2_encoded": encoded["r2"], f"r2_predicted_{horizon}": ahead}, read


def wall_check(settings, model, params, read, pushes=12, speed=1.5, cases=64):
    """Does the model know the wall? (a) R² of a ridge probe of the layout (wall_x, door_y)
    from the embedding (256 frames fit, 256 tested); (b) from 3 px before the wall's face, 20
    rows from the door, the predictor rolled out over ``pushes`` actions of ``speed`` straight
    into the wall: the share of cases predicted past the wall (the true dynamics: none)."""
    keys = jax.random.split(jax.random.key(3), 512 + cases)
    firsts = jax.vmap(lambda k: tr.explore(k, settings, 1)[0])(keys[:512])
    z = np.asarray(
        model.apply(params, jax.vmap(lambda st: tr.render(st, settings))(firsts), method="encode")
    )
    layout = np.stack([np.asarray(firsts.wall_x), np.asarray(firsts.door_y)], -1)
    layout_r2 = ridge.ridge_r2(z[:256], layout[:256], z[256:], layout[256:])["r2"]

    def push(k):
        wall_x, door_y = tr.sample_geometry(k, settings)
        y = jnp.where(door_y > settings.arena / 2, door_y - 20, door_y + 20)
        left_face = wall_x - settings.wall_width // 2
        start = tr.TwoRoomsState(jnp.stack([left_face - 3.0, y]), wall_x, door_y)
        actions = jnp.tile(jnp.array([[speed, 0.0]]), (pushes, 1))
        z0 = model.apply(params, tr.render(start, settings), method="encode")
        predict = lambda s, a: model.apply(params, s, a, method="predict")  # noqa: E731
        return wml.unroll(predict, z0[None], actions[None])[0, -1], wall_x

    z_end, wall_x = jax.vmap(push)(keys[512:])
    past = read(np.asarray(z_end))[:, 0] > np.asarray(wall_x) + settings.wall_width / 2
    return {"layout_r2": layout_r2, "predicted_through_wall": float(past.mean())}


def first_plans(args, settings, model, params, cfg, key, episodes, read):
    """The plan each episode starts with, as the probe reads its predicted embeddings
    [episodes, horizon, 2]: the figure's planned path."""
    # The evaluation's tasks (drawn for all its episodes), the first ``episodes`` of them.
    tasks = tp.tasks(jax.random.split(key)[0], args.eval_episodes, settings)
    starts, goals = jax.tree.map(lambda x: x[:episodes], tasks)
    builder = planning.model_cost(model, params, lambda st: tr.render(st, settings), args.mode)
    planner = tp.make_planner(cfg)

    def one(k, start, goal):
        plan = planner(k, builder(start, goal, settings.episode_steps), jnp.zeros((cfg.horizon, 2)))
        z0 = model.apply(params, tr.render(start, settings), method="encode")
        return wml.unroll(
            lambda s, a: model.apply(params, s, a, method="predict"), z0[None], plan.actions[None]
        )[0]

    zs = jax.jit(jax.vmap(one))(jax.random.split(key, episodes), starts, goals)
    return read(np.asarray(zs).reshape(-1, zs.shape[-1])).reshape(episodes, -1, 2), goals


def evaluate(args, settings, model, params, name, read=None):
    kind = planning.MPPIConfig if name == "mppi" else planning.CEMConfig
    clip = {"max_norm": args.max_norm} if args.max_norm else {}
    cfg = kind(horizon=args.horizon, iterations=args.iterations, samples=args.samples, **clip)

    @functools.partial(jax.jit, static_argnums=(2,))
    def run(params, key, episodes):
        TRACES["eval"] += 1
        builder = planning.model_cost(model, params, lambda st: tr.render(st, settings), args.mode)
        out = tp.evaluate_planner(
            key,
            cfg,
            episodes=episodes,
            settings=settings,
            cost_builder=builder,
            replan_every=args.replan,
            warm_start=args.warm,
        )
        starts, goals = tp.tasks(jax.random.split(key)[0], episodes, settings)
        final = out.positions[:, -1]
        room = jnp.sign(final[:, 0] - goals.wall_x) == jnp.sign(goals.position[:, 0] - goals.wall_x)
        return out.success, out.final_distance, room, out.positions

    key = jax.random.key(args.eval_seed)
    t0 = time.time()
    succ, dist, room, positions = run(params, key, args.eval_episodes)
    succ, dist, room = np.asarray(succ), np.asarray(dist), np.asarray(room)
    elapsed = time.time() - t0
    if read is not None:
        shown = min(8, args.eval_episodes)
        planned, goals = first_plans(args, settings, model, params, cfg, key, shown, read)
        tp.plot_episodes(
            os.path.join(args.out, f"episodes_{name}_{args.mode}.png"),
            np.asarray(positions)[:shown],
            goals,
            planned=planned,
            success=succ[:shown],
            settings=settings,
        )
    return {
        "planner": name,
        "success": float(succ.mean()),
        "n": int(succ.size),
        "final_distance_median": float(np.median(dist)),
        "final_in_goal_room": float(room.mean()),
        "final_distances": [round(float(d), 2) for d in dist],
        "seconds": elapsed,
        "s_per_episode": elapsed / args.eval_episodes,
        "traces": TRACES["eval"],
    }


def main():
    args = parse()
    os.makedirs(args.out, exist_ok=True)
    settings, model = build(args)
    result = {"args": vars(args)}
    if args.load:
        with open(os.path.join(args.load, "params.pkl"), "rb") as f:
            params = pickle.load(f)
    else:
        params, train_time, log = train(args, settings, model)
        result["train_seconds"], result["log"] = train_time, log
        with open(os.path.join(args.out, "params.pkl"), "wb") as f:
            pickle.dump(jax.device_get(params), f)
        print("train seconds", round(train_time, 1), flush=True)
    probe, read = position_probe(args, settings, model, params)
    probe.update(wall_check(settings, model, params, read))
    print(json.dumps({"position_probe": probe}), flush=True)
    result["position_probe"] = probe
    for name in [p for p in args.planners.split(",") if p]:
        r = evaluate(args, settings, model, params, name, read)
        print(json.dumps(r), flush=True)
        result.setdefault("eval", []).append(r)
    planners = args.planners.replace(",", "-")
    tag = f"eval_{args.mode}_{planners}_h{args.horizon}_i{args.iterations}_r{args.replan}"
    with open(os.path.join(args.out, f"{tag}.json" if args.load else "result.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
