"""The ``train`` stage (:class:`~evoarena.training.protocol.StageKind`): multi-agent PPO in one world, run by
:func:`evoarena.training.rl.ppo.run_ppo` (``ppo.backend: evoarena``) or sb3-contrib's MaskablePPO
(:mod:`evoarena.training.rl.sb3_backend`), and what a pipeline must know of it: its world, the policy roles it makes
and which checkpoint it hands on (``hand_on``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoarena.config import TrainConfig
from evoarena.envs import describe
from evoarena.training.protocol import InitSlot, StageContext, StageKind
from evoarena.training.rl.ppo import run_ppo


class TrainStage(StageKind):
    """``kind: train``: multi-agent PPO (``ppo.backend: evoarena``, or ``sb3`` for MaskablePPO)."""

    name = kind = "train"
    config = TrainConfig
    agent_label = "PPO-trained"

    def run(self, cfg: TrainConfig, ctx: StageContext) -> dict[str, Any]:
        if cfg.ppo.backend == "sb3":  # sb3-contrib MaskablePPO on the same world, encoder and run folder
            from evoarena.training.rl.sb3_backend import run_sb3

            return run_sb3(cfg, ctx)
        return run_ppo(cfg, ctx)

    def env(self, data: dict[str, Any]) -> dict[str, Any] | None:
        return data.get("env")

    def policy_roles(self, data: dict[str, Any]) -> dict[str, str]:
        from fnmatch import fnmatch

        env = data["env"]
        out: dict[str, str] = {}
        for agent, role in describe(env["id"], env.get("kwargs", {})).roles.items():
            for pattern, seat in data["seats"].items():
                if fnmatch(agent, pattern) and seat.get("policy"):
                    out.setdefault(role, seat["policy"])
                    break
        return out

    def init_slots(self, data: dict[str, Any]) -> list[InitSlot]:
        if not isinstance(data.get("policies"), dict):
            return []
        out = []
        for name, lc in data["policies"].items():
            if isinstance(lc, dict):
                policy = lc.setdefault("policy", {})
                if "init_from" not in policy and policy.get("kind", "transformer") == "transformer":
                    out.append(InitSlot(f"policies.{name}.policy.init_from", policy, policy=name))
        return out

    def checkpoint(self, data: dict[str, Any], folder: Path, role: str | None = None) -> Path:
        made = self.policy_roles(data)
        best = folder / "best" / "policies" / made[str(role)]
        hand_on = data.get("hand_on", TrainConfig.model_fields["hand_on"].default)
        if hand_on == "best" and best.is_dir():
            return best
        if hand_on == "averaged":
            return folder / "averaged" / "policies" / made[str(role)]
        return folder / "checkpoint" / "policies" / made[str(role)]

    def length(self, results: dict[str, Any]) -> int:
        return int(results.get("updates", 0))

    def has_more(self, data: dict[str, Any], results: dict[str, Any]) -> bool:
        if data.get("ppo", {}).get("backend", "evoarena") != "evoarena":  # sb3 runs do not resume
            return False
        total = data.get("total_updates", TrainConfig.model_fields["total_updates"].default)
        return int(results.get("updates", 0)) < int(total)

    def agent_policy(self, data: dict[str, Any]) -> dict[str, Any] | None:
        for lc in data["policies"].values():
            return dict(lc.get("policy", {}))
        return None


STAGE = TrainStage()
