"""Two Rooms: a dot in a square arena split by a wall with one door (PLDM's benchmark, as
eb_jepa's ``eb_jepa/datasets/two_rooms`` defines it), pure JAX and vmappable.

Geometry is in the units of eb_jepa's 65-pixel image: pixel ``j`` of a 65-px render sits at
coordinate ``j``. The border walls are the lines ``x, y = border - 1`` and ``arena - border``
(4 and 60); the dividing wall is vertical, ``wall_width`` wide around column ``wall_x``; its
door spans rows ``door_y ± door_half``. In the random-wall setting ``wall_x`` is an integer in
``[wall_margin, arena - wall_margin)`` and ``door_y`` one in ``[door_margin, arena -
door_margin)``, both uniform.

Two collision rules, because eb_jepa itself has two:
  * ``"bounce"`` (its evaluation env, ``DotWall``): a move that meets a wall ends where it meets
    it, pushed back off the wall by ``|N(0, 0.5)|`` (and ``N(0, 0.5)`` along it), then kept
    0.3 inside the room. Without a key the push is its mean, ``0.5·sqrt(2/π)``, and nothing
    along the wall: the deterministic model a planner rolls out.
  * ``"stay"`` (its data generator, ``WallDataset.generate_transitions``): a move that meets a
    wall is undone.

What we change, and why:
  * Actions are clipped to the norm ``max_action_norm`` (2.45, eb_jepa's action-space bound
    and its CEM's clip); eb_jepa's env steps any action it is given.
  * Intersections are computed parametrically; eb_jepa's slope form divides by zero on a move
    with no x component and returns NaN when such a move meets the top or bottom border.
  * ``render`` takes any ``image_size`` up to the arena's: pixel ``j`` sits at coordinate
    ``j·(arena-1)/(size-1)``; the dot is sampled there, the walls are the arena-size image
    max-pooled over each pixel's footprint (a wall never vanishes at a coarser size). At 65 px
    this is eb_jepa's image exactly; channels are last (dot, walls).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jepa import planning


@dataclasses.dataclass(frozen=True)
class TwoRoomsSettings:
    """eb_jepa's random-wall setting (``data_config.yaml``, ``eval.yaml``, ``env.py``)."""

    arena: int = 65  # img_size: geometry is in these pixel units
    image_size: int = 65  # what ``render`` draws; geometry does not change with it
    border: int = 5  # border_wall_loc
    wall_width: int = 3
    door_half: int = 4  # door_space
    wall_margin: int = 20  # wall_padding
    door_margin: int = 10  # door_padding
    fixed_wall: tuple[int, int] | None = None  # (wall_x, door_y); eb_jepa's fixed wall: (32, 18)
    dot_std: float = 1.3
    max_action_norm: float = 2.45
    bump_noise_std: float = 0.5
    collision: str = "bounce"  # what ``step`` does at a wall
    # Exploratory data policy (DotDataset.generate_actions, WallDataset).
    data_collision: str = "stay"  # what ``rollout`` does at a wall
    step_mean: float = 1.0
    step_std: float = 0.4
    step_min: float = 0.2
    step_max: float = 1.8
    angle_noise: float = 0.2  # the heading drifts by von Mises(0, 1 / angle_noise) per step
    cross_wall_rate: float = 0.35
    # Share of trajectories planned as the crossing ones but through a point of the wall away
    # from the door: they press against it (eb_jepa's wall_bump_rate, 0 there too).
    wall_bump_rate: float = 0.0
    door_point_std: float = 1.4  # spread of the cross-wall trajectories' door point about door_y
    trajectory_steps: int = 90  # n_steps - 1: actions per generated trajectory
    # Evaluation task.
    episode_steps: int = 200  # n_allowed_steps
    success_threshold: float = 4.5

    @property
    def low(self) -> float:
        """The top and left border lines."""
        return float(self.border - 1)

    @property
    def high(self) -> float:
        """The bottom and right border lines."""
        return float(self.arena - self.border)


DEFAULT = TwoRoomsSettings()


class TwoRoomsState(NamedTuple):
    position: jax.Array  # [2] float32 (x, y)
    wall_x: jax.Array  # [] float32, centre column of the dividing wall
    door_y: jax.Array  # [] float32, centre row of its door


# ---------------------------------------------------------------------------------------------
# Sampling tasks
# ---------------------------------------------------------------------------------------------


