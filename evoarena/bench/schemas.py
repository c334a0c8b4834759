"""The YAML schemas of ``evoarena tournament CONFIG`` and ``evoarena bench CONFIG`` (sweeps), in one block.

They import only pydantic and :mod:`evoarena.config`, so that they can join the other schemas there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from evoarena.config import EnvConfig, Strict

#: tasks of a sweep that names none, by run command
DEFAULT_TASKS = {"train": {"score": {"result": "ppo.final_eval.score", "curve": "eval/score"}}}


# --------------------------------------------------------------------------- tournaments


class RatingsConfig(Strict):
    """How ratings are computed from the tournament's games."""

    elo_k: float = Field(16.0, gt=0)  #: Elo K factor
    elo_initial: float = 1500.0
    elo_orders: int = Field(200, ge=1)  #: random game orders the Elo ratings are averaged over
    bt_alpha: float = Field(0.01, ge=0)  #: L2 penalty of the Bradley-Terry fit (= ``ratings.DEFAULT_ALPHA``)
    bootstrap: int = Field(1000, ge=10)  #: bootstrap resamples of the Bradley-Terry intervals
    level: float = Field(0.95, gt=0, lt=1)
    seed: int = 0  #: seed of the game orders and the bootstrap


class TournamentConfig(Strict):
    """``evoarena tournament CONFIG``: entrants of one world, episodes per match, where results go."""

    name: str = "tournament"
    env: EnvConfig
    agents: list[str] = Field(min_length=1)  #: agent specs, each optionally ``NAME=SPEC``; ``scripted:*`` = all
    episodes: int = Field(20, ge=1)  #: episodes (repetitions) per match
    seed: int = 0  #: episode seeds are seed .. seed + episodes - 1 in every match
    groups: int | None = Field(None, ge=1)  #: N-player worlds: matches drawn (default ~4 per ordered pair)
    out: str | None = None  #: output folder (default runs/tournaments/NAME)
    ratings: RatingsConfig = Field(default_factory=RatingsConfig)


# --------------------------------------------------------------------------- sweeps


class TaskConfig(Strict):
    """One number per run to compare variants on (a "task" of Agarwal et al.), optionally normalised."""

    result: str | list[str]  #: key path into results.json, ``a.b.c`` (keys may contain dots) or a list of keys
    curve: str | None = None  #: TensorBoard scalar tag of its learning curve, e.g. ``eval/score``
    curve_offset: str | list[str] | None = None  #: key path of a number subtracted from the curve's steps
    #: (e.g. ``pipeline.stages.03_train.step_offset``: a pipeline stage's own step axis)
    low: float | None = None  #: with ``high``: scores become (x - low) / (high - low)
    high: float | None = None

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

    cpus: float = Field(1.0, ge=0)
    gpus: float = Field(0.0, ge=0)


class CrossPlayConfig(Strict):
    """Cross-play every run's final checkpoint (and a pool of fixed agents) in one tournament."""

    env: EnvConfig
    checkpoint: str | list[str]  #: key path into results.json of the checkpoint folder, e.g. ``ppo.checkpoint``
    subdir: str = ""  #: the agent's folder inside it, e.g. ``policies/main`` (a PPO checkpoint's learner)
    pool: list[str] = Field(default_factory=list)  #: fixed agents (NAME=SPEC) that also enter; "vs pool" scores
    episodes: int = Field(20, ge=1)
    seed: int = 0
    ratings: RatingsConfig = Field(default_factory=RatingsConfig)


class SweepConfig(Strict):
    """``evoarena bench CONFIG``: variants x seeds of one run config."""

    name: str = "sweep"
    command: Literal["train", "pretrain", "finetune", "run"]
    config: str  #: the run config (relative paths: from the current directory, like every run config path)
    set: list[str] = Field(default_factory=list)  #: overrides applied to every variant
    variants: dict[str, list[str] | VariantConfig] = Field(min_length=1)  #: name -> --set overrides, or a mapping
    seeds: list[int] = Field(min_length=1)
    seed_key: str = "seed"  #: the config key each run's seed is written to
    out: str | None = None  #: sweep folder (default runs/bench/NAME)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tasks: dict[str, TaskConfig] | None = None  #: default for train: ppo.final_eval.score with curve eval/score
    bootstrap: int = Field(2000, ge=100)  #: bootstrap resamples of every interval
    bootstrap_seed: int = 0
    env_name: str | None = None  #: environment name in the marl-eval export (default: the run config's env id)
    tournament: CrossPlayConfig | None = None

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
        return self

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
