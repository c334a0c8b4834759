"""``signaling_v0`` -- a referential game: a speaker names a target object, listeners pick it out.

Objects have a size, a colour and a shape (3 x 4 x 4 = 48 objects, see :data:`SIZES`,
:data:`COLOURS`, :data:`SHAPES`). Each episode draws ``num_candidates`` distinct candidates; the
first one drawn is the target. Agents: ``speaker`` and ``listener_0 .. listener_{n-1}``.

Steps (an episode has ``message_length + 1`` steps):

* steps ``0 .. message_length-1``: the speaker sends one token per step (it sees the target, the
  other candidates and what it has said so far); listeners have only ``wait`` legal;
* the last step: every listener sees the whole message and its OWN shuffled candidate list and
  picks one; the speaker has only ``wait`` legal.

Reward: 0 on every step but the last; on the last every agent (speaker and listeners) gets the
fraction of listeners that picked the target, in ``[0, 1]``.

Actions: speaker ``Discrete(1 + V)``: 0 = ``wait``, ``1 + t`` = token ``t``; listener
``Discrete(1 + num_candidates)``: 0 = ``wait``, ``1 + i`` = its ``i``-th candidate (in its own
shuffled order). ``action_names(listener)`` gives the bare candidate descriptions
(``"small red circle"``), ``action_names("speaker")`` the tokens.

Vocabularies: ``vocab="words"`` -- the ``V = 11`` attribute words :data:`ATTRIBUTE_WORDS`
(token ``t`` is the word ``ATTRIBUTE_WORDS[t]``); ``vocab="symbols"`` -- ``V = vocab_size``
meaningless tokens ``s0 .. s{V-1}``. :func:`token_of_value` is the fixed literal code that the
scripted ``literal`` strategy uses: attribute value ``j`` (index in ``ATTRIBUTE_WORDS``) is token
``j % V``; for words that is the word itself.

Features (float32, identical layout for every agent of one env; offsets from
:func:`feature_layout`, names from :func:`feature_names`, decoding with :func:`decode_features`):

* header :data:`HEADER_NAMES` (indices ``IS_SPEAKER .. NUM_CANDIDATES``): is_speaker, listening
  (1 on the listeners' step), position (tokens said so far), message_length, vocab_size,
  is_words, num_candidates;
* message: ``message_length`` rows of ``V``, row ``k`` one-hot of the ``k``-th token (zeros
  while unsaid);
* target: multi-hot over the 11 attribute values (speaker only; zeros for listeners);
* candidates: ``num_candidates`` rows of 11 multi-hot attribute values -- for the speaker row 0
  is the target and rows 1.. the other candidates in the order of its text; for a listener
  row ``i`` is its candidate ``i`` (action ``1 + i``).

Texts (<= 64 MiniLM tokens with default kwargs): speaker
``"target: small red circle. others: large blue star, small green square, medium red circle. said: red"``;
listener ``"message: red circle. candidates: 1 large blue star, 2 small red circle, ..."``.

Metrics: ``accuracy`` (fraction of correct listeners) and ``correct_listener_i`` (0/1).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from evoarena.envs.base import LegalDiscrete, TextParallelEnv, check_arg, obs_space, one_hot_mask

SIZES = ("small", "medium", "large")
COLOURS = ("red", "blue", "green", "yellow")
SHAPES = ("circle", "square", "triangle", "star")
ATTRIBUTE_WORDS = SIZES + COLOURS + SHAPES
"""Attribute values; value index ``j`` is the position here (sizes 0-2, colours 3-6, shapes 7-10)."""
NUM_VALUES = len(ATTRIBUTE_WORDS)
NUM_OBJECTS = len(SIZES) * len(COLOURS) * len(SHAPES)

# object o = (size * 4 + colour) * 4 + shape; its attribute values and its description
OBJECT_VALUES: tuple[tuple[int, int, int], ...] = tuple(
    (s, len(SIZES) + c, len(SIZES) + len(COLOURS) + h)
    for s in range(len(SIZES)) for c in range(len(COLOURS)) for h in range(len(SHAPES))
)
OBJECT_TEXT: tuple[str, ...] = tuple(" ".join(ATTRIBUTE_WORDS[j] for j in v) for v in OBJECT_VALUES)
_OBJECT_HOT = np.zeros((NUM_OBJECTS, NUM_VALUES), dtype=np.float32)
for _o, _v in enumerate(OBJECT_VALUES):
    _OBJECT_HOT[_o, list(_v)] = 1.0

VOCABS = ("words", "symbols")
MAX_LISTENERS = 4
CANDIDATE_RANGE = (2, 8)
MESSAGE_LENGTH_RANGE = (1, 4)
VOCAB_SIZE_RANGE = (2, 64)

IS_SPEAKER, LISTENING, POSITION, MESSAGE_LENGTH, VOCAB_SIZE, IS_WORDS, NUM_CANDIDATES = range(7)
HEADER_NAMES = ("is_speaker", "listening", "position", "message_length", "vocab_size", "is_words",
                "num_candidates")
HEADER_SIZE = len(HEADER_NAMES)
FEATURE_NAMES = HEADER_NAMES
"""The fixed header; the full per-env list is :func:`feature_names` (also ``env.feature_names``)."""


def token_of_value(value: int, vocab_size: int) -> int:
    """The literal code: attribute value ``value`` (index in ATTRIBUTE_WORDS) is token ``value % V``."""
    return value % vocab_size


def feature_layout(num_candidates: int, message_length: int, vocab_size: int) -> dict[str, int]:
    """Offsets of the blocks: ``message``, ``target``, ``candidates`` and the total ``size``."""
    message = HEADER_SIZE
    target = message + message_length * vocab_size
    candidates = target + NUM_VALUES
    return {"message": message, "target": target, "candidates": candidates,
            "size": candidates + num_candidates * NUM_VALUES}


def feature_names(num_candidates: int, message_length: int, vocab_size: int) -> list[str]:
    """The name of every feature for these kwargs (``V`` = 11 for the words vocabulary)."""
    names = list(HEADER_NAMES)
    names += [f"message_{k}_token_{t}" for k in range(message_length) for t in range(vocab_size)]
    names += [f"target_{w}" for w in ATTRIBUTE_WORDS]
    names += [f"candidate_{i}_{w}" for i in range(num_candidates) for w in ATTRIBUTE_WORDS]
    return names


class SignalingView(NamedTuple):
    """A decoded feature vector."""

    is_speaker: bool
    listening: bool
    position: int
    message_length: int
    vocab_size: int
    is_words: bool
    message: list[int]  # the tokens said so far
    target: tuple[int, ...]  # attribute values of the target (empty for listeners)
    candidates: list[tuple[int, ...]]  # attribute values of each candidate row


def decode_features(features: np.ndarray) -> SignalingView:
    """Decode a ``signaling_v0`` feature vector (any kwargs) into a :class:`SignalingView`."""
    f = np.asarray(features)
    pos, length, vsize, ncand = int(f[POSITION]), int(f[MESSAGE_LENGTH]), int(f[VOCAB_SIZE]), int(f[NUM_CANDIDATES])
    lay = feature_layout(ncand, length, vsize)
    msg_block = f[lay["message"]:lay["target"]].reshape(length, vsize)
    message = [int(np.argmax(msg_block[k])) for k in range(min(pos, length))]
    target = tuple(int(j) for j in np.flatnonzero(f[lay["target"]:lay["candidates"]]))
    cand_block = f[lay["candidates"]:lay["size"]].reshape(ncand, NUM_VALUES)
    candidates = [tuple(int(j) for j in np.flatnonzero(row)) for row in cand_block]
    return SignalingView(bool(f[IS_SPEAKER]), bool(f[LISTENING]), pos, length, vsize, bool(f[IS_WORDS]),
                         message, target, candidates)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _frozen(mask: np.ndarray) -> np.ndarray:
    mask.flags.writeable = False
    return mask


class SignalingEnv(TextParallelEnv):
    """The referential game (see the module docstring)."""

    metadata = {"render_modes": ["ansi", "human"], "name": "signaling_v0", "is_parallelizable": True}

    def __init__(self, num_listeners: int = 1, num_candidates: int = 4, message_length: int = 2,
                 vocab: str = "words", vocab_size: int = 8, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        name = self.metadata["name"]
        check_arg(name, "num_listeners", num_listeners, f"an int in 1..{MAX_LISTENERS}",
                  _is_int(num_listeners) and 1 <= num_listeners <= MAX_LISTENERS)
        check_arg(name, "num_candidates", num_candidates, "an int in {}..{}".format(*CANDIDATE_RANGE),
                  _is_int(num_candidates) and CANDIDATE_RANGE[0] <= num_candidates <= CANDIDATE_RANGE[1])
        check_arg(name, "message_length", message_length, "an int in {}..{}".format(*MESSAGE_LENGTH_RANGE),
                  _is_int(message_length)
                  and MESSAGE_LENGTH_RANGE[0] <= message_length <= MESSAGE_LENGTH_RANGE[1])
        check_arg(name, "vocab", vocab, "'words' or 'symbols'", isinstance(vocab, str) and vocab in VOCABS)
        check_arg(name, "vocab_size", vocab_size,
                  "an int in {}..{} (used by vocab='symbols')".format(*VOCAB_SIZE_RANGE),
                  _is_int(vocab_size) and VOCAB_SIZE_RANGE[0] <= vocab_size <= VOCAB_SIZE_RANGE[1])
        self.num_listeners = int(num_listeners)
        self.num_candidates = nc = int(num_candidates)
        self.message_length = ml = int(message_length)
        self.vocab = vocab
        self.tokens: tuple[str, ...] = (ATTRIBUTE_WORDS if vocab == "words"
                                        else tuple(f"s{i}" for i in range(int(vocab_size))))
        self.vocab_size = v = len(self.tokens)
        self.listeners = [f"listener_{i}" for i in range(self.num_listeners)]
        self.possible_agents = ["speaker", *self.listeners]
        self._layout = lay = feature_layout(nc, ml, v)
        self.num_features = lay["size"]
        self.feature_names = feature_names(nc, ml, v)

        n_spk, n_lis = 1 + v, 1 + nc
        self._act_spaces = {"speaker": LegalDiscrete(n_spk, self._masks, "speaker")}
        self._obs_spaces = {"speaker": obs_space(self.num_features, n_spk)}
        for a in self.listeners:
            self._act_spaces[a] = LegalDiscrete(n_lis, self._masks, a)
            self._obs_spaces[a] = obs_space(self.num_features, n_lis)
        talk = np.ones(n_spk, dtype=np.int8)
        talk[0] = 0
        pick = np.ones(n_lis, dtype=np.int8)
        pick[0] = 0
        self._m_talk, self._m_spk_wait = _frozen(talk), _frozen(one_hot_mask(n_spk, 0))
        self._m_pick, self._m_lis_wait = _frozen(pick), _frozen(one_hot_mask(n_lis, 0))
        self._speaker_names = ["wait", *self.tokens]

        template = np.zeros(self.num_features, dtype=np.float32)
        template[[MESSAGE_LENGTH, VOCAB_SIZE, IS_WORDS, NUM_CANDIDATES]] = (ml, v, vocab == "words", nc)
        self._template = template
        self._rng = np.random.default_rng()
        self._t = 0
        self._candidates: list[int] = []
        self._target = 0
        self._said: list[int] = []
        self._picks: dict[str, int] = {}
        self._correct = [0.0] * self.num_listeners
        self._vecs: dict[str, np.ndarray] = {}
        self._lis_objects: dict[str, list[int]] = {}
        self._lis_names: dict[str, list[str]] = {}
        self._lis_suffix: dict[str, str] = {}
        self._spk_prefix = ""

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        nc, nl, lay = self.num_candidates, self.num_listeners, self._layout
        u = self._rng.random(NUM_OBJECTS + nl * nc).tolist()  # one draw: candidates, then listener orders
        cands = sorted(range(NUM_OBJECTS), key=u.__getitem__)[:nc]
        self._candidates, self._target = cands, cands[0]
        self.agents = list(self.possible_agents)
        self._t, self._said, self._picks = 0, [], {}
        self._correct = [0.0] * nl

        c0, t0 = lay["candidates"], lay["target"]
        spk = self._template.copy()
        spk[IS_SPEAKER] = 1.0
        spk[t0:c0] = _OBJECT_HOT[self._target]
        for i, o in enumerate(cands):
            spk[c0 + NUM_VALUES * i:c0 + NUM_VALUES * (i + 1)] = _OBJECT_HOT[o]
        self._vecs = {"speaker": spk}
        self._lis_objects, self._lis_names, self._lis_suffix = {}, {}, {}
        for li, a in enumerate(self.listeners):
            base = NUM_OBJECTS + li * nc
            objs = [cands[i] for i in sorted(range(nc), key=lambda i, b=base: u[b + i])]
            lv = self._template.copy()
            for i, o in enumerate(objs):
                lv[c0 + NUM_VALUES * i:c0 + NUM_VALUES * (i + 1)] = _OBJECT_HOT[o]
            self._vecs[a] = lv
            self._lis_objects[a] = objs
            descs = [OBJECT_TEXT[o] for o in objs]
            self._lis_names[a] = ["wait", *descs]
            self._lis_suffix[a] = ". candidates: " + ", ".join(f"{i + 1} {d}" for i, d in enumerate(descs))
        target_text = OBJECT_TEXT[self._target]
        self._spk_prefix = f"target: {target_text}. others: " + ", ".join(OBJECT_TEXT[o] for o in cands[1:])
        self._masks["speaker"] = self._m_talk
        for a in self.listeners:
            self._masks[a] = self._m_lis_wait
        self._transcript = [f"target: {target_text}; candidates: " + ", ".join(OBJECT_TEXT[o] for o in cands)]
        return self._observe("nothing", "none yet"), {a: {} for a in self.agents}

    def _observe(self, said: str, message: str) -> dict[str, dict[str, Any]]:
        masks, vecs = self._masks, self._vecs
        obs = {"speaker": {"text": f"{self._spk_prefix}. said: {said}", "features": vecs["speaker"].copy(),
                           "action_mask": masks["speaker"]}}
        for a in self.listeners:
            obs[a] = {"text": f"message: {message}{self._lis_suffix[a]}", "features": vecs[a].copy(),
                      "action_mask": masks[a]}
        return obs

    def _action(self, agent: str, actions: dict, mask: np.ndarray) -> int:
        if agent in actions:
            return self.check_action(agent, actions[agent], mask)
        if mask.sum() == 1:  # an agent with one legal action may be left out
            return int(mask.argmax())
        return self.check_action(agent, None, mask)

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            return {}, {}, {}, {}, {}
        masks, t, agents = self._masks, self._t, self.agents
        if t < self.message_length:
            token = self._action("speaker", actions, masks["speaker"]) - 1
            for a in self.listeners:
                self._action(a, actions, masks[a])
            self._said.append(token)
            self._t = t + 1
            idx = self._layout["message"] + t * self.vocab_size + token
            last = self._t == self.message_length
            for vec in self._vecs.values():
                vec[POSITION] = self._t
                vec[idx] = 1.0
                if last:
                    vec[LISTENING] = 1.0
            if last:
                masks["speaker"] = self._m_spk_wait
                for a in self.listeners:
                    masks[a] = self._m_pick
            said = " ".join(self.tokens[k] for k in self._said)
            self._transcript.append(f"speaker: {self.tokens[token]}")
            obs = self._observe(said, said)
            rewards = dict.fromkeys(agents, 0.0)
            terms = dict.fromkeys(agents, False)
        else:
            self._action("speaker", actions, masks["speaker"])
            picks = {a: self._lis_objects[a][self._action(a, actions, masks[a]) - 1] for a in self.listeners}
            self._picks = picks
            self._correct = [float(picks[a] == self._target) for a in self.listeners]
            acc = sum(self._correct) / self.num_listeners
            self._t = t + 1
            said = " ".join(self.tokens[k] for k in self._said)
            for a, ok in zip(self.listeners, self._correct):
                self._transcript.append(f"{a} picks {OBJECT_TEXT[picks[a]]}: {'correct' if ok else 'wrong'}")
            self._transcript.append(f"accuracy {acc:g}")
            masks["speaker"] = self._m_spk_wait
            for a in self.listeners:
                masks[a] = self._m_lis_wait
            obs = {"speaker": {"text": f"{self._spk_prefix}. said: {said}. accuracy {acc:g}",
                               "features": self._vecs["speaker"].copy(), "action_mask": self._m_spk_wait}}
            for a, ok in zip(self.listeners, self._correct):
                obs[a] = {"text": f"message: {said}. you picked {OBJECT_TEXT[picks[a]]}: "
                                  f"{'correct' if ok else 'wrong'}.",
                          "features": self._vecs[a].copy(), "action_mask": self._m_lis_wait}
            rewards = dict.fromkeys(agents, acc)
            terms = dict.fromkeys(agents, True)
            self.agents = []
        return obs, rewards, terms, dict.fromkeys(agents, False), {a: {} for a in agents}

    # ------------------------------------------------------------------ queries
    def action_names(self, agent: str) -> list[str]:
        if agent == "speaker":
            return list(self._speaker_names)
        if agent in self._lis_names:
            return list(self._lis_names[agent])
        if agent in self._act_spaces:  # before the first reset
            return ["wait"] + [f"candidate {i + 1}" for i in range(self.num_candidates)]
        raise KeyError(f"{self.metadata['name']}: unknown agent {agent!r}; agents: {self.possible_agents}")

    def metrics(self) -> dict[str, float]:
        out = {"accuracy": sum(self._correct) / self.num_listeners}
        for i, c in enumerate(self._correct):
            out[f"correct_listener_{i}"] = c
        return out