def sample_geometry(key: jax.Array, settings: TwoRoomsSettings = DEFAULT):
    """(wall_x, door_y) as float32 scalars: the fixed wall, or uniform integers."""
    if settings.fixed_wall is not None:
        return tuple(jnp.float32(v) for v in settings.fixed_wall)
    kw, kd = jax.random.split(key)
    wall_x = jax.random.randint(kw, (), settings.wall_margin, settings.arena - settings.wall_margin)
    door_y = jax.random.randint(kd, (), settings.door_margin, settings.arena - settings.door_margin)
    return wall_x.astype(jnp.float32), door_y.astype(jnp.float32)


def _wall_faces(wall_x, settings):
    return wall_x - settings.wall_width // 2, wall_x + settings.wall_width // 2


def _door_edges(door_y, settings):
    return door_y - settings.door_half, door_y + settings.door_half


def free_position(key, wall_x, door_y, settings: TwoRoomsSettings = DEFAULT) -> jax.Array:
    """eb_jepa's data start (``DotDataset.generate_state``): uniform in the arena between the
    border lines; a point inside the wall is moved, keeping its y, to a uniform x in the left
    or the right room (even odds)."""
    s = settings
    kp, ks, kl, kr = jax.random.split(key, 4)
    p = jax.random.uniform(kp, (2,), minval=s.low, maxval=s.arena - 1 - s.low)
    left, right = _wall_faces(wall_x, s)
    lo, hi = _door_edges(door_y, s)
    inside = (p[0] >= left) & (p[0] <= right) & ((p[1] < lo) | (p[1] > hi))
    x_left = jax.random.uniform(kl, minval=s.low, maxval=left)
    x_right = jax.random.uniform(kr, minval=right, maxval=s.high)
    x = jnp.where(inside, jnp.where(jax.random.bernoulli(ks), x_left, x_right), p[0])
    return jnp.stack([x, p[1]])


def reset(key: jax.Array, settings: TwoRoomsSettings = DEFAULT) -> TwoRoomsState:
    """A wall layout and a free starting position."""
    kg, kp = jax.random.split(key)
    wall_x, door_y = sample_geometry(kg, settings)
    return TwoRoomsState(free_position(kp, wall_x, door_y, settings), wall_x, door_y)


def sample_start_goal(key: jax.Array, settings: TwoRoomsSettings = DEFAULT):
    """An evaluation task (``DotWall._generate_start_and_target``, level "normal"): a layout,
    then start and goal in different rooms, each 2·dot_std clear of the walls and of the
    border lines; the start is in the left room half of the time. Returns (start, goal)
    states sharing the layout."""
    s = settings
    kg, kx, kxg, ky, kyg, kswap = jax.random.split(key, 6)
    wall_x, door_y = sample_geometry(kg, s)
    left, right = _wall_faces(wall_x, s)
    pad = 2 * s.dot_std
    near, far = s.low + pad, s.arena - 1 - (s.low + pad)
    x_left = jax.random.uniform(kx, minval=near, maxval=left - pad)
    x_right = jax.random.uniform(kxg, minval=right + pad, maxval=far)
    y_a = jax.random.uniform(ky, minval=near, maxval=far)
    y_b = jax.random.uniform(kyg, minval=near, maxval=far)
    a, b = jnp.stack([x_left, y_a]), jnp.stack([x_right, y_b])
    swap = jax.random.bernoulli(kswap)
    start, goal = jnp.where(swap, b, a), jnp.where(swap, a, b)
    return TwoRoomsState(start, wall_x, door_y), TwoRoomsState(goal, wall_x, door_y)


def success(state: TwoRoomsState, goal: TwoRoomsState, settings: TwoRoomsSettings = DEFAULT):
    """eb_jepa's ``eval_state``: within ``success_threshold`` (4.5) of the goal position."""
    return distance(state, goal) < settings.success_threshold


def distance(state: TwoRoomsState, goal: TwoRoomsState) -> jax.Array:
    return jnp.linalg.norm(state.position - goal.position)


def right_room(position: jax.Array, wall_x: jax.Array) -> jax.Array:
    """Whether ``position`` [..., 2] lies right of the dividing wall at ``wall_x`` [...]."""
    return position[..., 0] > wall_x


