"""The latent variable z of an energy-based JEPA: E(x, y, z) = D(s_y, Pred(s_x, z)), and the
free energy F(x, y) = min_z E(x, y, z) (LeCun, 2022, sections 4.4-4.5).

When the future is uncertain (a digit bouncing off a wall in a random new direction) a
predictor without z can only predict the average of the possible s_y, and every real outcome
pays the distance to that average. With z, each outcome can be reached by some z, so the energy
of every compatible y is low — provided z cannot simply copy y, which is what the information
limits below are for:

- ``discrete``: K learned codes; training takes the best code per sample (winner-take-all,
  i.e. the energy is min over K), and a usage term KL(mean soft assignment || uniform) keeps all
  K codes in play (otherwise one code wins early and the others never learn). z carries at most
  log K nats.
- ``continuous``: an amortized inference network q(z | s_x, s_y) proposes z during training;
  its information is limited by KL(q || N(0, I)) (``kl``) or by an L2/L1 penalty on the mean
  with fixed Gaussian noise added (``l2``/``l1``: a noisy channel of bounded capacity). At
  inference z comes from the prior (``sample_predictions``) or from gradient descent on E
  (``free_energy``: a fixed number of jitted steps from z = 0).

Everything here is pure over a params pytree ``{"model": ..., "latent": ...}``; the encoders and
predictor are passed in as functions, so the same machinery serves images and video.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

KINDS = ("none", "discrete", "continuous")
PENALTIES = ("kl", "l2", "l1")


class DiscreteCodes(nn.Module):
    """K learned code vectors, added to the predictor's queries as z's embedding."""

    num_codes: int
    width: int

    @nn.compact
    def __call__(self) -> jax.Array:
        # Unit-scale codes: at the 0.02 of the other inits they would start nearly identical
        # and winner-take-all could not tell them apart.
        init = nn.initializers.normal(1.0 / self.width**0.5)
        return self.param("codes", init, (self.num_codes, self.width))


class InferenceNet(nn.Module):
    """q(z | s_x, s_y) = N(mu, diag(exp(logvar))) from pooled s_x and s_y; plus the map from
    z to the predictor's width."""

    dim: int
    hidden: int
    width: int

    def setup(self):
        self.fc = nn.Dense(self.hidden, name="fc")
        self.mu = nn.Dense(self.dim, name="mu")
        # Start with small variances: a wide posterior at init drowns the signal in noise.
        self.logvar = nn.Dense(self.dim, bias_init=nn.initializers.constant(-4.0), name="logvar")
        self.embed = nn.Dense(self.width, name="embed")

    def __call__(self, sx: jax.Array, sy: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nn.gelu(self.fc(jnp.concatenate([sx, sy], axis=-1)), approximate=False)
        return self.mu(h), self.logvar(h)

    def initialize(self, sx: jax.Array, sy: jax.Array):
        """Touches every submodule, so ``init`` creates all parameters."""
        mu, _ = self(sx, sy)
        return self.embed(mu)


def code_usage_penalty(energies: jax.Array, temperature: float) -> jax.Array:
    """KL(mean_b softmax(-E_b / T) || uniform) for energies [batch, K]: 0 when the batch uses
    every code equally, log K when it uses one."""
    p = jax.nn.softmax(-energies / temperature, axis=-1).mean(0)
    k = energies.shape[-1]
    return jnp.sum(p * (jnp.log(p + 1e-12) + jnp.log(k)))


def code_perplexity(energies: jax.Array) -> jax.Array:
    """exp(entropy) of the argmin-code histogram over the batch: how many codes are in use."""
    k = energies.shape[-1]
    freq = jax.nn.one_hot(jnp.argmin(energies, axis=-1), k).mean(0)
    return jnp.exp(-jnp.sum(freq * jnp.log(freq + 1e-12)))


def information_penalty(kind: str, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """Per-sample information cost of z [batch, dim]: KL(N(mu, e^logvar) || N(0, I)) for
    ``kl``; sum of mu² (``l2``) or |mu| (``l1``) for the noisy-channel variants."""
    if kind == "kl":
        return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)
    if kind == "l2":
        return jnp.sum(jnp.square(mu), axis=-1)
    if kind == "l1":
        return jnp.sum(jnp.abs(mu), axis=-1)
    raise ValueError(f"method.latent.penalty={kind!r}; valid: {PENALTIES}")


def minimize_energy(energy_of_z: Callable, z0: jax.Array, steps: int, lr: float):
    """Gradient descent on sum_b E_b(z_b) from z0 [batch, dim], ``steps`` fixed (jit-friendly);
    returns the best (z, E(z) [batch]) seen per sample, so a step that overshoots on a steep
    part of E never makes the answer worse than z0. Samples are independent, so the summed
    gradient is the per-sample one."""
    value_and_grad = jax.value_and_grad(
        lambda z: (lambda e: (e.sum(), e))(energy_of_z(z)), has_aux=True
    )

    def body(_, carry):
        z, best_z, best_e = carry
        (_, e), g = value_and_grad(z)
        better = e < best_e
        best_z = jnp.where(better[:, None], z, best_z)
        best_e = jnp.where(better, e, best_e)
        return z - lr * g, best_z, best_e

    init = (z0, z0, jnp.full(z0.shape[:1], jnp.inf))
    z, best_z, best_e = jax.lax.fori_loop(0, steps, body, init)
    e = energy_of_z(z)
    better = e < best_e
    return jnp.where(better[:, None], z, best_z), jnp.where(better, e, best_e)


@dataclasses.dataclass(frozen=True)
class LatentSpec:
    kind: str = "none"
    num_codes: int = 4  # discrete
    usage_weight: float = 1.0  # discrete: weight of the code-usage term
    usage_temperature: float = 0.1  # discrete: softness of the assignment the usage term sees
    dim: int = 8  # continuous: z dimension
    hidden: int = 128  # continuous: inference network width
    penalty: str = "kl"  # continuous: kl | l2 | l1
    penalty_weight: float = 1e-2
    noise_std: float = 0.1  # continuous, l2/l1: fixed noise on z during training
    inference_steps: int = 50  # continuous: gradient steps of free_energy
    inference_lr: float = 0.1

    def validate(self):
        """Raise naming the ``method.latent`` key of an impossible setting."""
        if self.kind not in KINDS:
            raise ValueError(f"method.latent.kind={self.kind!r}; valid: {KINDS}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"method.latent.penalty={self.penalty!r}; valid: {PENALTIES}")
        if self.kind == "discrete" and self.num_codes < 2:
            raise ValueError(f"method.latent.num_codes={self.num_codes} must be >= 2")
        if self.kind == "continuous" and self.dim < 1:
            raise ValueError(f"method.latent.dim={self.dim} must be >= 1")

    @classmethod
    def of(cls, section) -> LatentSpec:
        """``method.latent`` (its keys beyond the fields, e.g. ``reference``, are not read)."""
        return cls(**{f.name: section[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class LatentJEPA:
    """E(x, y, z) = energy(s_y, predict(s_x, embed(z))) with the pieces given as pure functions:

    encode_x(model_params, x) -> s_x;  encode_y(model_params, y) -> s_y (stop-gradient inside
    if the target is an EMA copy);  predict(model_params, s_x, z_embedding or None) -> ŝ_y;
    energy(ŝ_y, s_y) -> [batch];  pool(s) -> [batch, features] (the inference network's input).
    ``width`` is the predictor's conditioning width (z_embedding [batch, width]).
    """

    spec: LatentSpec
    encode_x: Callable
    encode_y: Callable
    predict_fn: Callable
    energy_fn: Callable
    pool: Callable
    width: int

    # -- parameters ---------------------------------------------------------------------------
    def _inference_net(self) -> InferenceNet:
        return InferenceNet(self.spec.dim, self.spec.hidden, self.width)

    def init_latent(self, key, pooled_x_dim: int, pooled_y_dim: int | None = None) -> dict:
        """The latent's own parameters (empty for ``none``); the dims are those of
        ``pool(s_x)`` and ``pool(s_y)``, the inference network's inputs."""
        if self.spec.kind == "discrete":
            return DiscreteCodes(self.spec.num_codes, self.width).init(key)["params"]
        if self.spec.kind == "continuous":
            sx = jnp.zeros((1, pooled_x_dim))
            sy = jnp.zeros((1, pooled_y_dim or pooled_x_dim))
            net = self._inference_net()
            return net.init(key, sx, sy, method=InferenceNet.initialize)["params"]
        return {}

    def _embed(self, params, z):
        """z (code index [batch] or vector [batch, dim]) → z_embedding [batch, width]."""
        if self.spec.kind == "discrete":
            return DiscreteCodes(self.spec.num_codes, self.width).apply(
                {"params": params["latent"]}
            )[z]
        net = self._inference_net()
        return net.apply({"params": params["latent"]}, z, method=lambda module, z: module.embed(z))

    def _predict(self, params, sx, z=None):
        """ŝ_y = Pred(s_x, z) from s_x; z None: the prediction without z."""
        return self.predict_fn(params["model"], sx, None if z is None else self._embed(params, z))

    # -- the public API -----------------------------------------------------------------------
    def predict(self, params, x, z=None):
        """ŝ_y = Pred(s_x, z); z None for ``none``."""
        return self._predict(params, self.encode_x(params["model"], x), z)

    def energy(self, params, x, y, z=None) -> jax.Array:
        """E(x, y, z) per sample [batch]."""
        sy = self.encode_y(params["model"], y)
        return self.energy_fn(self.predict(params, x, z), sy)

    def all_code_energies(self, params, sx, sy) -> jax.Array:
        """[batch, K]: the energy under every code (one predictor pass per code)."""
        codes = DiscreteCodes(self.spec.num_codes, self.width).apply({"params": params["latent"]})
        b = sy.shape[0]

        def one(code):
            pred = self.predict_fn(params["model"], sx, jnp.broadcast_to(code, (b, self.width)))
            return self.energy_fn(pred, sy)

        return jax.vmap(one, out_axes=1)(codes)

    def free_energy(self, params, x, y) -> tuple[jax.Array, Any]:
        """F(x, y) = min_z E(x, y, z) per sample, and the minimizing z. ``none``: E itself;
        ``discrete``: exact min over the K codes; ``continuous``: ``inference_steps`` of
        gradient descent from z = 0 (the prior's mode)."""
        sx, sy = self.encode_x(params["model"], x), self.encode_y(params["model"], y)
        if self.spec.kind == "discrete":
            energies = self.all_code_energies(params, sx, sy)
            return energies.min(-1), energies.argmin(-1)
        if self.spec.kind == "continuous":

            def energy_of_z(z):
                return self.energy_fn(self._predict(params, sx, z), sy)

            z0 = jnp.zeros((sy.shape[0], self.spec.dim))
            steps, lr = self.spec.inference_steps, self.spec.inference_lr
            z, f = minimize_energy(energy_of_z, z0, steps, lr)
            return f, z
        return self.energy_fn(self._predict(params, sx), sy), None

    def sample_predictions(self, params, x, key, n: int) -> jax.Array:
        """n predictions per sample [n, batch, ...]: codes drawn uniformly (``discrete``), z from
        the prior N(0, I) (``continuous``), or n copies of the one prediction (``none``)."""
        sx = self.encode_x(params["model"], x)
        b = jax.tree.leaves(sx)[0].shape[0]
        if self.spec.kind == "discrete":
            zs = jax.random.randint(key, (n, b), 0, self.spec.num_codes)
        elif self.spec.kind == "continuous":
            zs = jax.random.normal(key, (n, b, self.spec.dim))
        else:
            pred = self._predict(params, sx)
            return jnp.broadcast_to(pred, (n, *pred.shape))
        return jax.vmap(lambda z: self._predict(params, sx, z))(zs)

    # -- training -----------------------------------------------------------------------------
    def loss_from_embeddings(self, params, sx, sy, key) -> tuple[jax.Array, dict]:
        """The objective and its parts given s_x, s_y: ``none``: mean E; ``discrete``: mean
        min_k E (winner-take-all) + usage_weight · KL(usage || uniform); ``continuous``: mean E
        at z ~ q(z | s_x, s_y) + penalty_weight · information cost."""
        s = self.spec
        if s.kind == "discrete":
            energies = self.all_code_energies(params, sx, sy)
            wta = energies.min(-1).mean()
            usage = code_usage_penalty(energies, s.usage_temperature)
            aux = {"energy": wta, "code_usage_kl": usage, "perplexity": code_perplexity(energies)}
            return wta + s.usage_weight * usage, aux
        if s.kind == "continuous":
            net = self._inference_net()
            # q sees s_y but must not shape it: the target gets no gradient through z.
            mu, logvar = net.apply(
                {"params": params["latent"]}, self.pool(sx), self.pool(jax.lax.stop_gradient(sy))
            )
            eps = jax.random.normal(key, mu.shape)
            noise = jnp.exp(0.5 * logvar) if s.penalty == "kl" else s.noise_std
            energy = self.energy_fn(self._predict(params, sx, mu + noise * eps), sy).mean()
            info = information_penalty(s.penalty, mu, logvar).mean()
            return energy + s.penalty_weight * info, {"energy": energy, "z_information": info}
        energy = self.energy_fn(self._predict(params, sx), sy).mean()
        return energy, {"energy": energy}
