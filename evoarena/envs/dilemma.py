"""``dilemma_v0`` -- an N-player iterated social dilemma.

``num_agents`` players ``player_0 ..`` choose cooperate (0) or defect (1) simultaneously each
round for ``rounds`` rounds. Payoffs are pairwise from a symmetric 2x2 game and averaged over
the opponents: a player's per-round reward is the mean, over every other player, of its payoff
against that player's action. Games (:data:`GAMES`, with T = temptation, R = reward for mutual
cooperation, P = punishment for mutual defection, S = sucker's payoff):

* ``prisoners``: T=5 R=3 P=1 S=0 (Axelrod's tournaments; T > R > P > S),
* ``stag_hunt``: R=4 T=3 P=2 S=0 (cooperating = hunting the stag; R > T > P > S),
* ``chicken``: T=4 R=3 S=1 P=0 (cooperating = swerving; T > R > S > P).

Horizon: with ``continuation`` 1 (the default) every game lasts ``rounds`` rounds and the players see which
round is the last, so defecting there dominates (the finite-horizon endgame). With ``continuation`` w < 1 a game
goes on after each round with probability w (drawn from the seed), up to ``rounds``, and the horizon is not
shown: the text says ``round 4`` instead of ``round 4/20`` (Axelrod's second tournament, w = 0.99654). The
features keep ``round_frac`` (rounds played / ``rounds``) and ``last_round`` (1 only at the ``rounds`` cap); take
the cap far beyond 1 / (1 - w), the mean length, e.g. ``rounds: 200, continuation: 0.95``.

Rewards lie in ``[min(T, R, P, S), max(T, R, P, S)]`` of the game ([0, 5] for prisoners).
Action space ``Discrete(2)``, both actions always legal (no ``wait``).

Features (float32; header indices ``ROUND_FRAC .. NUM_OPPONENTS``, names in :data:`HEADER_NAMES`,
full list from :func:`feature_names` / ``env.feature_names``; "defect" = 1, "cooperate" = 0):

* header: round_frac (rounds played / rounds), first_round, last_round (1 in the final round),
  last_my_action, last_my_payoff, last_others_defect_frac (fraction of the others that
  defected last round), any_opponent_ever_defected, others_defect_rate (the others'
  defections / (opponents x rounds played)), game_T, game_R, game_P, game_S, num_opponents;
* history, ``history`` rows of 3, row ``k`` = ``k + 1`` rounds ago (most recent first):
  valid (the round exists), my_action, others_defect_frac;
* opponents' last actions (``num_agents - 1``, opponents in player order, skipping me);
* opponents' defection counts so far (``num_agents - 1``, same order).

Text (<= 64 MiniLM tokens with default kwargs), e.g.
``"round 4/20. recent (you|others): c|c, c|d, d|d. last payoff 1. others defected 2 times."``;
each recent round shows my action then the others' in player order, oldest first.

Metrics: ``mean_payoff`` (per agent per round, averaged over agents), ``cooperation_rate``
(fraction of cooperate actions), ``payoff_player_i`` (player i's total payoff in the episode).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from evoarena.envs.base import TextParallelEnv, check_arg, obs_space

COOPERATE, DEFECT = 0, 1
LETTERS = ("c", "d")
GAMES: dict[str, dict[str, float]] = {
    "prisoners": {"T": 5.0, "R": 3.0, "P": 1.0, "S": 0.0},
    "stag_hunt": {"T": 3.0, "R": 4.0, "P": 2.0, "S": 0.0},
    "chicken": {"T": 4.0, "R": 3.0, "P": 0.0, "S": 1.0},
}
PLAYER_RANGE = (2, 8)

(ROUND_FRAC, FIRST_ROUND, LAST_ROUND, LAST_MY_ACTION, LAST_MY_PAYOFF, LAST_OTHERS_DEFECT_FRAC,
 ANY_OPPONENT_EVER_DEFECTED, OTHERS_DEFECT_RATE, GAME_T, GAME_R, GAME_P, GAME_S, NUM_OPPONENTS) = range(13)
HEADER_NAMES = ("round_frac", "first_round", "last_round", "last_my_action", "last_my_payoff",
                "last_others_defect_frac", "any_opponent_ever_defected", "others_defect_rate",
                "game_T", "game_R", "game_P", "game_S", "num_opponents")
HEADER_SIZE = len(HEADER_NAMES)
HISTORY_ROW = ("valid", "my_action", "others_defect_frac")
FEATURE_NAMES = HEADER_NAMES
"""The fixed header; the full per-env list is :func:`feature_names` (also ``env.feature_names``)."""


def feature_layout(num_agents: int, history: int) -> dict[str, int]:
    """Offsets of the blocks ``history``, ``opponent_last``, ``opponent_defections`` and the ``size``."""
    hist = HEADER_SIZE
    last = hist + len(HISTORY_ROW) * history
    counts = last + num_agents - 1
    return {"history": hist, "opponent_last": last, "opponent_defections": counts,
            "size": counts + num_agents - 1}


def feature_names(num_agents: int, history: int) -> list[str]:
    names = list(HEADER_NAMES)
    names += [f"ago_{k + 1}_{n}" for k in range(history) for n in HISTORY_ROW]
    names += [f"opponent_{j}_last_action" for j in range(num_agents - 1)]
    names += [f"opponent_{j}_defections" for j in range(num_agents - 1)]
    return names


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


class DilemmaEnv(TextParallelEnv):
    """The iterated N-player social dilemma (see the module docstring)."""

    metadata = {"render_modes": ["ansi", "human"], "name": "dilemma_v0", "is_parallelizable": True}

    def __init__(self, num_agents: int = 2, rounds: int = 20, game: str = "prisoners", history: int = 3,
                 continuation: float = 1.0, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        name = self.metadata["name"]
        check_arg(name, "num_agents", num_agents, "an int in {}..{}".format(*PLAYER_RANGE),
                  _is_int(num_agents) and PLAYER_RANGE[0] <= num_agents <= PLAYER_RANGE[1])
        check_arg(name, "rounds", rounds, "an int >= 1", _is_int(rounds) and rounds >= 1)
        check_arg(name, "game", game, ", ".join(repr(g) for g in GAMES), isinstance(game, str) and game in GAMES)
        check_arg(name, "history", history, "an int >= 0", _is_int(history) and history >= 0)
        check_arg(name, "continuation", continuation, "a number in (0, 1]",
                  isinstance(continuation, (int, float)) and not isinstance(continuation, bool)
                  and 0 < continuation <= 1)
        self.continuation = float(continuation)
        self.n_players = n = int(num_agents)
        self.rounds = int(rounds)
        self.game = game
        self.history = int(history)
        self.payoffs = dict(GAMES[game])
        g = self.payoffs
        # matrix[my][other] and table[my][k] = my payoff when k of the others defect
        self.matrix = ((g["R"], g["S"]), (g["T"], g["P"]))
        self._table = [[(m[0] * (n - 1 - k) + m[1] * k) / (n - 1) for k in range(n)] for m in self.matrix]
        self.reward_range = (min(g.values()), max(g.values()))
        self.possible_agents = [f"player_{i}" for i in range(n)]
        self._layout = feature_layout(n, self.history)
        self.num_features = self._layout["size"]
        self.feature_names = feature_names(n, self.history)
        self._obs_spaces = {a: obs_space(self.num_features, 2) for a in self.possible_agents}
        self._act_spaces = {a: spaces.Discrete(2) for a in self.possible_agents}
        mask = np.ones(2, dtype=np.int8)
        mask.flags.writeable = False
        self._mask = mask
        self._game_feats = [g["T"], g["R"], g["P"], g["S"], float(n - 1)]
        self._rng = np.random.default_rng()
        self._reset_state()

    def _reset_state(self) -> None:
        n = self.n_players
        self._t = 0
        self._over = False
        self._totals = [0.0] * n
        self._last_payoff = [0.0] * n
        self._last_actions = [0] * n
        self._defections = [0] * n
        self._cooperations = 0
        self._hist_feats: list[list[float]] = [[0.0] * (3 * self.history) for _ in range(n)]
        self._hist_text: list[list[str]] = [[] for _ in range(n)]

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)  # draws the length of a game when continuation < 1
        self._reset_state()
        self.agents = list(self.possible_agents)
        length = (f"{self.rounds} rounds" if self.continuation == 1.0
                  else f"up to {self.rounds} rounds, each continued with probability {self.continuation:g},")
        self._transcript = [f"{self.n_players} players, {length} of {self.game}"]
        return self._observe(), {a: {} for a in self.agents}

    def _observe(self) -> dict[str, dict[str, Any]]:
        n, t, rounds = self.n_players, self._t, self.rounds
        opp = n - 1
        defs, last = self._defections, self._last_actions
        total_def = sum(defs)
        any_def = sum(1 for d in defs if d)
        shown = f"/{rounds}" if self.continuation == 1.0 else ""  # an unknown horizon is not shown
        head = f"round {t + 1}{shown}" if not self._over else f"game over after {t} rounds"
        round_frac = t / rounds
        first, final = float(t == 0), float(t == rounds - 1)
        last_def = sum(last)
        obs = {}
        for i, a in enumerate(self.possible_agents):
            mine = last[i]
            others_def = total_def - defs[i]
            if t == 0:
                text = f"{head}. no history yet."
                last_frac = 0.0
            else:
                last_frac = (last_def - mine) / opp
                text = (f"{head}. recent (you|others): {', '.join(self._hist_text[i])}. "
                        f"last payoff {_fmt(self._last_payoff[i])}. others defected {others_def} "
                        f"{'time' if others_def == 1 else 'times'}.")
            feats = [round_frac, first, final, float(mine), self._last_payoff[i], last_frac,
                     float(any_def - (defs[i] > 0) > 0), others_def / (opp * t) if t else 0.0,
                     *self._game_feats, *self._hist_feats[i], *last[:i], *last[i + 1:], *defs[:i], *defs[i + 1:]]
            obs[a] = {"text": text, "features": np.array(feats, dtype=np.float32), "action_mask": self._mask}
        return obs

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            return {}, {}, {}, {}, {}
        agents, n, h = self.agents, self.n_players, self.history
        acts = [self.check_action(a, actions.get(a), self._mask) for a in agents]
        d = sum(acts)
        table = self._table
        pays = [table[x][d - x] for x in acts]
        opp = n - 1
        for i, x in enumerate(acts):
            self._totals[i] += pays[i]
            self._defections[i] += x
            if h:
                hf = self._hist_feats[i]
                hf[3:] = hf[:-3]
                hf[0], hf[1], hf[2] = 1.0, float(x), (d - x) / opp
                ht = self._hist_text[i]
                ht.append(f"{LETTERS[x]}|{''.join(LETTERS[y] for j, y in enumerate(acts) if j != i)}")
                if len(ht) > h:
                    del ht[0]
        self._cooperations += n - d
        self._last_actions, self._last_payoff = acts, pays
        self._t += 1
        self._transcript.append(f"round {self._t}: {' '.join(LETTERS[x].upper() for x in acts)}; "
                                f"payoffs {' '.join(_fmt(p) for p in pays)}")
        done = self._t >= self.rounds or (self.continuation < 1.0 and self._rng.random() >= self.continuation)
        self._over = done
        obs = self._observe()
        rewards = dict(zip(agents, pays))
        if done:
            self.agents = []
        return obs, rewards, dict.fromkeys(agents, done), dict.fromkeys(agents, False), {a: {} for a in agents}

    # ------------------------------------------------------------------ queries
    def action_names(self, agent: str) -> list[str]:
        if agent not in self._act_spaces:
            raise KeyError(f"{self.metadata['name']}: unknown agent {agent!r}; agents: {self.possible_agents}")
        return ["cooperate", "defect"]

    def metrics(self) -> dict[str, float]:
        n, t = self.n_players, self._t
        out = {"mean_payoff": sum(self._totals) / (n * t) if t else 0.0,
               "cooperation_rate": self._cooperations / (n * t) if t else 0.0}
        for i, p in enumerate(self._totals):
            out[f"payoff_player_{i}"] = p
        return out