def path_length(position, goal, wall_x, door_y, settings: TwoRoomsSettings = DEFAULT):
    """The shortest path from ``position`` to ``goal`` ([2] each) that keeps out of the
    dividing wall: straight within a room; otherwise straight to a point of the door on the
    near face, across the wall's width, straight on. Over the door rows the length is convex,
    so its minimum is the unconstrained one (the straight line to the goal moved back by the
    wall's width) clipped to the door, or a door edge."""
    near, far = _wall_faces(wall_x, settings)
    right_side = right_room(position, wall_x)
    near, far = jnp.where(right_side, far, near), jnp.where(right_side, near, far)
    same_room = right_side == right_room(goal, wall_x)
    lo, hi = _door_edges(door_y, settings)
    shifted_x = goal[0] - (far - near)
    dx = jnp.where(shifted_x == position[0], 1e-6, shifted_x - position[0])
    y_line = position[1] + (near - position[0]) * (goal[1] - position[1]) / dx

    def through(y):
        return (
            jnp.hypot(near - position[0], y - position[1])
            + jnp.abs(far - near)
            + jnp.hypot(goal[0] - far, goal[1] - y)
        )

    via_door = jnp.minimum(jnp.minimum(through(jnp.clip(y_line, lo, hi)), through(lo)), through(hi))
    return jnp.where(same_room, jnp.linalg.norm(goal - position), via_door)


# ---------------------------------------------------------------------------------------------
# Dynamics
# ---------------------------------------------------------------------------------------------


def _crosses(a0, a1, line):
    """eb_jepa's test: the segment's ends are on opposite sides of ``line`` or touch it."""
    return jnp.sign(a0 - line) * jnp.sign(a1 - line) <= 0


def _meet(p, d, axis, line):
    """Where the segment p → p + d meets ``coordinate[axis] = line`` (p itself if d has no
    component along ``axis``, which only arises when p is on the line)."""
    step = jnp.where(d[axis] == 0, 1.0, d[axis])
    point = p + ((line - p[axis]) / step) * d
    return point.at[axis].set(line)


def _bounce(p, d, wall_x, door_y, noise, s: TwoRoomsSettings):
    """eb_jepa's ``check_wall_intersect`` applied: where p → p + d ends. ``noise`` is a [2]
    standard normal draw, or None for the mean push."""
    q = p + d
    left_face, right_face = _wall_faces(wall_x, s)
    lo, hi = _door_edges(door_y, s)
    if noise is None:
        along, off = 0.0, s.bump_noise_std * math.sqrt(2 / math.pi)
    else:
        along, off = s.bump_noise_std * noise[0], s.bump_noise_std * jnp.abs(noise[1])

    # The wall's ends at the door edges, met from inside the doorway: pushed back into it.
    hits_hi = (d[1] > 0) & (p[1] < hi) & (q[1] > hi)
    x_hi = _meet(p, d, 1, hi)[0]
    hits_hi &= (left_face <= x_hi) & (x_hi <= right_face)
    hits_lo = (d[1] < 0) & (p[1] > lo) & (q[1] < lo)
    x_lo = _meet(p, d, 1, lo)[0]
    hits_lo &= (left_face <= x_lo) & (x_lo <= right_face)
    at_hi = jnp.stack([x_hi + along, hi - off])
    at_lo = jnp.stack([x_lo + along, lo + off])

    # The room's walls: the border on the far side, the dividing wall's near face (with the
    # door) on the other.
    wall_right = wall_x > p[0]
    x_min = jnp.where(wall_right, s.low, right_face)
    x_max = jnp.where(wall_right, left_face, s.high)

    def vertical(line, has_door):
        point = _meet(p, d, 0, line)
        in_door = (point[1] >= lo) & (point[1] <= hi)
        return _crosses(p[0], q[0], line) & ~(has_door & in_door), point

    hit_min, at_min = vertical(x_min, ~wall_right)
    hit_max, at_max = vertical(x_max, wall_right)
    hit_v = hit_min | hit_max
    at_v = jnp.where(hit_min, at_min, at_max)
    hit_top, at_top = _crosses(p[1], q[1], s.low), _meet(p, d, 1, s.low)
    hit_bot, at_bot = _crosses(p[1], q[1], s.high), _meet(p, d, 1, s.high)
    hit_h = hit_top | hit_bot
    at_h = jnp.where(hit_top, at_top, at_bot)

    # The wall met first, pushed off back towards p.
    closer_v = jnp.linalg.norm(p - at_v) < jnp.linalg.norm(p - at_h)
    use_v = hit_v & (~hit_h | closer_v)
    push_v = jnp.stack([off * jnp.sign(p[0] - at_v[0]), along])
    push_h = jnp.stack([along, off * jnp.sign(p[1] - at_h[1])])
    r = jnp.where(use_v, at_v + push_v, at_h + push_h)

    def inside(v, v_min, v_max):
        v = jnp.clip(v, v_min, v_max)
        v = jnp.where(v <= v_min, v_min + 0.3, v)
        return jnp.where(v >= v_max, v_max - 0.3, v)

    bounced = jnp.stack([inside(r[0], x_min, x_max), inside(r[1], s.low, s.high)])

    out = jnp.where(hit_v | hit_h, bounced, q)
    out = jnp.where(hits_lo, at_lo, out)
    return jnp.where(hits_hi, at_hi, out)


