"""``negotiation_v0``: Deal or No Deal (Lewis et al. 2017), two agents splitting a pool of items.

A pool holds 1-4 each of three item types (book, hat, ball), 5-7 items in all. Each agent has
private non-negative integer values with total pool value exactly 10; every item type is worth
something to at least one agent and some type is worth something to both. Contexts (pool and
both value vectors) are drawn uniformly from the list of all valid contexts, built once at import.

The agents alternate (the first mover is drawn from the seed). A turn is either a proposal of
how many of each item the proposer takes (the other agent gets the rest) or ``accept`` of the
standing proposal (legal only once the opponent has proposed). Accepting ends the episode and
each agent is rewarded with the value of what it receives; ``max_turns`` turns without an
acceptance end the episode (a termination: that is the rule) with 0 for both.

Actions (``Discrete(127)``): 0 = ``wait`` (the only legal action of the agent not on turn),
1 = ``accept``, ``2 + b*25 + h*5 + l`` = take ``b`` books, ``h`` hats and ``l`` balls (legal when
each count is at most the pool's).

Observations: ``text`` (at most 64 MiniLM tokens), ``features`` (see :data:`FEATURE_NAMES`) and
``action_mask``. Offers are shown from the reader's point of view: an opponent's offer as the
counts *I would receive* (and their value to me), my own proposal as the counts I would take.

``reset(options=...)`` may fix the context: ``{"pool": (b, h, k), "values": ((..), (..)),
"first": 0 or 1}`` (any subset; the values need the pool; a bad context raises
:class:`EnvArgumentError`). Other option keys are ignored.

The action spaces are :class:`gymnasium.spaces.Discrete` whose ``sample()`` without a mask draws
from the agent's current legal actions, so ``env.action_space(agent).sample()`` is always legal
(pickling or copying such a space gives a plain ``Discrete``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from evoarena.envs.base import LegalDiscrete, TextParallelEnv, check_arg, obs_space, one_hot_mask

ITEMS: tuple[str, ...] = ("book", "hat", "ball")
TOTAL_VALUE = 10
MAX_COUNT = 4
MIN_ITEMS, MAX_ITEMS = 5, 7
NUM_ACTIONS = 2 + (MAX_COUNT + 1) ** 3  # 127
WAIT, ACCEPT, PROPOSE0 = 0, 1, 2

FEATURE_NAMES: tuple[str, ...] = (
    "pool_book", "pool_hat", "pool_ball",                        # 0-2   item counts in the pool
    "value_book", "value_hat", "value_ball",                     # 3-5   my value per item
    "turn", "max_turns", "turns_left",                           # 6-8   turns played, limit, limit - turn
    "my_turn", "moved_first",                                    # 9-10  flags
    "has_offer",                                                 # 11    a standing offer from the opponent
    "offer_get_book", "offer_get_hat", "offer_get_ball",         # 12-14 what I receive if I accept it
    "offer_value",                                               # 15    its value to me
    "opp_first_exists",                                          # 16    the opponent has proposed
    "opp_first_get_book", "opp_first_get_hat", "opp_first_get_ball",  # 17-19 I'd get under its first offer
    "opp_first_value",                                           # 20
    "opp_last_exists",                                           # 21
    "opp_last_get_book", "opp_last_get_hat", "opp_last_get_ball",     # 22-24 I'd get under its latest offer
    "opp_last_value",                                            # 25
    "opp_concession",                                            # 26    opp_last_value - opp_first_value
    "opp_num_offers",                                            # 27
    "my_last_exists",                                            # 28    I have proposed
    "my_last_take_book", "my_last_take_hat", "my_last_take_ball",     # 29-31 what I asked for last
    "my_last_value",                                             # 32    its value to me
    "my_num_offers",                                             # 33
    "num_offers",                                                # 34    proposals made by both
    "done",                                                      # 35    the episode is over
)
F_POOL, F_VALUES = 0, 3
F_TURN, F_MAX_TURNS, F_TURNS_LEFT, F_MY_TURN, F_MOVED_FIRST = 6, 7, 8, 9, 10
F_HAS_OFFER, F_OFFER_GET, F_OFFER_VALUE = 11, 12, 15
F_OPP_FIRST_EXISTS, F_OPP_FIRST_GET, F_OPP_FIRST_VALUE = 16, 17, 20
F_OPP_LAST_EXISTS, F_OPP_LAST_GET, F_OPP_LAST_VALUE = 21, 22, 25
F_OPP_CONCESSION, F_OPP_NUM_OFFERS = 26, 27
F_MY_LAST_EXISTS, F_MY_LAST_TAKE, F_MY_LAST_VALUE, F_MY_NUM_OFFERS = 28, 29, 32, 33
F_NUM_OFFERS, F_DONE = 34, 35
NUM_FEATURES = len(FEATURE_NAMES)

Triple = tuple[int, int, int]
Context = tuple[Triple, Triple, Triple]  # pool, values of player_0, values of player_1


def propose_action(take: Triple) -> int:
    """The action id of proposing to take ``take`` = (books, hats, balls)."""
    b, h, k = take
    return PROPOSE0 + b * 25 + h * 5 + k


PROPOSALS: tuple[Triple, ...] = tuple(
    (b, h, k) for b in range(MAX_COUNT + 1) for h in range(MAX_COUNT + 1) for k in range(MAX_COUNT + 1)
)
ACTION_NAMES: tuple[str, ...] = ("wait", "accept") + tuple(
    f"take {b} book {h} hat {k} ball" for b, h, k in PROPOSALS
)
WAIT_MASK = one_hot_mask(NUM_ACTIONS, WAIT)


def _value_vectors(pool: Triple) -> list[Triple]:
    cb, ch, cl = pool
    out = []
    for vb in range(TOTAL_VALUE // cb + 1):
        for vh in range((TOTAL_VALUE - cb * vb) // ch + 1):
            rest = TOTAL_VALUE - cb * vb - ch * vh
            if rest % cl == 0:
                out.append((vb, vh, rest // cl))
    return out


def _build_contexts() -> tuple[tuple[Triple, ...], dict[Triple, tuple[Triple, ...]], tuple[Context, ...]]:
    pools = tuple(
        (b, h, k)
        for b in range(1, MAX_COUNT + 1) for h in range(1, MAX_COUNT + 1) for k in range(1, MAX_COUNT + 1)
        if MIN_ITEMS <= b + h + k <= MAX_ITEMS
    )
    values = {p: tuple(_value_vectors(p)) for p in pools}
    contexts = []
    for p in pools:
        for v0 in values[p]:
            for v1 in values[p]:
                pairs = tuple(zip(v0, v1, strict=True))
                if all(a + b > 0 for a, b in pairs) and any(a > 0 and b > 0 for a, b in pairs):
                    contexts.append((p, v0, v1))
    return pools, values, tuple(contexts)


POOLS, VALUE_VECTORS, CONTEXTS = _build_contexts()
_CONTEXT_SET = frozenset(CONTEXTS)


def is_valid_context(pool: Triple, v0: Triple, v1: Triple) -> bool:
    """Whether ``(pool, v0, v1)`` obeys every rule of the game's contexts."""
    return (pool, v0, v1) in _CONTEXT_SET


