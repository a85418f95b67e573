"""CEM and MPPI on a known quadratic; the receding-horizon loop's cadence, warm start and
horizon cut on a stub planner; the true-dynamics planner against random actions on Two Rooms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa import planning
from jepa.envs import two_rooms_planning as tp

H, A = 8, 2


def _quadratic():
    target = jax.random.uniform(jax.random.key(0), (H, A), minval=-1.0, maxval=1.0)
    return target, lambda a: jnp.sum((a - target) ** 2)


@pytest.mark.parametrize(
    "optimizer, config",
    [
        (planning.cem, planning.CEMConfig(horizon=H, iterations=30, samples=300, elites=30)),
        (planning.mppi, planning.MPPIConfig(horizon=H, iterations=30, samples=300, elites=30)),
    ],
)
def test_optimizers_find_the_minimum_of_a_quadratic(optimizer, config):
    target, cost = _quadratic()
    start = jnp.zeros((H, A))
    plan = jax.jit(lambda k: optimizer(k, cost, start, config))(jax.random.key(1))
    # The minimum is 0 at the target; from the zero mean the cost is |target|² (about 5.3).
    assert float(cost(start)) > 3.0
    np.testing.assert_allclose(np.asarray(plan.actions), np.asarray(target), atol=0.05)
    np.testing.assert_allclose(np.asarray(plan.mean), np.asarray(target), atol=0.05)
    assert float(cost(plan.actions)) < 0.01 * float(cost(start))
    best = np.asarray(plan.best_costs)
    assert best.shape == (config.iterations,) and best[-1] < 0.01 * best[0]


def test_cem_clips_every_action_to_the_norm_bound():
    # A target beyond the bound: the clipped optimum is the target scaled onto the circle,
    # (3, 4)·2.45/5 = (1.47, 1.96).
    target = jnp.tile(jnp.array([[3.0, 4.0]]), (2, 1))
    config = planning.CEMConfig(horizon=2, iterations=30, samples=300, elites=30, max_norm=2.45)
    plan = planning.cem(
        jax.random.key(2), lambda a: jnp.sum((a - target) ** 2), jnp.zeros((2, A)), config
    )
    np.testing.assert_allclose(np.linalg.norm(plan.actions, axis=-1), 2.45, atol=0.01)
    np.testing.assert_allclose(np.asarray(plan.actions), [[1.47, 1.96]] * 2, atol=0.03)


def test_mppi_weights_follow_the_temperature():
    # One iteration, every sample an elite, cost (a - 1)² on one action drawn from N(0, 2²):
    # weights exp(-(c - c_min)/T) times the proposal make a Gaussian of precision
    # 1/4 + 2/T and mean (2/T)/(1/4 + 2/T). At T = 2 that is mean 0.8, std sqrt(1/1.25).
    def cost(a):
        return (a[0, 0] - 1.0) ** 2

    def run(temperature):
        config = planning.MPPIConfig(
            horizon=1, iterations=1, samples=20000, elites=20000, temperature=temperature
        )
        return planning.mppi(jax.random.key(3), cost, jnp.zeros((1, 1)), config)

    warm = run(2.0)
    assert abs(float(warm.mean[0, 0]) - 0.8) < 0.03
    # Very cold: the best sample, within a few thousandths of 1. Very hot: the plain mean.
    assert abs(float(run(1e-4).mean[0, 0]) - 1.0) < 0.01
    assert abs(float(run(1e6).mean[0, 0])) < 0.05


def test_reduce_horizon_sums_or_takes_the_last_of_the_steps_left():
    per_step = jnp.array([1.0, 2.0, 3.0, 4.0])
    assert float(planning.reduce_horizon(per_step, 2)) == 3.0
    assert float(planning.reduce_horizon(per_step, 10)) == 10.0
    assert float(planning.reduce_horizon(per_step, 2, "last")) == 2.0
    assert float(planning.reduce_horizon(per_step, 10, "last")) == 4.0


def _stub_episode(warm_start, replan_every=2, steps=6, horizon=4):
    """A 1-D integrator driven by a planner that returns its initial mean plus one."""

    def planner(key, cost, mean):
        del key, cost
        return planning.Plan(mean + 1.0, mean + 1.0, jnp.zeros(1))

    return planning.plan_episode(
        jax.random.key(0),
        jnp.zeros(()),
        jnp.zeros(()),
        planner=planner,
        cost_builder=lambda s, g, left: lambda a: 0.0,
        env_step=lambda s, a, k: s + a[0],
        steps=steps,
        horizon=horizon,
        action_dim=1,
        replan_every=replan_every,
        warm_start=warm_start,
    )


def test_plan_episode_replans_every_k_steps_from_the_shifted_mean():
    # Plan 0 from zeros: [1, 1, 1, 1], two executed. Warm start: the next mean is [1, 1, 0, 0],
    # so plan 1 is [2, 2, 1, 1]; plan 2 starts from [1, 1, 0, 0] again.
    warm = _stub_episode(warm_start=True)
    np.testing.assert_allclose(np.asarray(warm.actions[:, 0]), [1, 1, 2, 2, 2, 2])
    np.testing.assert_allclose(np.asarray(warm.states), [0, 1, 2, 4, 6, 8, 10])
    cold = _stub_episode(warm_start=False)
    np.testing.assert_allclose(np.asarray(cold.actions[:, 0]), [1, 1, 1, 1, 1, 1])
    # Re-planning every step: plan t starts from plan t-1's mean shifted by one.
    every = _stub_episode(warm_start=True, replan_every=1, steps=5)
    np.testing.assert_allclose(np.asarray(every.actions[:, 0]), [1, 2, 3, 4, 4])


def test_plan_episode_tells_the_cost_the_steps_left():
    def planner(key, cost, mean):
        return planning.Plan(jnp.full_like(mean, cost(mean)), mean, jnp.zeros(1))

    episode = planning.plan_episode(
        jax.random.key(0),
        jnp.zeros(()),
        jnp.zeros(()),
        planner=planner,
        cost_builder=lambda s, g, left: lambda a: left.astype(jnp.float32),
        env_step=lambda s, a, k: s + a[0],
        steps=6,
        horizon=4,
        action_dim=1,
        replan_every=2,
    )
    np.testing.assert_allclose(np.asarray(episode.actions[:, 0]), [6, 6, 4, 4, 2, 2])


def test_plan_episode_rejects_a_cadence_that_does_not_divide_the_episode():
    with pytest.raises(ValueError):
        _stub_episode(warm_start=True, replan_every=4, steps=6, horizon=4)


def _two_rooms_rates(episodes, key):
    """A cheaper planner than eb_jepa's (horizon 60, 8 iterations of 100 samples, re-planning
    every 10 steps) on true dynamics, and random actions, on the same tasks."""
    config = planning.MPPIConfig(horizon=60, iterations=8, samples=100, elites=10)
    rates = {}
    for metric in ("geodesic", "euclidean"):
        run = jax.jit(
            functools.partial(
                tp.evaluate_planner,
                config=config,
                episodes=episodes,
                cost_builder=tp.true_dynamics_cost(metric=metric),
                replan_every=10,
            )
        )
        rates[metric] = np.asarray(run(key).success)
    rates["random"] = np.asarray(tp.evaluate_random(key, episodes=episodes).success)
    return rates


def test_true_dynamics_planner_reaches_most_goals_and_random_actions_rarely_do():
    rates = _two_rooms_rates(16, jax.random.key(11))
    # Measured with this config over 16 episodes at keys 11, 12, 13: geodesic 16, 16, 16;
    # Euclidean (its local minimum at the wall) 13, 9, 9; random actions 0, 0, 0 (0.8 % over
    # 1,000 episodes).
    assert rates["geodesic"].sum() >= 14
    assert rates["euclidean"].sum() >= 6
    assert rates["random"].sum() <= 2


def test_the_rooms_metric_adds_its_penalty_while_the_dot_is_in_the_other_room():
    from jepa.envs import two_rooms as tr

    def state(x, y):
        wall_x, door_y = jnp.float32(32.0), jnp.float32(18.0)
        return tr.TwoRoomsState(jnp.array([x, y], jnp.float32), wall_x, door_y)

    build = tp.true_dynamics_cost(metric="rooms", room_penalty=30.0)
    still = jnp.zeros((3, 2))  # three steps that do not move the dot
    # Start (20, 40), left of the wall at x = 32; goal (40, 40) on the right: 20 px away, plus
    # 30 for the other room, at each of the 3 steps.
    np.testing.assert_allclose(build(state(20, 40), state(40, 40), 3)(still), 3 * (20 + 30))
    # The same room: the Euclidean distance alone (3-4-5 triangle).
    np.testing.assert_allclose(build(state(20, 40), state(23, 44), 3)(still), 3 * 5.0)
    with pytest.raises(ValueError, match="rooms"):
        tp.true_dynamics_cost(metric="manhattan")