def _segments_cross(a0, a1, b0, b1):
    """Strict proper intersection of segments a0–a1 and b0–b1 (eb_jepa's segments_intersect)."""

    def cross(v, w):
        return v[0] * w[1] - v[1] * w[0]

    da, db = a1 - a0, b1 - b0
    return (cross(da, b0 - a0) * cross(da, b1 - a0) < 0) & (
        cross(db, a0 - b0) * cross(db, a1 - b0) < 0
    )


def _stay(p, d, wall_x, door_y, s: TwoRoomsSettings):
    """eb_jepa's data-generator rule (``generate_transitions``): p + d, or p where the move
    touches a border line, runs into the wall's ends at the door edges, or enters or crosses
    the wall's band outside the door."""
    q = p + d
    left_face, right_face = _wall_faces(wall_x, s)
    lo, hi = _door_edges(door_y, s)
    border = jnp.any(_crosses(p, q, s.low) | _crosses(p, q, s.high))

    def in_band(x):
        return (x >= left_face) & (x <= right_face)

    across = ((p[0] <= right_face) != (q[0] <= right_face)) & (
        (p[0] >= left_face) != (q[0] >= left_face)
    )
    meets_wall = (in_band(p[0]) != in_band(q[0])) | across
    end_hi = _segments_cross(p, q, jnp.stack([left_face, hi]), jnp.stack([right_face, hi]))
    end_lo = _segments_cross(p, q, jnp.stack([left_face, lo]), jnp.stack([right_face, lo]))
    ends = (end_hi & (d[1] > 0)) | (end_lo & (d[1] < 0))

    def through_door(face):
        strictly = jnp.sign(face - p[0]) * jnp.sign(face - q[0]) < 0
        y = _meet(p, d, 0, face)[1]
        return ~strictly | ((y >= lo) & (y <= hi))

    passes = through_door(left_face) & through_door(right_face)
    blocked = border | ends | (meets_wall & ~passes)
    return jnp.where(blocked, p, q)


def move(state, action, key=None, settings: TwoRoomsSettings = DEFAULT, collision=None):
    """``state`` after the (unclipped) displacement ``action`` under ``collision`` ("bounce"
    or "stay"; the settings' ``collision`` by default)."""
    rule = settings.collision if collision is None else collision
    p, d = state.position, action.astype(jnp.float32)
    if rule == "bounce":
        noise = None if key is None else jax.random.normal(key, (2,))
        new = _bounce(p, d, state.wall_x, state.door_y, noise, settings)
    elif rule == "stay":
        new = _stay(p, d, state.wall_x, state.door_y, settings)
    else:
        raise ValueError(f"collision must be 'bounce' or 'stay', got {rule!r}")
    return state._replace(position=new)


def step(state, action, key=None, settings: TwoRoomsSettings = DEFAULT) -> TwoRoomsState:
    """One environment step: the action clipped to ``max_action_norm``, then moved under the
    settings' collision rule (its noise drawn from ``key``; the mean push without one)."""
    return move(state, planning.clip_norm(action, settings.max_action_norm), key, settings)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _pixel_centres(settings):
    size = settings.image_size
    if not 2 <= size <= settings.arena:
        raise ValueError(f"image_size must be in [2, arena={settings.arena}], got {size}")
    spacing = (settings.arena - 1) / (size - 1)
    return jnp.arange(size, dtype=jnp.float32) * spacing, spacing


