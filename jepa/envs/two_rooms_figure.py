"""A PNG of Two Rooms episodes: per episode the walls and door, the start, the goal, the
executed path and, when given, the path the first plan predicted."""

from __future__ import annotations

import numpy as np

from jepa.envs import two_rooms as tr
from jepa.plots import pyplot, save


def plot_episodes(
    path: str,
    positions,
    goals,
    *,
    planned=None,
    success=None,
    settings: tr.TwoRoomsSettings = tr.DEFAULT,
    columns: int = 4,
) -> str:
    """``positions`` [E, T+1, 2] executed; ``goals`` a goal state batched over E; ``planned``
    [E, H, 2] (e.g. the first plan's predicted embeddings read by a position probe);
    ``success`` [E] bool titles each panel. Coordinates are the arena's (``settings.arena``
    pixels), drawn over the arena-size wall image."""
    plt = pyplot()
    positions = np.asarray(positions)
    episodes = positions.shape[0]
    rows = -(-episodes // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), squeeze=False)
    full = tr.TwoRoomsSettings(**{**settings.__dict__, "image_size": settings.arena})
    for e, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if e >= episodes:
            continue
        wall_x, door_y = float(goals.wall_x[e]), float(goals.door_y[e])
        walls = np.asarray(tr.render_walls(wall_x, door_y, full))
        ax.imshow(walls, cmap="Greys", vmin=0, vmax=510, origin="upper")
        p = positions[e]
        ax.plot(p[:, 0], p[:, 1], "-", color="tab:blue", lw=1.2, label="executed")
        if planned is not None:
            q = np.asarray(planned[e])
            ax.plot(q[:, 0], q[:, 1], "--", color="tab:orange", lw=1.0, label="first plan")
        ax.plot(*p[0], "o", color="tab:blue", ms=5)
        g = np.asarray(goals.position[e])
        ax.plot(*g, "*", color="tab:red", ms=10, label="goal")
        if success is not None:
            ax.set_title("reached" if bool(success[e]) else "missed", fontsize=9)
    axes.ravel()[0].legend(loc="lower left", fontsize=6, framealpha=0.8)
    return save(fig, path)