class _PoolTable:
    """Per-pool constants: legal proposals and the mover's masks."""

    __slots__ = ("pool", "takes", "mask_open", "mask_offer", "header")

    def __init__(self, pool: Triple) -> None:
        self.pool = pool
        self.takes = tuple(t for t in PROPOSALS if t[0] <= pool[0] and t[1] <= pool[1] and t[2] <= pool[2])
        self.mask_open = np.zeros(NUM_ACTIONS, dtype=np.int8)
        self.mask_open[[propose_action(t) for t in self.takes]] = 1
        self.mask_offer = self.mask_open.copy()
        self.mask_offer[ACCEPT] = 1
        self.header = f"pool {pool[0]} book {pool[1]} hat {pool[2]} ball. my values"


_POOL_TABLES = {p: _PoolTable(p) for p in POOLS}


@lru_cache(maxsize=4096)
def pareto_utilities(pool: Triple, v0: Triple, v1: Triple) -> frozenset[tuple[int, int]]:
    """The Pareto-optimal (score of player_0, score of player_1) pairs over all splits of ``pool``."""
    points = set()
    for t in PROPOSALS:
        if t[0] <= pool[0] and t[1] <= pool[1] and t[2] <= pool[2]:
            points.add((
                v0[0] * t[0] + v0[1] * t[1] + v0[2] * t[2],
                v1[0] * (pool[0] - t[0]) + v1[1] * (pool[1] - t[1]) + v1[2] * (pool[2] - t[2]),
            ))
    front, best = [], -1
    for a, b in sorted(points, reverse=True):  # by player_0's score, then player_1's, both descending
        if b > best:  # every point before has a higher (or equal with a higher) score for player_0
            front.append((a, b))
            best = b
    return frozenset(front)


def is_pareto_optimal(pool: Triple, v0: Triple, v1: Triple, get0: Triple) -> bool:
    """Whether the split giving ``get0`` to player_0 (the rest to player_1) is Pareto-optimal."""
    u0 = sum(v * g for v, g in zip(v0, get0, strict=True))
    u1 = sum(v * (c - g) for v, c, g in zip(v1, pool, get0, strict=True))
    return (u0, u1) in pareto_utilities(pool, v0, v1)