def render_walls(wall_x, door_y, settings: TwoRoomsSettings = DEFAULT) -> jax.Array:
    """uint8 [S, S]: 255 on the border lines and on the dividing wall outside its door; at
    S < arena, the max-pool of the arena-size image over each pixel's footprint."""
    s = settings
    c, spacing = _pixel_centres(s)
    # The arena-grid rows (columns) each pixel covers: [first, last], the integers in
    # [c - spacing/2, c + spacing/2); the small slack keeps float error off the edges.
    first = jnp.ceil(c - spacing / 2 - 1e-4)
    last = jnp.ceil(c + spacing / 2 - 1e-4) - 1
    left_face, right_face = _wall_faces(wall_x, s)
    lo, hi = _door_edges(door_y, s)

    def covers(a, b):
        return jnp.maximum(first, a) <= jnp.minimum(last, b)

    wall_cols = covers(left_face, right_face)
    outside_door = (first < lo) | (last > hi)
    border = covers(s.low, s.low) | covers(s.high, s.high)
    walls = (wall_cols[None, :] & outside_door[:, None]) | border[None, :] | border[:, None]
    return walls.astype(jnp.uint8) * 255


def render(state: TwoRoomsState, settings: TwoRoomsSettings = DEFAULT) -> jax.Array:
    """uint8 [S, S, 2] (eb_jepa's two channels, channels last): the dot,
    ``floor(255·exp(-r²/(2·dot_std²)))`` with rows y and columns x, then the walls."""
    c, _ = _pixel_centres(settings)
    r2 = (c[None, :] - state.position[0]) ** 2 + (c[:, None] - state.position[1]) ** 2
    dot = jnp.floor(jnp.clip(jnp.exp(-r2 / (2 * settings.dot_std**2)) * 255.0, 0, 255))
    walls = render_walls(state.wall_x, state.door_y, settings)
    return jnp.stack([dot.astype(jnp.uint8), walls], axis=-1)


# ---------------------------------------------------------------------------------------------
# The exploratory data policy
# ---------------------------------------------------------------------------------------------


def von_mises(key: jax.Array, concentration: float, shape=(), proposals: int = 16):
    """Von Mises(0, concentration) draws by Best & Fisher's rejection sampler, with a fixed
    number of proposals so the shape is static: the first accepted one is kept (at
    concentration 5 a proposal is accepted nine times in ten, so all 16 failing has
    probability under 1e-15)."""
    k = float(concentration)
    tau = 1 + math.sqrt(1 + 4 * k * k)
    rho = (tau - math.sqrt(2 * tau)) / (2 * k)
    r = (1 + rho * rho) / (2 * rho)
    u1, u2, u3 = jax.random.uniform(key, (3, proposals, *shape))
    z = jnp.cos(jnp.pi * u1)
    f = (1 + r * z) / (r + z)
    c = k * (r - f)
    accept = (c * (2 - c) - u2 > 0) | (jnp.log(c / u2) + 1 - c >= 0)
    theta = jnp.sign(u3 - 0.5) * jnp.arccos(jnp.clip(f, -1, 1))
    first = jnp.argmax(accept, axis=0)
    return jnp.take_along_axis(theta, first[None], axis=0)[0]


def exploration_actions(key, heading, steps: int, settings: TwoRoomsSettings = DEFAULT):
    """[steps, 2] (``DotDataset.generate_actions``): the first action points along
    ``heading``; each next heading drifts by a von Mises step; lengths are normal(step_mean,
    step_std) truncated to [step_min, step_max]."""
    s = settings
    kd, kl = jax.random.split(key)
    drift = von_mises(kd, 1.0 / s.angle_noise, (steps - 1,))
    angles = heading + jnp.concatenate([jnp.zeros(1), jnp.cumsum(drift)])
    lower, upper = (s.step_min - s.step_mean) / s.step_std, (s.step_max - s.step_mean) / s.step_std
    lengths = s.step_mean + s.step_std * jax.random.truncated_normal(kl, lower, upper, (steps,))
    return jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1) * lengths[:, None]


