"""Text of the worlds: ``world_corpus()`` -> observation texts and action names from random legal play.

Used to train the WordPiece tokenizer of ``preset: tiny`` and as the default corpus of the
pretrain stage. Deterministic given ``seed``; deduplicated, in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

MAX_STEPS_PER_EPISODE = 10_000  #: a guard against a world that never ends


def world_corpus(env_ids: Sequence[str] | None = None, episodes_per_env: int = 200,
                 seed: int = 0) -> list[str]:
    """Distinct observation texts and action names seen in ``episodes_per_env`` random-play episodes
    of each world in ``env_ids`` (default: every registered world)."""
    from evoarena.envs import list_envs

    ids = tuple(env_ids) if env_ids is not None else tuple(list_envs())
    return list(_corpus(ids, int(episodes_per_env), int(seed)))


@lru_cache(maxsize=8)
def _corpus(env_ids: tuple[str, ...], episodes: int, seed: int) -> tuple[str, ...]:
    from evoarena.envs import make

    seen: dict[str, None] = {}
    for e, env_id in enumerate(env_ids):
        env = make(env_id)
        rng = np.random.default_rng([seed, e])
        try:
            for ep in range(episodes):
                obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
                for _ in range(MAX_STEPS_PER_EPISODE):
                    for o in obs.values():  # final observations of finished agents too
                        seen.setdefault(o["text"])
                    if not env.agents:
                        break
                    actions = {}
                    for agent in env.agents:
                        for name in env.action_names(agent):
                            seen.setdefault(name)
                        legal = np.flatnonzero(obs[agent]["action_mask"])
                        actions[agent] = int(rng.choice(legal))
                    obs, _, _, _, _ = env.step(actions)
                else:
                    raise RuntimeError(f"{env_id}: episode {ep} ran past {MAX_STEPS_PER_EPISODE} steps "
                                       "in random play")
        finally:
            env.close()
    return tuple(seen)