def _fmt(x: Triple) -> str:
    return f"{x[0]} {x[1]} {x[2]}"


class NegotiationEnv(TextParallelEnv):
    """Deal or No Deal: two agents alternate proposals to split a pool of books, hats and balls."""

    metadata = {"render_modes": ["ansi", "human"], "name": "negotiation_v0", "is_parallelizable": True}

    def __init__(self, max_turns: int = 10, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        name = self.metadata["name"]
        is_int = isinstance(max_turns, (int, np.integer)) and not isinstance(max_turns, bool)
        check_arg(name, "max_turns", max_turns, "an int >= 2", is_int and max_turns >= 2)
        self.max_turns = int(max_turns)
        self.possible_agents = ["player_0", "player_1"]
        self.feature_names = list(FEATURE_NAMES)
        self.agents = []
        for a in self.possible_agents:
            self._obs_spaces[a] = obs_space(NUM_FEATURES, NUM_ACTIONS)
            self._act_spaces[a] = LegalDiscrete(NUM_ACTIONS, self._masks, a)
        self._rng = np.random.default_rng()
        self._context: Context | None = None
        self._reset_state(CONTEXTS[0], 0)
        self._done = True

    # ------------------------------------------------------------------ state
    def _reset_state(self, context: Context, first: int) -> None:
        self._context = context
        self._pool = context[0]
        self._vals = (context[1], context[2])
        self._table = _POOL_TABLES[self._pool]
        self._first = first
        self._mover = first
        self._t = 0
        self._first_take: list[Triple | None] = [None, None]
        self._last_take: list[Triple | None] = [None, None]
        self._n_offers = [0, 0]
        self._deal: tuple[Triple, Triple] | None = None  # what player_0 and player_1 receive
        self._scores = [0, 0]
        self._done = False
        v0, v1 = self._vals
        self._headers = (f"{self._table.header} {_fmt(v0)}. turn ", f"{self._table.header} {_fmt(v1)}. turn ")

    def _context_from_options(self, options: dict | None) -> tuple[Context | None, int | None]:
        if not options:
            return None, None
        name = self.metadata["name"]
        first = options.get("first")
        if first is not None:
            check_arg(name, "options.first", first, "0 or 1", first in (0, 1) and not isinstance(first, bool))
            first = int(first)
        pool, values = options.get("pool"), options.get("values")
        context = None
        if values is not None or pool is not None:
            try:
                p = tuple(int(x) for x in pool)
                v0, v1 = (tuple(int(x) for x in v) for v in values)
                context = (p, v0, v1)
            except (TypeError, ValueError):
                context = None
            check_arg(name, "options.pool/values", (pool, values),
                      "a pool of 1-4 of each item (5-7 in all) and two value vectors of total 10 each, every "
                      "item valued by someone and some item valued by both",
                      context is not None and is_valid_context(*context))
        return context, first

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        context, first = self._context_from_options(options)
        if context is None:
            context = CONTEXTS[int(self._rng.integers(len(CONTEXTS)))]
        if first is None:
            first = int(self._rng.integers(2))
        self._reset_state(context, first)
        self.agents = self.possible_agents[:]
        self._update_masks()
        pool, v0, v1 = context
        self._transcript = [
            f"pool: {pool[0]} book, {pool[1]} hat, {pool[2]} ball; values player_0 {_fmt(v0)}, "
            f"player_1 {_fmt(v1)}; max {self.max_turns} turns; player_{first} moves first"
        ]
        return {a: self._observe(i) for i, a in enumerate(self.possible_agents)}, {a: {} for a in self.agents}

    def _update_masks(self) -> None:
        if self._done:
            return
        m = self._mover
        mover_mask = self._table.mask_offer if self._t > 0 else self._table.mask_open
        self._masks[self.possible_agents[m]] = mover_mask
        self._masks[self.possible_agents[1 - m]] = WAIT_MASK

    # ------------------------------------------------------------------ step
    def step(self, actions: dict[str, Any]):
        if not self.agents:
            return {}, {}, {}, {}, {}
        m = self._mover
        mover, other = self.possible_agents[m], self.possible_agents[1 - m]
        if mover not in actions:
            raise ValueError(f"{self.metadata['name']}: missing action for agent {mover!r}, whose turn it is")
        if other in actions:
            self.check_action(other, actions[other], WAIT_MASK)
        a = self.check_action(mover, actions[mover], self._masks[mover])
        self._t += 1
        pool = self._pool
        if a == ACCEPT:
            take = self._last_take[1 - m]
            give = (pool[0] - take[0], pool[1] - take[1], pool[2] - take[2])
            self._deal = (give, take) if m == 0 else (take, give)
            v0, v1 = self._vals
            d0, d1 = self._deal
            self._scores = [v0[0] * d0[0] + v0[1] * d0[1] + v0[2] * d0[2],
                            v1[0] * d1[0] + v1[1] * d1[1] + v1[2] * d1[2]]
            self._done = True
            self._transcript.append(f"turn {self._t}: {mover} accepts")
            self._transcript.append(
                f"deal: player_0 gets {_fmt(d0)} (score {self._scores[0]}), "
                f"player_1 gets {_fmt(d1)} (score {self._scores[1]})")
        else:
            take = PROPOSALS[a - PROPOSE0]
            if self._first_take[m] is None:
                self._first_take[m] = take
            self._last_take[m] = take
            self._n_offers[m] += 1
            self._transcript.append(f"turn {self._t}: {mover} proposes to {ACTION_NAMES[a]}")
            if self._t >= self.max_turns:
                self._done = True
                self._transcript.append(f"no deal after {self._t} turns: both score 0")
        if self._done:
            rewards = {"player_0": float(self._scores[0]), "player_1": float(self._scores[1])}
            done = True
        else:
            self._mover = 1 - m
            self._update_masks()
            rewards = {"player_0": 0.0, "player_1": 0.0}
            done = False
        obs = {"player_0": self._observe(0), "player_1": self._observe(1)}
        terminations = {"player_0": done, "player_1": done}
        truncations = {"player_0": False, "player_1": False}
        infos = {"player_0": {}, "player_1": {}}
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    # ------------------------------------------------------------------ observations
    def _observe(self, i: int) -> dict[str, Any]:
        pool, vals, t, T = self._pool, self._vals[i], self._t, self.max_turns
        vb, vh, vl = vals
        j = 1 - i
        done = self._done
        my_turn = (not done) and self._mover == i
        if done:
            status = "game over, deal." if self._deal is not None else "game over, no deal."
            shown_turn = t
            mask = WAIT_MASK.copy()
        else:
            status = "my move." if my_turn else "their move."
            shown_turn = t + 1
            mask = self._masks[self.possible_agents[i]].copy()
        parts = [f"{self._headers[i]}{shown_turn}/{T}, {status}"]

        of, ol = self._first_take[j], self._last_take[j]
        if of is None:
            opp = [0.0] * 12
            parts.append(" no offer from them.")
        else:
            f0, f1, f2 = pool[0] - of[0], pool[1] - of[1], pool[2] - of[2]
            l0, l1, l2 = pool[0] - ol[0], pool[1] - ol[1], pool[2] - ol[2]
            fv = vb * f0 + vh * f1 + vl * f2
            lv = vb * l0 + vh * l1 + vl * l2
            opp = [1.0, f0, f1, f2, fv, 1.0, l0, l1, l2, lv, lv - fv, self._n_offers[j]]
            parts.append(f" they offered me first {f0} {f1} {f2} ({fv}), last {l0} {l1} {l2} ({lv}).")
        has_offer = my_turn and ol is not None
        if has_offer:
            offer = [1.0, opp[6], opp[7], opp[8], opp[9]]
        else:
            offer = [0.0, 0.0, 0.0, 0.0, 0.0]
        mine_t = self._last_take[i]
        if mine_t is None:
            mine = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        else:
            mv = vb * mine_t[0] + vh * mine_t[1] + vl * mine_t[2]
            mine = [1.0, mine_t[0], mine_t[1], mine_t[2], mv, self._n_offers[i]]
            parts.append(f" I asked {mine_t[0]} {mine_t[1]} {mine_t[2]} ({mv}).")
        features = np.array(
            [pool[0], pool[1], pool[2], vb, vh, vl, t, T, T - t, my_turn, self._first == i]
            + offer + opp + mine + [self._n_offers[0] + self._n_offers[1], done],
            dtype=np.float32,
        )
        return {"text": "".join(parts), "features": features, "action_mask": mask}

    # ------------------------------------------------------------------ info
    def action_names(self, agent: str) -> list[str]:
        """``wait``, ``accept`` and ``take B book H hat L ball`` for every action id (same at every step)."""
        return list(ACTION_NAMES)

    def context(self) -> Context:
        """The current episode's (pool, values of player_0, values of player_1)."""
        return self._context

    def metrics(self) -> dict[str, float]:
        s0, s1 = self._scores
        agreed = self._deal is not None
        pareto = agreed and is_pareto_optimal(self._pool, self._vals[0], self._vals[1], self._deal[0])
        return {
            "score_player_0": float(s0),
            "score_player_1": float(s1),
            "agreement": float(agreed),
            "pareto_optimal": float(pareto),
            "joint_score": float(s0 + s1),
            "turns": float(self._t),
        }