def _cross_wall_plan(key, wall_x, door_y, steps: int, s: TwoRoomsSettings, y=None):
    """A start and actions that pass the door (``generate_cross_wall_state_and_actions``):
    a door point, a step k at which the trajectory reaches it, a walk leaving it to the left
    (reversed and negated: the approach) and one leaving it to the right; mirrored half the
    time; the start then the door point minus the approach, clamped inside the border. ``y``
    given: the plan passes the wall at that row instead of the door's."""
    kx, ky, kk, ka, kl, kr, kf = jax.random.split(key, 7)
    left_face, right_face = _wall_faces(wall_x, s)
    x = jax.random.uniform(kx, minval=left_face, maxval=right_face)
    if y is None:
        bound = s.door_half / s.door_point_std
        y = door_y + s.door_point_std * jax.random.truncated_normal(ky, -bound, bound)
    k = jax.random.randint(kk, (), 1, steps + 1)
    heading = jnp.pi + (jax.random.uniform(ka) - 0.5) * jnp.pi / 2
    away_left = exploration_actions(kl, heading, steps, s)
    away_right = exploration_actions(kr, heading + jnp.pi, steps, s)
    i = jnp.arange(steps)
    approach = -away_left[jnp.clip(k - 1 - i, 0, steps - 1)]
    onward = away_right[jnp.clip(i - k + 1, 0, steps - 1)]
    forward = jnp.where((i < k)[:, None], approach, onward)
    flip = jax.random.bernoulli(kf)
    actions = jnp.where(flip, -forward[::-1], forward)
    before = jnp.where(flip, steps + 1 - k, k)
    start = jnp.stack([x, y]) - jnp.sum(jnp.where((i < before)[:, None], actions, 0.0), axis=0)
    return jnp.clip(start, s.low + 0.01, s.high - 0.01), actions


def explore(key: jax.Array, settings: TwoRoomsSettings = DEFAULT, steps: int | None = None):
    """One trajectory of eb_jepa's exploratory data policy, unrendered: a layout, then with
    probability ``cross_wall_rate`` a door-crossing plan, with ``wall_bump_rate`` one through
    the wall away from the door, otherwise a free start and a random-heading walk; moved under
    ``data_collision``. Returns (first state, actions float32 [T, 2] as commanded, positions
    float32 [T+1, 2]); T defaults to ``trajectory_steps``."""
    s = settings
    steps = s.trajectory_steps if steps is None else steps
    kg, kp, kh, kw, kc, kuse, kmove = jax.random.split(key, 7)
    wall_x, door_y = sample_geometry(kg, s)
    start = free_position(kp, wall_x, door_y, s)
    heading = jax.random.uniform(kh, maxval=2 * jnp.pi)
    actions = exploration_actions(kw, heading, steps, s)
    cross_start, cross_actions = _cross_wall_plan(kc, wall_x, door_y, steps, s)
    use = jax.random.uniform(kuse)
    crossing = use < s.cross_wall_rate
    first = TwoRoomsState(jnp.where(crossing, cross_start, start), wall_x, door_y)
    actions = jnp.where(crossing, cross_actions, actions)
    if s.wall_bump_rate:
        kb, ky = jax.random.split(jax.random.fold_in(key, 1))
        lo, hi = _door_edges(door_y, s)
        # A row of the wall at least one dot width off the door, uniform.
        below, above = lo - 2 * s.dot_std - s.low, s.high - hi - 2 * s.dot_std
        u = jax.random.uniform(ky, maxval=below + above)
        row = jnp.where(u < below, s.low + u, hi + 2 * s.dot_std + u - below)
        bump_start, bump_actions = _cross_wall_plan(kb, wall_x, door_y, steps, s, y=row)
        # A start inside the wall (a short approach) is moved out to the face on its side.
        left, right = _wall_faces(wall_x, s)
        x = bump_start[0]
        outside = jnp.where(x < wall_x, left - 0.5, right + 0.5)
        x = jnp.where((x >= left - 0.5) & (x <= right + 0.5), outside, x)
        bump_start = bump_start.at[0].set(x)
        bumping = (use >= s.cross_wall_rate) & (use < s.cross_wall_rate + s.wall_bump_rate)
        first = first._replace(position=jnp.where(bumping, bump_start, first.position))
        actions = jnp.where(bumping, bump_actions, actions)
    data_step = functools.partial(move, settings=s, collision=s.data_collision)
    _, later = planning.execute(data_step, first, actions, kmove)
    return first, actions, jnp.concatenate([first.position[None], later.position], axis=0)


def rollout(key: jax.Array, settings: TwoRoomsSettings = DEFAULT, steps: int | None = None):
    """``explore``'s trajectory rendered: (observations uint8 [T+1, S, S, 2], actions float32
    [T, 2], positions float32 [T+1, 2]). Jit and vmap it over keys for a batch."""
    first, actions, positions = explore(key, settings, steps)
    observations = jax.vmap(lambda p: render(first._replace(position=p), settings))(positions)
    return observations, actions, positions
