"""Two Rooms: walls, door, clip, border and render on hand-computed cases; vmappable and
deterministic per key; the exploratory policy's statistics against their definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa import planning
from jepa.envs import two_rooms as tr

S = tr.DEFAULT
# Mean push off a wall without noise: E|N(0, 0.5)|.
PUSH = 0.5 * math.sqrt(2 / math.pi)
# Wall at column 30 (faces 29 and 31), door at row 18 (rows 14..22 open).
WALL, DOOR = 30.0, 18.0


def at(x, y):
    return tr.TwoRoomsState(jnp.array([x, y], jnp.float32), jnp.float32(WALL), jnp.float32(DOOR))


def step(x, y, dx, dy, key=None, settings=S):
    return np.asarray(tr.step(at(x, y), jnp.array([dx, dy]), key, settings).position)


def stay(x, y, dx, dy):
    return np.asarray(tr.move(at(x, y), jnp.array([dx, dy]), collision="stay").position)


def test_free_move_adds_the_action():
    np.testing.assert_allclose(step(20, 40, 1.0, -1.5), [21.0, 38.5], atol=1e-5)
    np.testing.assert_allclose(stay(20, 40, 1.0, -1.5), [21.0, 38.5], atol=1e-5)


def test_wall_blocks_a_move_across_it_away_from_the_door():
    # From the left: the move meets face 29 at y = 40 (door is rows 14..22) and ends pushed
    # back by the mean push.
    np.testing.assert_allclose(step(27.5, 40, 2, 0), [29 - PUSH, 40], atol=1e-5)
    # Diagonal: meets face 29 at t = 2 / 2.2, y = 30 + 1.1·t = 31.
    np.testing.assert_allclose(step(27, 30, 2.2, 1.1), [29 - PUSH, 31], atol=1e-5)
    # From the right, face 31.
    np.testing.assert_allclose(step(32.5, 40, -2, 0), [31 + PUSH, 40], atol=1e-5)
    # The data generator's rule undoes the move.
    np.testing.assert_allclose(stay(27.5, 40, 2, 0), [27.5, 40])
    np.testing.assert_allclose(stay(32.5, 40, -2, 0), [32.5, 40])


def test_wall_blocks_with_noise_on_the_near_side():
    keys = jax.random.split(jax.random.key(0), 256)
    ends = jax.vmap(lambda k: tr.step(at(27.5, 40), jnp.array([2.0, 0.0]), k).position)(keys)
    ends = np.asarray(ends)
    # Pushed back |N(0, .5)| (or 0.3 if that lands on the face), along it N(0, .5).
    assert (ends[:, 0] < 29).all() and (ends[:, 0] > 29 - 2.5).all()
    assert abs(np.mean(29 - ends[:, 0]) - PUSH) < 0.06
    assert 0.4 < np.std(ends[:, 1]) < 0.6


def test_door_lets_the_dot_through():
    np.testing.assert_allclose(step(28, 18, 2.4, 0), [30.4, 18], atol=1e-5)
    np.testing.assert_allclose(step(30.4, 18, 2, 0), [32.4, 18], atol=1e-5)
    # Right to left, slightly diagonal: meets face 31 at y = 17 + 0.5·(2/2.2) = 17.45.
    np.testing.assert_allclose(step(33, 17, -2.2, 0.5), [30.8, 17.5], atol=1e-5)
    np.testing.assert_allclose(stay(28, 18, 2.4, 0), [30.4, 18], atol=1e-5)
    np.testing.assert_allclose(stay(33, 17, -2.2, 0.5), [30.8, 17.5], atol=1e-5)
    # Door edges are open (rows 14 and 22 inclusive), one past them is wall.
    np.testing.assert_allclose(step(27.5, 22, 2, 0), [29.5, 22], atol=1e-5)
    np.testing.assert_allclose(step(27.5, 23, 2, 0), [29 - PUSH, 23], atol=1e-5)


def test_wall_ends_at_the_door_edges_block_from_inside_the_doorway():
    # In the doorway at (30, 21) moving (0.5, 2): meets row 22 at t = 0.5, x = 30.25, inside
    # the wall's columns: pushed back down into the doorway.
    np.testing.assert_allclose(step(30, 21, 0.5, 2), [30.25, 22 - PUSH], atol=1e-5)
    np.testing.assert_allclose(step(30, 15, -0.5, -2), [29.75, 14 + PUSH], atol=1e-5)
    np.testing.assert_allclose(stay(30, 21, 0.5, 2), [30, 21])


def test_actions_are_clipped_to_the_bound():
    # |(3, 4)| = 5 > 2.45: scaled to (1.47, 1.96).
    np.testing.assert_allclose(step(20, 40, 3, 4), [20 + 1.47, 40 + 1.96], atol=1e-4)
    np.testing.assert_allclose(step(20, 40, 1.5, 1.9), [21.5, 41.9], atol=1e-5)  # 2.42 < 2.45
    big = planning.clip_norm(jnp.array([[10.0, 0.0], [0.0, -7.0], [1.0, 1.0]]), 2.45)
    np.testing.assert_allclose(np.linalg.norm(big, axis=-1), [2.45, 2.45, math.sqrt(2)], atol=1e-5)


def test_border_clips():
    np.testing.assert_allclose(step(5, 40, -2, 0), [4 + PUSH, 40], atol=1e-5)
    np.testing.assert_allclose(step(58.5, 40, 2, 0), [60 - PUSH, 40], atol=1e-5)
    # A move with no x component into the top border (eb_jepa's slope form gives NaN here).
    np.testing.assert_allclose(step(10, 5, 0, -2), [10, 4 + PUSH], atol=1e-5)
    # Bottom border, diagonal: meets y = 60 at t = 0.5, x = 40.25.
    np.testing.assert_allclose(step(40, 59, 0.5, 2), [40.25, 60 - PUSH], atol=1e-5)
    np.testing.assert_allclose(stay(5, 40, -2, 0), [5, 40])
    np.testing.assert_allclose(stay(40, 59, 0.5, 2), [40, 59])


def test_random_walks_stay_inside_and_change_rooms_only_through_the_door():
    settings = S

    def walk(key):
        kg, kh, ka, ks = jax.random.split(key, 4)
        start = tr.reset(kg, settings)
        heading = jax.random.uniform(kh, maxval=2 * jnp.pi)
        actions = 2.4 * tr.exploration_actions(ka, heading, 300, settings)  # long strides

        def advance(s, ak):
            s = tr.step(s, ak[0], ak[1], settings)
            return s, s.position

        _, pos = jax.lax.scan(advance, start, (actions, jax.random.split(ks, 300)))
        return jnp.concatenate([start.position[None], pos]), start.wall_x, start.door_y

    pos, wall_x, door_y = jax.jit(jax.vmap(walk))(jax.random.split(jax.random.key(1), 64))
    pos, wall_x, door_y = map(np.asarray, (pos, wall_x, door_y))
    assert pos.min() >= S.low and pos.max() <= S.high
    side = pos[..., 0] > wall_x[:, None]
    changed = np.nonzero(side[:, 1:] != side[:, :-1])
    assert len(changed[0]) > 10  # the walks do change rooms
    a, b = pos[changed[0], changed[1]], pos[changed[0], changed[1] + 1]
    t = (wall_x[changed[0]] - a[:, 0]) / (b[:, 0] - a[:, 0])
    y = a[:, 1] + t * (b[:, 1] - a[:, 1])
    lo, hi = door_y[changed[0]] - S.door_half, door_y[changed[0]] + S.door_half
    assert ((y >= lo - 1e-4) & (y <= hi + 1e-4)).all()


def test_render_puts_the_dot_where_the_position_says():
    img = np.asarray(tr.render(at(20, 40)))
    assert img.shape == (65, 65, 2) and img.dtype == np.uint8
    dot = img[..., 0]
    two_var = 2 * 1.3**2
    assert dot[40, 20] == 255
    assert dot[40, 21] == dot[40, 19] == dot[39, 20] == math.floor(255 * math.exp(-1 / two_var))
    assert dot[41, 21] == math.floor(255 * math.exp(-2 / two_var))
    assert dot[40, 26] == math.floor(255 * math.exp(-36 / two_var)) == 0
    assert np.unravel_index(dot.argmax(), dot.shape) == (40, 20)
    # Halfway between columns 20 and 21: the two are equal.
    half = np.asarray(tr.render(at(20.5, 40)))[..., 0]
    assert half[40, 20] == half[40, 21] == math.floor(255 * math.exp(-0.25 / two_var))


def test_render_puts_the_walls_where_the_geometry_says():
    walls = np.asarray(tr.render(at(20, 40)))[..., 1]
    assert set(np.unique(walls)) == {0, 255}
    assert (walls[40, 29:32] == 255).all() and walls[40, 28] == 0 and walls[40, 32] == 0
    assert (walls[14:23, 29:32] == 0).all()  # the door: rows 14..22
    assert (walls[13, 29:32] == 255).all() and (walls[23, 29:32] == 255).all()
    for line in (4, 60):
        assert (walls[line, :] == 255).all() and (walls[:, line] == 255).all()
    assert walls[3, 10] == walls[61, 10] == walls[10, 3] == walls[10, 61] == 0
    # Four border lines of 65 sharing 4 corners, and the wall's 3 columns on 65 - 9 door
    # rows - 2 border rows.
    assert (walls == 255).sum() == 4 * 65 - 4 + 3 * (65 - 9 - 2)


def test_render_at_a_coarser_size():
    # 33 px: pixel j sits at coordinate 2j and covers arena rows/columns 2j-1 and 2j.
    settings = tr.TwoRoomsSettings(image_size=33)
    state = at(20, 40)
    img = np.asarray(tr.render(state, settings))
    assert img.shape == (33, 33, 2)
    assert np.unravel_index(img[..., 0].argmax(), (33, 33)) == (20, 10)
    walls = img[..., 1]
    # Wall columns 29..31 fall in pixels 15 (29, 30) and 16 (31, 32).
    assert (walls[20, 15:17] == 255).all() and walls[20, 14] == 0 and walls[20, 17] == 0
    # Door rows 14..22: pixels 8..11 lie wholly inside it; 7 (13, 14) and 12 (23, 24) do not.
    assert (walls[8:12, 15:17] == 0).all() and (walls[7, 15:17] == 255).all()
    assert (walls[12, 15:17] == 255).all()
    # Border lines 4 and 60: pixels 2 (3, 4) and 30 (59, 60).
    assert (walls[2] == 255).all() and (walls[30] == 255).all() and walls[3, 5] == 0
    with pytest.raises(ValueError):
        tr.render(state, tr.TwoRoomsSettings(image_size=80))


def test_reset_and_step_are_vmappable_and_deterministic_per_key():
    keys = jax.random.split(jax.random.key(3), 16)
    batched = jax.vmap(tr.reset)(keys)
    for i in (0, 7, 15):
        one = tr.reset(keys[i])
        for a, b in zip(one, batched, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b[i]))
    again = jax.vmap(tr.reset)(keys)
    np.testing.assert_array_equal(np.asarray(again.position), np.asarray(batched.position))
    layouts = zip(np.asarray(batched.wall_x), np.asarray(batched.door_y), strict=True)
    assert len(set(layouts)) > 8
    actions = jnp.tile(jnp.array([[2.0, 0.3]]), (16, 1))
    step_keys = jax.random.split(jax.random.key(4), 16)
    moved = jax.vmap(tr.step)(batched, actions, step_keys)
    moved_again = jax.jit(jax.vmap(tr.step))(batched, actions, step_keys)
    np.testing.assert_allclose(np.asarray(moved.position), np.asarray(moved_again.position))
    one = tr.step(jax.tree.map(lambda x: x[5], batched), actions[5], step_keys[5])
    np.testing.assert_allclose(np.asarray(one.position), np.asarray(moved.position[5]))


def test_reset_positions_are_free():
    states = jax.vmap(tr.reset)(jax.random.split(jax.random.key(5), 2000))
    x, y = np.asarray(states.position).T
    wall, door = np.asarray(states.wall_x), np.asarray(states.door_y)
    assert x.min() >= 4 and x.max() <= 60 and y.min() >= 4 and y.max() <= 60
    in_wall = (np.abs(x - wall) < 1) & (np.abs(y - door) > 4)
    assert not in_wall.any()
    assert wall.min() == 20 and wall.max() == 44 and door.min() == 10 and door.max() == 54


def test_start_and_goal_are_in_different_rooms():
    starts, goals = jax.vmap(tr.sample_start_goal)(jax.random.split(jax.random.key(6), 2000))
    s, g = np.asarray(starts.position), np.asarray(goals.position)
    wall = np.asarray(starts.wall_x)
    np.testing.assert_array_equal(wall, np.asarray(goals.wall_x))
    s_left, g_left = s[:, 0] < wall, g[:, 0] < wall
    assert (s_left != g_left).all()
    assert 0.45 < s_left.mean() < 0.55
    pad = 2 * 1.3
    for p in (s, g):
        assert (np.abs(p[:, 0] - wall) >= 1 + pad - 1e-4).all()
        assert p.min() >= 4 + pad - 1e-4 and p.max() <= 64 - 4 - pad + 1e-4
    assert not np.asarray(jax.vmap(tr.success)(starts, goals)).any()


def test_success_threshold():
    goal = at(30, 40)
    assert bool(tr.success(at(30 + 4.4, 40), goal))
    assert not bool(tr.success(at(30 + 3.0, 40 + 3.4), goal))  # 4.53 away
    assert bool(tr.success(at(30 + 3.0, 40 + 3.3), goal))  # 4.46 away


def _bessel_i(n, x):
    f = math.factorial
    return sum((x / 2) ** (2 * k + n) / (f(k) * f(k + n)) for k in range(40))


def test_von_mises_matches_its_mean_resultant_length():
    theta = np.asarray(tr.von_mises(jax.random.key(7), 5.0, (200_000,)))
    # E[cos θ] = I1(κ)/I0(κ) = 0.8934 at κ = 5; E[sin θ] = 0.
    assert abs(np.cos(theta).mean() - _bessel_i(1, 5) / _bessel_i(0, 5)) < 0.003
    assert abs(np.sin(theta).mean()) < 0.003
    assert np.abs(theta).max() <= np.pi


def _wall_column(obs):
    """The dividing wall's centre column per trajectory, read off its first frame: the mean
    of the columns lit on more than half of the rows between the border lines."""
    walls = obs[:, 0, 5:60, :, 1] == 255
    lit = walls.mean(axis=1) > 0.5
    lit[:, [4, 60]] = False
    cols = np.arange(obs.shape[3])
    return (lit * cols).sum(-1) / lit.sum(-1)


def test_rollout_follows_the_data_rule_and_renders_every_position():
    keys = jax.random.split(jax.random.key(8), 32)
    obs, actions, pos = jax.jit(jax.vmap(lambda k: tr.rollout(k, S)))(keys)
    assert obs.shape == (32, 91, 65, 65, 2) and obs.dtype == jnp.uint8
    assert actions.shape == (32, 90, 2) and pos.shape == (32, 91, 2)
    obs, actions, pos = map(np.asarray, (obs, actions, pos))
    lengths = np.linalg.norm(actions, axis=-1)
    assert lengths.min() >= 0.2 - 1e-5 and lengths.max() <= 1.8 + 1e-5
    assert pos.min() >= 4 and pos.max() <= 60
    # Each step either adds the action or, blocked, stays; a walk whose heading drifts slowly
    # keeps pushing into a wall it met, so eb_jepa's data holds many still frames.
    moved = pos[:, 1:] - pos[:, :-1]
    added = np.abs(moved - actions).max(-1) < 1e-4
    stayed = np.abs(moved).max(-1) == 0
    assert (added | stayed).all() and added.mean() > 0.5
    # A stayed move would have left the border lines or touched the dividing wall's band.
    wall_x = _wall_column(obs)
    p, q = pos[:, :-1], pos[:, :-1] + actions
    leaves = (q <= 4).any(-1) | (q >= 60).any(-1)
    near = np.minimum(np.abs(p[..., 0] - wall_x[:, None]), np.abs(q[..., 0] - wall_x[:, None]))
    crosses = np.sign(p[..., 0] - wall_x[:, None]) != np.sign(q[..., 0] - wall_x[:, None])
    assert (leaves | (near <= 1) | crosses)[stayed].all()
    # Frames are the render of the positions; the walls never change within a trajectory.
    first, _, pos_again = jax.vmap(lambda k: tr.explore(k, S))(keys)
    np.testing.assert_allclose(np.asarray(pos_again), pos, atol=1e-4)
    np.testing.assert_allclose(_wall_column(obs), np.asarray(first.wall_x))
    dot_rows, dot_cols = np.unravel_index(obs[..., 0].reshape(32, 91, -1).argmax(-1), (65, 65))
    # Nearest pixel; at a half-integer the floor can tie the two neighbours.
    assert (np.abs(dot_cols - pos[..., 0]) <= 0.51).all()
    assert (np.abs(dot_rows - pos[..., 1]) <= 0.51).all()
    assert (obs[:, 1:, :, :, 1] == obs[:, :1, :, :, 1]).all()


def test_rollout_heading_drifts_as_the_von_mises_walk():
    keys = jax.random.split(jax.random.key(9), 256)
    _, actions, _ = jax.jit(jax.vmap(lambda k: tr.explore(k, S)))(keys)
    a = np.asarray(actions)
    heading = np.arctan2(a[..., 1], a[..., 0])
    turn = np.angle(np.exp(1j * (heading[:, 1:] - heading[:, :-1])))
    # Away from the cross-wall trajectories' junction, each turn is von Mises(0, 5):
    # E[cos] = I1(5)/I0(5). The one reversal per cross-wall trajectory barely moves the mean.
    expected = _bessel_i(1, 5) / _bessel_i(0, 5)
    assert abs(np.cos(turn).mean() - expected) < 0.02


def test_rollout_crosses_the_wall_in_about_the_cross_wall_share():
    keys = jax.random.split(jax.random.key(10), 512)
    first, _, pos = jax.jit(jax.vmap(lambda k: tr.explore(k, S)))(keys)
    side = np.asarray(pos[..., 0]) > np.asarray(first.wall_x)[:, None]
    crossed = (side != side[:, :1]).any(-1)
    # 35 % of trajectories are planned through the door; a few clamped starts miss it and a
    # few free walks find it.
    assert 0.2 < crossed.mean() < 0.5


def test_path_length_goes_through_the_door():
    def length(p, g):
        return float(tr.path_length(jnp.array(p), jnp.array(g), WALL, DOOR))

    # Same room: straight.
    assert length([20, 40], [25, 10]) == pytest.approx(math.hypot(5, 30), rel=1e-5)
    # Level with the door: straight through it, 9 + 2 (the wall's width) + 9.
    assert length([20, 18], [40, 18]) == pytest.approx(20, rel=1e-5)
    # The line to the goal moved back by the wall's width, (20, 10) → (38, 26), meets face 29
    # at y = 18, inside the door: 2·hypot(9, 8) + 2.
    assert length([20, 10], [40, 26]) == pytest.approx(2 * math.hypot(9, 8) + 2, rel=1e-5)
    # Both below the door (rows grow downwards): to its edge row 22 and back down.
    assert length([20, 40], [40, 40]) == pytest.approx(2 * math.hypot(9, 18) + 2, rel=1e-5)
    # Symmetric from the right.
    assert length([40, 40], [20, 40]) == pytest.approx(2 * math.hypot(9, 18) + 2, rel=1e-5)
    assert length([40, 26], [20, 10]) == pytest.approx(2 * math.hypot(9, 8) + 2, rel=1e-5)


def test_episode_figure_draws_one_panel_per_episode(tmp_path):
    from PIL import Image

    from jepa.envs import two_rooms_planning

    starts, goals = jax.vmap(tr.sample_start_goal)(jax.random.split(jax.random.key(0), 5))
    positions = jnp.stack([starts.position, goals.position], axis=1)  # [5, 2, 2]
    path = two_rooms_planning.plot_episodes(
        str(tmp_path / "episodes.png"),
        positions,
        goals,
        planned=positions,
        success=np.array([True, False, True, False, True]),
        columns=3,
    )
    width, height = Image.open(path).size
    # 3 columns x 2 rows of 2.6-inch panels at 110 dpi
    assert (width, height) == (round(3 * 2.6 * 110), round(2 * 2.6 * 110))


def test_wall_bump_trajectories_press_against_the_wall_away_from_the_door():
    settings = tr.TwoRoomsSettings(image_size=17, cross_wall_rate=0.0, wall_bump_rate=1.0)
    first, _, positions = jax.vmap(lambda k: tr.explore(k, settings, 40))(
        jax.random.split(jax.random.key(5), 128)
    )
    pos, wall_x, door_y = (np.asarray(x) for x in (positions, first.wall_x, first.door_y))
    # to the nearer face, wall_x ± wall_width // 2
    gap = np.abs(pos[..., 0] - wall_x[:, None]) - settings.wall_width // 2
    off_door = np.abs(pos[..., 1] - door_y[:, None]) > settings.door_half
    # Every trajectory reaches the wall (within a step) at a row of the wall, not the door's,
    # and none is ever inside the wall there.
    assert ((gap < 1.0) & off_door).any(axis=1).all()
    assert not ((gap < 0) & off_door).any()
