"""Tutorial: write your own world. A two-player coordination game in ~60 lines that evoarena's registry,
scripted agents, `evaluate`, `run` and PPO all pick up.

Run:     python examples/coordination_world.py
         EVOARENA_PLUGINS=examples/coordination_world.py evoarena evaluate coordination_v0 \
             --agents scripted:copy_partner scripted:always_red --episodes 10
Expect:  PettingZoo's parallel_api_test passes; copy_partner vs always_red scores 10/10 per game (it
         says red first, then copies); PPO learns to match always_red in a few updates (>= 9 per game).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from evoarena.agents.scripted import ScriptedAgent, strategy
from evoarena.envs import TextParallelEnv, register
from evoarena.envs.base import obs_space

COLORS = ("red", "green", "blue")


class CoordinationEnv(TextParallelEnv):
    """Both players name a colour at once, ``rounds`` times; each scores 1 when the colours match."""

    metadata = {"render_modes": ["ansi", "human"], "name": "coordination_v0", "is_parallelizable": True}

    def __init__(self, rounds: int = 10, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.rounds = rounds
        self.possible_agents = ["player_0", "player_1"]
        # spaces are built once and returned by identity; features: round fraction + partner's last colour
        self._obs_spaces = {a: obs_space(1 + len(COLORS), len(COLORS)) for a in self.possible_agents}
        self._act_spaces = {a: spaces.Discrete(len(COLORS)) for a in self.possible_agents}
        self._mask = np.ones(len(COLORS), dtype=np.int8)

    def reset(self, seed=None, options=None):
        self.agents, self._t, self._last, self._score = list(self.possible_agents), 0, None, 0
        self._transcript = [f"coordination, {self.rounds} rounds"]
        return self._observe(), {a: {} for a in self.agents}

    def _observe(self):
        obs = {}
        for i, a in enumerate(self.possible_agents):
            partner = None if self._last is None else self._last[1 - i]
            said = "nothing yet" if partner is None else f"partner said {COLORS[partner]}"
            feats = np.zeros(1 + len(COLORS), dtype=np.float32)
            feats[0] = self._t / self.rounds
            if partner is not None:
                feats[1 + partner] = 1.0
            obs[a] = {"text": f"round {self._t + 1}/{self.rounds}. {said}.", "features": feats,
                      "action_mask": self._mask}
        return obs

    def step(self, actions):
        acts = [self.check_action(a, actions.get(a), self._mask) for a in self.agents]
        match = float(acts[0] == acts[1])
        self._t, self._last, self._score = self._t + 1, acts, self._score + match
        self._transcript.append(f"round {self._t}: {COLORS[acts[0]]} {COLORS[acts[1]]}")
        done = self._t >= self.rounds
        agents = self.agents
        if done:
            self.agents = []
        return (self._observe(), dict.fromkeys(agents, match), dict.fromkeys(agents, done),
                dict.fromkeys(agents, False), {a: {} for a in agents})

    def action_names(self, agent):
        return list(COLORS)

    def metrics(self):
        return {"match_rate": self._score / max(self._t, 1)}


register("coordination_v0", CoordinationEnv)


@strategy("coordination_v0", "always_red")
class AlwaysRed(ScriptedAgent):
    """Always says red."""

    def choose(self, features, mask):
        return 0


@strategy("coordination_v0", "copy_partner")
class CopyPartner(ScriptedAgent):
    """Says what the partner said last round (red first)."""

    def choose(self, features, mask):
        return int(np.argmax(features[1:])) if features[1:].any() else 0


def main() -> dict:
    from pettingzoo.test import parallel_api_test

    from evoarena.bench import play
    from evoarena.config import PipelineConfig
    from evoarena.envs import make
    from evoarena.training.pipeline import run_pipeline

    parallel_api_test(make("coordination_v0"), num_cycles=100)
    res = play("coordination_v0", ["scripted:copy_partner", "scripted:always_red"], episodes=10)
    print("copy_partner vs always_red:", res.returns["player_0"].mean())
    tiny = {"preset": "tiny", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}
    pipeline = PipelineConfig.model_validate({
        "name": "coordination", "threads": 1, "env": {"id": "coordination_v0"},
        "stages": [
            {"kind": "train", "policies": {"main": {"policy": {"encoder": tiny}}},
             "seats": {"player_0": {"policy": "main"}, "player_1": {"agent": "scripted:always_red"}},
             "num_envs": 64, "episodes_per_update": 64, "total_updates": 8, "ppo": {"lr": 3.0e-3},
             "eval": {"every": 4, "episodes": 10, "opponents": ["scripted:always_red"]}},
            {"kind": "evaluate", "opponents": ["scripted:always_red", "scripted:copy_partner"], "episodes": 10},
        ]})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        results = run_pipeline(pipeline, run_dir=f"{tmp}/run")
    score = results["02_evaluate"]["rows"]["train"]["cells"]["scripted:always_red"]["mean"]
    print("PPO learner vs always_red:", score)
    return {"copy_vs_red": float(res.returns["player_0"].mean()), "ppo_vs_red": score}


if __name__ == "__main__":
    main()
