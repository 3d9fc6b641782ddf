"""Soft Actor-Critic (Haarnoja et al. 2018, v2): clipped double Q, Polyak-averaged target
critics, automatic entropy temperature. Pure functions over a ``SACState`` pytree.

A batch is a dict of arrays: "obs" f32 [B, obs], "act" f32 [B, act] in [-1, 1], "rew" f32 [B],
"next_obs" f32 [B, obs], "done" f32 [B] (1.0 only on true terminations, not on time limits).
``update_many`` runs several updates inside one ``lax.scan`` over stacked batches [n, B, ...];
``insert_and_train`` appends freshly collected rows to a ``DeviceReplay`` and runs n updates on
batches sampled inside the same jitted ``lax.scan`` (no host round trip per update).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from s4dm_jax.rl.buffer import DeviceReplay, replay_insert, replay_sample
from s4dm_jax.rl.networks import Actor, DoubleCritic, tanh_gaussian_sample


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (standard values from the SAC paper / common baselines)."""

    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    init_alpha: float = 1.0
    target_entropy: float | None = None  # None -> -act_dim
    batch_size: int = 256


class SACState(NamedTuple):
    """All trainable state. Params are flax variable dicts; log_alpha is a scalar."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    key: jax.Array
    step: jax.Array


class SAC:
    """Stateless SAC agent: holds the modules, optimisers and config; all methods are pure."""

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig | None = None):
        config = SACConfig() if config is None else config
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.actor = Actor(act_dim, tuple(config.hidden))
        self.critic = DoubleCritic(tuple(config.hidden))
        self.actor_tx = optax.adam(config.actor_lr)
        self.critic_tx = optax.adam(config.critic_lr)
        self.alpha_tx = optax.adam(config.alpha_lr)
        self.target_entropy = (
            -float(act_dim) if config.target_entropy is None else float(config.target_entropy)
        )
        self.update = jax.jit(self._update)
        self.update_many = jax.jit(self._update_many)
        self.insert_and_train = jax.jit(self._insert_and_train, static_argnums=4,
                                        donate_argnums=1)
        self.sample_action = jax.jit(self._sample_action)
        self.mean_action = jax.jit(self._mean_action)

    # ----------------------------------------------------------------- init
    def init(self, key: jax.Array) -> SACState:
        """Fresh parameters (target critic = critic) and optimiser states."""
        k_actor, k_critic, key = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim), jnp.float32)
        act = jnp.zeros((1, self.act_dim), jnp.float32)
        actor_params = self.actor.init(k_actor, obs)
        critic_params = self.critic.init(k_critic, obs, act)
        log_alpha = jnp.asarray(jnp.log(self.config.init_alpha), jnp.float32)
        return SACState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            log_alpha=log_alpha,
            actor_opt=self.actor_tx.init(actor_params),
            critic_opt=self.critic_tx.init(critic_params),
            alpha_opt=self.alpha_tx.init(log_alpha),
            key=key,
            step=jnp.zeros((), jnp.int32),
        )

    # --------------------------------------------------------------- acting
    def _sample_action(self, actor_params, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Stochastic action: obs [B, obs] -> act [B, act] in (-1, 1)."""
        mean, log_std = self.actor.apply(actor_params, obs)
        return tanh_gaussian_sample(key, mean, log_std)[0]

    def _mean_action(self, actor_params, obs: jax.Array) -> jax.Array:
        """Deterministic action tanh(mean): obs [B, obs] -> act [B, act]."""
        return jnp.tanh(self.actor.apply(actor_params, obs)[0])

    # --------------------------------------------------------------- losses
    def critic_loss(self, critic_params, state: SACState, batch, key):
        """0.5 * sum over both critics of mean (Q(s,a) - y)^2.

        y = r + gamma (1 - done) (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(s').
        """
        alpha = jnp.exp(state.log_alpha)
        mean, log_std = self.actor.apply(state.actor_params, batch["next_obs"])
        next_act, next_logp = tanh_gaussian_sample(key, mean, log_std)
        q_next = self.critic.apply(state.target_critic_params, batch["next_obs"], next_act)
        v_next = jnp.min(q_next, axis=0) - alpha * next_logp
        target = batch["rew"] + self.config.gamma * (1.0 - batch["done"]) * v_next
        target = jax.lax.stop_gradient(target)
        q = self.critic.apply(critic_params, batch["obs"], batch["act"])
        loss = jnp.mean(jnp.sum((q - target[None]) ** 2, axis=0)) * 0.5
        return loss, {"critic_loss": loss, "q_mean": jnp.mean(q)}

    def actor_loss(self, actor_params, state: SACState, batch, key):
        """E[alpha logpi(a|s) - min Q(s, a)], a ~ pi (reparameterised)."""
        alpha = jnp.exp(state.log_alpha)
        mean, log_std = self.actor.apply(actor_params, batch["obs"])
        act, logp = tanh_gaussian_sample(key, mean, log_std)
        q = jnp.min(self.critic.apply(state.critic_params, batch["obs"], act), axis=0)
        loss = jnp.mean(alpha * logp - q)
        return loss, {"actor_loss": loss, "entropy": -jnp.mean(logp), "logp": logp}

    def alpha_loss(self, log_alpha, logp):
        """-log_alpha * E[logp + target_entropy]: raises alpha when entropy < target."""
        return -log_alpha * jnp.mean(jax.lax.stop_gradient(logp) + self.target_entropy)

    # --------------------------------------------------------------- update
    def _update(self, state: SACState, batch) -> tuple[SACState, dict]:
        """One SAC update: critic, then actor, then temperature, then Polyak target update."""
        key, k_critic, k_actor = jax.random.split(state.key, 3)
        (_, c_info), c_grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
            state.critic_params, state, batch, k_critic
        )
        c_upd, critic_opt = self.critic_tx.update(c_grads, state.critic_opt, state.critic_params)
        critic_params = optax.apply_updates(state.critic_params, c_upd)
        state = state._replace(critic_params=critic_params, critic_opt=critic_opt)

        (_, a_info), a_grads = jax.value_and_grad(self.actor_loss, has_aux=True)(
            state.actor_params, state, batch, k_actor
        )
        a_upd, actor_opt = self.actor_tx.update(a_grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, a_upd)

        logp = a_info.pop("logp")
        al_loss, al_grad = jax.value_and_grad(self.alpha_loss)(state.log_alpha, logp)
        al_upd, alpha_opt = self.alpha_tx.update(al_grad, state.alpha_opt, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, al_upd)

        target = polyak_update(state.target_critic_params, critic_params, self.config.tau)
        new_state = state._replace(
            actor_params=actor_params,
            actor_opt=actor_opt,
            log_alpha=log_alpha,
            alpha_opt=alpha_opt,
            target_critic_params=target,
            key=key,
            step=state.step + 1,
        )
        info = {**c_info, **a_info, "alpha_loss": al_loss, "alpha": jnp.exp(log_alpha)}
        return new_state, info

    def _update_many(self, state: SACState, batches) -> tuple[SACState, dict]:
        """n updates in one lax.scan; batches: dict of [n, B, ...]. Returns mean metrics."""
        state, infos = jax.lax.scan(self._update, state, batches)
        return state, jax.tree_util.tree_map(jnp.mean, infos)

    def _replay_update(self, state: SACState, replay: DeviceReplay, size: jax.Array
                       ) -> tuple[SACState, dict]:
        """One update on a batch drawn from the first ``size`` rows of ``replay``.

        The batch indices use a key split off ``state.key`` before the update's own split, so a
        run stays reproducible from the seed of ``init``.
        """
        key, k_batch = jax.random.split(state.key)
        batch = replay_sample(replay, size, k_batch, self.config.batch_size)
        return self._update(state._replace(key=key), batch)

    def _insert_and_train(self, state: SACState, replay: DeviceReplay, start: jax.Array,
                          rows: dict, n_updates: int) -> tuple[SACState, DeviceReplay, dict]:
        """Write ``rows`` (DeviceReplay field names -> [m, ...]) at row ``start`` of ``replay``,
        then run ``n_updates`` (static) updates sampling from the first start + m rows.

        Returns (state, replay, metrics averaged over the updates; empty when n_updates = 0).
        ``replay`` is donated: pass the returned one to the next call.
        """
        replay = replay_insert(replay, start, rows)
        if n_updates == 0:
            return state, replay, {}
        size = start + rows["rew"].shape[0]
        state, infos = jax.lax.scan(lambda st, _: self._replay_update(st, replay, size), state,
                                    None, length=n_updates)
        return state, replay, jax.tree_util.tree_map(jnp.mean, infos)


def polyak_update(target, online, tau: float):
    """target <- (1 - tau) * target + tau * online (leafwise)."""
    return jax.tree_util.tree_map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
