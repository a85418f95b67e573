"""An action-conditioned world model for small control images (Two Rooms): an encoder from an
image to an embedding vector, a predictor that steps an embedding by an action, and an
inverse-dynamics head that recovers the action from two consecutive embeddings.

The modules are sized for planning on a CPU: a planner unrolls the predictor for every
candidate action sequence at every step (eb_jepa's MPPI: 200 candidates x 90 steps x 20
iterations per executed action), so the predictor is a small residual MLP on a vector, and the
encoder only runs twice per plan (the current image and the goal image).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jepa.data.normalization import normalize_images


class ConvEncoder(nn.Module):
    """Image [..., S, S, C] (uint8 or float in [0, 1]) -> embedding [..., embed_dim].

    A stack of stride-2 3x3 convolutions, each followed by a residual 3x3 block (the Impala
    pattern without its max-pool), flattened, then a linear map. The flatten keeps where the
    dot is: a global pool would throw position away.

    ``input_mean`` and ``input_std`` standardize each channel (eb_jepa normalizes its images
    the same way). They matter here: the dot covers a few pixels and the walls many, so in
    [0, 1] the dot channel's spread is a tenth of the walls' and the encoder first learns the
    walls, which already satisfy the variance term, and leaves the dot out."""

    features: Sequence[int] = (16, 32, 32)
    embed_dim: int = 32
    input_mean: Sequence[float] | None = None
    input_std: Sequence[float] | None = None

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        zeros, ones = (0.0,) * images.shape[-1], (1.0,) * images.shape[-1]
        x = normalize_images(images, self.input_mean or zeros, self.input_std or ones)
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        for i, f in enumerate(self.features):
            x = nn.Conv(f, (3, 3), strides=(2, 2), padding="SAME", name=f"down{i}")(x)
            x = x + nn.Conv(f, (3, 3), padding="SAME", name=f"res{i}")(nn.relu(x))
            x = nn.relu(x)
        x = nn.Dense(self.embed_dim, name="out")(x.reshape(x.shape[0], -1))
        return x.reshape(*lead, self.embed_dim)


class ResidualPredictor(nn.Module):
    """(s_t [..., D], a_t [..., A]) -> s_{t+1} [..., D] = s_t + MLP([s_t, a_t]).

    The residual form makes "nothing moves" the starting point: with a small action the next
    embedding is close to the current one, which is what the time-similarity term asks too."""

    hidden: int = 128
    depth: int = 2

    @nn.compact
    def __call__(self, state: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([state, action.astype(state.dtype)], axis=-1)
        for i in range(self.depth):
            x = nn.gelu(nn.Dense(self.hidden, name=f"hidden{i}")(x))
        return state + nn.Dense(state.shape[-1], kernel_init=nn.initializers.zeros, name="out")(x)


class InverseDynamics(nn.Module):
    """(s_t, s_{t+1}) [..., D] each -> the action a_t [..., action_dim] between them."""

    action_dim: int = 2
    hidden: int = 128

    @nn.compact
    def __call__(self, state: jax.Array, next_state: jax.Array) -> jax.Array:
        x = jnp.concatenate([state, next_state], axis=-1)
        x = nn.gelu(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(self.action_dim, name="out")(x)


class WorldModel(nn.Module):
    """The three parts under one parameter tree, each reachable with ``apply(...,
    method=...)``: ``encode``, ``predict``, ``inverse``. ``__call__`` touches all three so
    ``init`` builds every parameter."""

    embed_dim: int = 32
    encoder_features: Sequence[int] = (16, 32, 32)
    input_mean: Sequence[float] | None = None
    input_std: Sequence[float] | None = None
    predictor_hidden: int = 128
    predictor_depth: int = 2
    idm_hidden: int = 128
    action_dim: int = 2

    def setup(self):
        self.encoder = ConvEncoder(
            self.encoder_features, self.embed_dim, self.input_mean, self.input_std
        )
        self.predictor = ResidualPredictor(self.predictor_hidden, self.predictor_depth)
        self.idm = InverseDynamics(self.action_dim, self.idm_hidden)

    def encode(self, images):
        return self.encoder(images)

    def predict(self, state, action):
        return self.predictor(state, action)

    def inverse(self, state, next_state):
        return self.idm(state, next_state)

    def __call__(self, images, actions):
        z = self.encode(images)
        nxt = self.predict(z, actions)
        return nxt, self.inverse(z, nxt)
