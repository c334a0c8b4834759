"""Scripted strategies of ``signaling_v0`` (one class serves both roles; the role is read from features)."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from evoarena.agents.scripted import ScriptedAgent, strategy
from evoarena.envs.signaling import decode_features, token_of_value

ENV_ID = "signaling_v0"


def literal_message(target: tuple[int, ...], others: list[tuple[int, ...]], vocab_size: int,
                    message_length: int) -> list[int]:
    """The literal speaker's message: the target attributes (as tokens of the literal code) that
    leave the fewest other candidates consistent, ``min(message_length, 3)`` of them, in
    size-colour-shape order, padded by repeating the last token."""
    k = min(message_length, len(target))
    other_tokens = [{token_of_value(j, vocab_size) for j in o} for o in others]
    best: tuple[int, tuple[int, ...]] | None = None
    for combo in combinations(sorted(target), k):
        toks = {token_of_value(j, vocab_size) for j in combo}
        clash = sum(1 for o in other_tokens if toks <= o)
        if best is None or clash < best[0]:
            best = (clash, combo)
    assert best is not None
    tokens = [token_of_value(j, vocab_size) for j in best[1]]
    return tokens + [tokens[-1]] * (message_length - len(tokens))


@strategy(ENV_ID, "random")
class RandomSignaling(ScriptedAgent):
    """Uniformly random legal action (random tokens as speaker, a random candidate as listener)."""

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        return self.random_legal(mask)


@strategy(ENV_ID, "literal")
class Literal(ScriptedAgent):
    """Literal code: the speaker names target attributes that single it out; the listener picks a consistent candidate.

    Speaker: sends the ``min(message_length, 3)`` target attribute values that leave the fewest
    other candidates consistent (words vocab: the words; symbols vocab: value ``j`` -> ``s{j % V}``,
    see ``evoarena.envs.signaling.token_of_value``), one per step. Listener: picks uniformly among
    the candidates having every message token among their attributes' tokens (all if none does).
    """

    def choose(self, features: np.ndarray, mask: np.ndarray) -> int:
        view = decode_features(features)
        v = view.vocab_size
        if view.is_speaker:
            message = literal_message(view.target, view.candidates[1:], v, view.message_length)
            action = 1 + message[min(view.position, view.message_length - 1)]
        else:
            said = set(view.message)
            fits = [i for i, c in enumerate(view.candidates)
                    if said <= {token_of_value(j, v) for j in c} and mask[1 + i]]
            if not fits:
                fits = [i for i in range(len(view.candidates)) if mask[1 + i]]
            action = 1 + int(fits[int(self.rng.integers(len(fits)))])
        return action if mask[action] else self.random_legal(mask)
