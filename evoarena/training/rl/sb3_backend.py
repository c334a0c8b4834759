"""``ppo.backend: sb3``: the PPO stage trained by sb3-contrib's ``MaskablePPO`` instead of evoarena's PPO.

For parameter-shared self-play and learner-vs-pool: one learner policy fills every learner seat;
the other seats are fixed agents or pools of agent specs. The world becomes an SB3 vector env:

- :class:`LearnerSlotsEnv` — a PettingZoo ``ParallelEnv`` whose agents are the learner seats
  (``learner_0..``); the other seats are drawn per episode (the stage's
  :class:`~evoarena.training.rl.seats.SeatPlanner`) and played inside; steps where no learner has a real
  choice are played for it; observations are token tensors (:class:`~evoarena.policies.sb3.TokenizedObs`);
  a truncation is passed on as SB3's ``TimeLimit.truncated`` (SuperSuit alone would treat it as a
  termination, so SB3 would not bootstrap);
- SuperSuit's vectorisation (``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1``);
- :class:`WorldVecEnv` — the SB3 ``VecEnv`` on top, with the ``seed``, ``has_attr`` /
  ``env_method`` and ``action_masks()`` that SuperSuit's vector envs lack.

The SB3 policy's features extractor is the learner's own encoder and its heads are the learner's
own heads (:mod:`evoarena.policies.sb3`), so evaluation (``eval/`` tags), checkpoints and results
are those of ``run_ppo``. TensorBoard goes to the same run folder (``tb/``) on the update axis:
``train/<policy>/...`` (SB3's loss names), ``rollout/<policy>/...``, ``eval/...``, ``perf/...``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from evoarena.config import LEARNER_ENTRIES, TrainConfig
from evoarena.envs import forced_actions, make
from evoarena.training.protocol import StageContext
from evoarena.training.rl import ppo_records as records
from evoarena.training.rl.learners import build_learner, prepare_for_rl, save_training_checkpoint, stage_setup
from evoarena.training.rl.seats import SeatPlanner, seat_of


def _needs_names(agent: Any) -> bool:
    return bool(getattr(agent, "needs_action_names", False))


class LearnerSlotsEnv(ParallelEnv):
    """The learner seats of a world as a ``ParallelEnv`` (agents ``learner_0..``); every other seat is
    drawn by ``planner`` each episode and played inside."""

    metadata = {"name": "learner_slots", "is_parallelizable": True, "render_modes": []}

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], planner: Any, learner_seats: int,
                 tokenize: Any, seed_stride: int = 1) -> None:
        self.world = make(env_id, **env_kwargs)
        self.planner, self.tokenize, self.stride = planner, tokenize, int(seed_stride)
        self.possible_agents = [f"learner_{i}" for i in range(learner_seats)]
        self.agents: list[str] = []
        self.render_mode = None
        first = self.world.possible_agents[0]
        self._act_space = spaces.Discrete(int(self.world.action_space(first).n))
        self._next_seed = 0
        self._seat_of: dict[str, str] = {}  #: slot -> world agent this episode
        self._others: dict[str, Any] = {}  #: world agent -> agent object this episode
        self._obs: dict[str, dict[str, Any]] = {}

    def observation_space(self, agent: str) -> spaces.Space:
        return self.tokenize.space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_space

    def _slot_obs(self) -> dict[str, dict[str, np.ndarray]]:
        return {slot: self.tokenize(self._obs[a]) for slot, a in self._seat_of.items()}

    def _learner_has_choice(self) -> bool:
        return any(a in self.world.agents and int(np.count_nonzero(self._obs[a]["action_mask"])) > 1
                   for a in self._seat_of.values())

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
        if seed is not None:
            self._next_seed = int(seed)
        episode_seed, self._next_seed = self._next_seed, self._next_seed + self.stride
        who = self.planner(np.random.default_rng(episode_seed))
        learners = [a for a in self.world.possible_agents if who[a][0] == "learner"]
        if len(learners) != len(self.possible_agents):
            raise ValueError(f"ppo.backend sb3: an episode drew {len(learners)} learner seats, expected "
                             f"{len(self.possible_agents)}; pools with 'self' or 'snapshot' are not supported")
        self._seat_of = dict(zip(self.possible_agents, learners))
        self._others = {a: t for a, (kind, t) in who.items() if kind == "agent"}
        obs, _ = self.world.reset(seed=episode_seed, options=options)
        self._obs = dict(obs)
        self.agents = list(self.possible_agents)
        rewards = dict.fromkeys(self.possible_agents, 0.0)
        done, trunc = False, False
        if not self._learner_has_choice():
            done, trunc = self._play({}, rewards)
        if done:
            raise RuntimeError("ppo.backend sb3: an episode ended before any learner had a choice")
        return self._slot_obs(), {slot: {} for slot in self.possible_agents}

    def _play(self, slot_actions: dict[str, Any], rewards: dict[str, float]) -> tuple[bool, bool]:
        """Step the world with the learners' actions, then on until a learner has a choice or the episode
        ends; rewards are summed into ``rewards``; ``(done, truncated_not_terminated)``."""
        world = self.world
        while True:
            learner_of = {a: slot for slot, a in self._seat_of.items()}
            actions, choosing = forced_actions(world.agents, self._obs)
            for a in choosing:
                o = self._obs[a]
                if a in learner_of:
                    act = slot_actions.get(learner_of[a])
                    actions[a] = int(np.flatnonzero(o["action_mask"])[0]) if act is None else int(act)
                else:
                    agent = self._others[a]
                    if _needs_names(agent):
                        o = {**o, "action_names": world.action_names(a)}
                    actions[a] = int(agent.act_batch([o])[0])
            obs, rew, terms, truncs, _ = world.step(actions)
            slot_actions = {}
            self._obs.update(obs)
            for slot, a in self._seat_of.items():
                rewards[slot] += float(rew.get(a, 0.0))
            if not world.agents or all(a not in world.agents for a in self._seat_of.values()):
                trunc = any(truncs.get(a, False) and not terms.get(a, False) for a in self._seat_of.values())
                return True, trunc
            if self._learner_has_choice():
                return False, False

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        rewards = dict.fromkeys(self.possible_agents, 0.0)
        done, trunc = self._play(dict(actions), rewards)
        infos: dict[str, dict[str, Any]] = {slot: {} for slot in self.possible_agents}
        if done:
            metrics = self.world.metrics()
            for info in infos.values():
                info["metrics"] = metrics
                if trunc:
                    info["TimeLimit.truncated"] = True
            self.agents = []
        terms = dict.fromkeys(self.possible_agents, done and not trunc)
        truncs = dict.fromkeys(self.possible_agents, done and trunc)
        return self._slot_obs(), rewards, terms, truncs, infos

    def close(self) -> None:
        self.world.close()


class WorldVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a SuperSuit gymnasium vector env of :class:`LearnerSlotsEnv` copies, adding
    ``seed`` (applied at the next reset), ``has_attr`` / ``get_attr`` / ``env_method`` and ``action_masks()``
    (read from the ``action_mask`` of the latest observations)."""

    def __init__(self, venv: Any) -> None:
        self.venv = venv
        super().__init__(venv.num_envs, venv.observation_space, venv.action_space)
        self._masks = np.ones((self.num_envs, int(venv.action_space.n)), dtype=bool)
        self._actions: np.ndarray | None = None

    def action_masks(self) -> np.ndarray:
        return self._masks

    def reset(self) -> dict[str, np.ndarray]:
        seed = self._seeds[0]
        obs, infos = self.venv.reset(seed=seed)
        self.reset_infos = list(infos)
        self._reset_seeds()
        self._masks = np.asarray(obs["action_mask"]) != 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rew, term, trunc, infos = self.venv.step(self._actions)
        self._masks = np.asarray(obs["action_mask"]) != 0
        return obs, np.asarray(rew, dtype=np.float32), np.asarray(term, bool) | np.asarray(trunc, bool), list(infos)

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Seeds env copy i with ``seed + i`` at the next reset (SuperSuit's vector envs cannot be seeded)."""
        return list(super().seed(seed))

    def close(self) -> None:
        self.venv.close()

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [int(indices)] if isinstance(indices, int | np.integer) else [int(i) for i in indices]

    def has_attr(self, attr_name: str) -> bool:
        return attr_name in ("action_masks", "render_mode")

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._indices(indices))
        raise AttributeError(f"WorldVecEnv: no per-env attribute {attr_name!r} (only action_masks, render_mode)")

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"WorldVecEnv: cannot set per-env attribute {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices: Any = None, **method_kwargs) -> list[Any]:
        if method_name != "action_masks":
            raise AttributeError(f"WorldVecEnv: no per-env method {method_name!r} (only action_masks)")
        return [self._masks[i] for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def get_images(self) -> list[Any]:
        return []


# --------------------------------------------------------------------------- the stage


def check_sb3_config(cfg: TrainConfig, agents: list[str]) -> str:
    """The one learner policy's name; a ``ValueError`` naming the key for what the SB3 path cannot do."""
    if len(cfg.policies) != 1:
        raise ValueError(f"ppo.backend sb3: needs exactly one learner policy shared by its seats; policies has "
                         f"{sorted(cfg.policies)}")
    name = next(iter(cfg.policies))
    if cfg.policies[name].ppo:
        raise ValueError(f"policies.{name}.ppo: per-learner overrides are not supported with ppo.backend sb3; "
                         "set them in ppo")
    for a in agents:
        seat = seat_of(a, cfg.seats)
        for e in seat.pool or []:
            if e.agent in LEARNER_ENTRIES:
                raise ValueError(f"seats.{a}.pool: {e.agent!r} is not supported with ppo.backend sb3 (the number "
                                 "of learner seats must stay fixed); give the learner the seat (policy: NAME)")
    if not any(seat_of(a, cfg.seats).policy for a in agents):
        raise ValueError("ppo.backend sb3: no seat is filled by the learner policy")
    if cfg.ppo.kl_coef > 0:
        raise ValueError("ppo.kl_coef > 0 is not supported with ppo.backend sb3 (SB3 has no KL-to-reference "
                         "penalty); set ppo.kl_coef: 0")
    if cfg.ppo.advantage != "gae":
        raise ValueError(f"ppo.advantage {cfg.ppo.advantage!r} is not supported with ppo.backend sb3; use gae")
    if cfg.snapshot_every:
        raise ValueError("snapshot_every > 0 is not supported with ppo.backend sb3; set snapshot_every: 0")
    return name


def _estimate_decisions(par: LearnerSlotsEnv, episodes: int, seed: int) -> float:
    """Mean decisions per slot per episode, from ``episodes`` episodes with random legal learner actions."""
    rng = np.random.default_rng(seed)
    steps = 0
    for ep in range(episodes):
        obs, _ = par.reset(seed=seed + ep)
        while par.agents:
            acts = {s: int(rng.choice(np.flatnonzero(o["action_mask"]))) for s, o in obs.items()}
            obs, *_ = par.step(acts)
            steps += 1
    return steps / max(episodes, 1)


class _UpdateLogger(BaseCallback):
    """Writes one update's scalars on evoarena's update axis (after its training epochs ran) and runs the
    evaluations that fall on it."""

    def __init__(self, run: _SB3Run) -> None:
        super().__init__()
        self.run = run
        self.t_rollout = self.t_learn = self.cpu_rollout = 0.0
        self.rollout_s = 0.0
        self.returns: list[float] = []
        self.lengths: list[float] = []
        self.metrics: list[dict[str, float]] = []
        self.last_return: float | None = None

    def flush(self) -> None:
        run, writer, name = self.run, self.run.writer, self.run.name
        update = run.state.update
        if update == 0:
            return
        learn_s = time.perf_counter() - self.t_learn
        for key, val in self.model.logger.name_to_value.items():
            if key.startswith("train/"):
                writer.add_scalar(f"train/{name}/{key[6:]}", float(val), update)
        if self.returns:
            self.last_return = float(np.mean(self.returns))
            writer.add_scalar(f"rollout/{name}/episode_return", self.last_return, update)
            writer.add_scalar(f"rollout/{name}/episode_length", float(np.mean(self.lengths)), update)
            for key in sorted({k for m in self.metrics for k in m}):
                writer.add_scalar(f"rollout/{name}/{key}",
                                  float(np.mean([m[key] for m in self.metrics if key in m])), update)
        records.log_perf(writer, update, time.process_time() - self.cpu_rollout,  # rollout + learn
                 {"rollout": self.rollout_s, "learn": learn_s},
                 run.rollout_size / max(self.rollout_s + learn_s, 1e-9), run.state.decisions)
        self.returns, self.lengths, self.metrics = [], [], []
        if run.cfg.eval.every and update % run.cfg.eval.every == 0 and update < run.total_updates:
            run.run_eval(update)

    def _on_rollout_start(self) -> None:
        self.flush()
        self.t_rollout, self.cpu_rollout = time.perf_counter(), time.process_time()

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            if done and "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
                self.lengths.append(float(info["episode"]["l"]))
                self.metrics.append(info.get("metrics", {}))
        return True

    def _on_rollout_end(self) -> None:
        self.rollout_s = time.perf_counter() - self.t_rollout
        self.t_learn = time.perf_counter()
        self.run.state.update += 1
        self.run.state.decisions += self.run.rollout_size
        self.run.state.episodes += len(self.returns) // max(self.run.learner_seats, 1)


@dataclass
class _SB3Run:
    """What the update logger and the evaluations of one MaskablePPO run share."""

    cfg: TrainConfig
    ctx: StageContext
    name: str
    learners: dict[str, Any]
    agents: list[str]
    roles: dict[str, str]
    learner_seats: int
    rollout_size: int
    total_updates: int
    writer: Any
    state: records.TrainerState

    def run_eval(self, update: int) -> dict[str, Any]:
        self.learners[self.name].eval()
        res = records.evaluate(self.cfg, self.learners, self.agents, self.roles)
        records.record_eval(self.writer, self.state, update, res)
        if records.new_best(self.state, update, res):
            save_training_checkpoint(self.ctx.stage_dir, self.learners, {}, {**self.state.to_json(), "update": update},
                                     {}, name="best")
        return res


def _vec_env(cfg: TrainConfig, planner: SeatPlanner, learner_seats: int, tokenize: Any) -> tuple[Any, int]:
    """The world as an SB3 vector env of ``min(num_envs, episodes_per_update)`` copies, and the rollout length
    per copy (``ppo.sb3_n_steps``, else about ``episodes_per_update`` episodes' decisions in all)."""
    from stable_baselines3.common.vec_env import VecMonitor
    from supersuit import concat_vec_envs_v1, pettingzoo_env_to_vec_env_v1

    num_copies = min(cfg.num_envs, cfg.episodes_per_update)
    par = LearnerSlotsEnv(cfg.env.id, cfg.env.kwargs, planner, learner_seats, tokenize, seed_stride=num_copies)
    if cfg.ppo.sb3_n_steps:
        n_steps = cfg.ppo.sb3_n_steps
    else:  # about episodes_per_update episodes' decisions per rollout, as the evoarena backend collects
        per_episode = _estimate_decisions(LearnerSlotsEnv(cfg.env.id, cfg.env.kwargs, planner, learner_seats,
                                                          tokenize), 16, cfg.seed + 10_000_000)
        n_steps = max(1, math.ceil(cfg.episodes_per_update * per_episode / num_copies))
    gym_vec = concat_vec_envs_v1(pettingzoo_env_to_vec_env_v1(par), num_copies, num_cpus=0, base_class="gymnasium")
    return VecMonitor(WorldVecEnv(gym_vec)), n_steps


def _maskable_ppo(cfg: TrainConfig, venv: Any, n_steps: int, policy: Any) -> Any:
    """sb3-contrib's MaskablePPO with the stage's PPO settings, its extractor and heads the learner's own."""
    from sb3_contrib import MaskablePPO

    from evoarena.policies.sb3 import sb3_policy_kwargs, share_heads

    pc = cfg.ppo
    lr0 = pc.lr
    model = MaskablePPO(
        "MultiInputPolicy", venv, learning_rate=(lambda p: lr0 * p) if pc.lr_decay else lr0, n_steps=n_steps,
        batch_size=pc.minibatch_size, n_epochs=pc.epochs, gamma=pc.gamma, gae_lambda=pc.gae_lambda,
        clip_range=pc.clip, clip_range_vf=pc.value_clip, normalize_advantage=pc.normalize_advantage,
        ent_coef=pc.ent_coef, vf_coef=pc.vf_coef, max_grad_norm=pc.max_grad_norm, target_kl=pc.target_kl,
        seed=cfg.seed, device=policy.device, verbose=0, policy_kwargs=sb3_policy_kwargs(policy, pc.adam_eps))
    share_heads(model.policy, policy, lr0)
    return model


def run_sb3(cfg: TrainConfig, ctx: StageContext, total_timesteps: int | None = None) -> dict[str, Any]:
    """Train the config's one learner with ``MaskablePPO``; returns the results written to results.json
    (the keys of ``run_ppo``'s). ``total_timesteps`` (decisions) overrides ``total_updates`` rollouts. This
    backend shows no progress bar."""
    from evoarena.policies.sb3 import TokenizedObs, check_sb3_policy

    if ctx.resume:
        raise ValueError("--resume is not supported with ppo.backend sb3; start a new run")
    stage, agents, roles = stage_setup(cfg, ctx)
    name = check_sb3_config(cfg, agents)
    torch.manual_seed(cfg.seed)
    policy = prepare_for_rl(build_learner(cfg, name, agents))
    check_sb3_policy(policy, f"policies.{name}.policy")
    learner_seats = sum(1 for a in agents if seat_of(a, cfg.seats).policy)
    tokenize = TokenizedObs.for_encoder(policy.encoder, policy.num_actions)
    planner = SeatPlanner(cfg, agents, roles, {name: policy}, {}, cfg.seed)
    venv, n_steps = _vec_env(cfg, planner, learner_seats, tokenize)
    rollout_size = n_steps * venv.num_envs
    total_updates = math.ceil((total_timesteps or cfg.total_updates * rollout_size) / rollout_size)
    model = _maskable_ppo(cfg, venv, n_steps, policy)
    writer = ctx.writer()
    writer.add_text("config", f"```\n{json.dumps(cfg.model_dump(mode='json'), indent=1)}\n```", 0)
    state = records.TrainerState(backend="sb3")
    run = _SB3Run(cfg, ctx, name, {name: policy}, agents, roles, learner_seats, rollout_size, total_updates,
                  writer, state)
    callback = _UpdateLogger(run)
    if cfg.eval.every:
        run.run_eval(0)  # the starting policy's score, as the evoarena backend: the baseline of the eval curve
    model.learn(total_timesteps=total_updates * rollout_size, callback=callback, progress_bar=False)
    callback.flush()
    venv.close()
    final_eval = run.run_eval(state.update)
    save_training_checkpoint(stage, run.learners, {}, state.to_json(), {})
    last_summary = {name: callback.last_return} if callback.last_return is not None else {}
    records.log_hparams(writer, cfg, total_updates, {"hparam/final_score": final_eval["score"]}, backend="sb3")
    writer.close()
    results = records.ppo_results(cfg, stage, state, state.update, final_eval, last_summary, backend="sb3")
    results["summary"] = "MaskablePPO (sb3): " + records.ppo_summary(results)
    ctx.write_results(results)
    return results
