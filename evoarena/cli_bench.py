"""The benchmarking commands of the command line: ``tournament``, ``bench`` (sweeps) and ``exploit``.

:func:`add_bench_commands` adds them to the parser that :mod:`evoarena.cli` builds; they print through its console.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from evoarena.cli_io import console, env_kwargs


def _command_line(name: str, args: argparse.Namespace, positional: str, flags: dict[str, str]) -> str:
    """The command as typed (for reports): ``evoarena NAME POSITIONAL --flag value ...``."""
    import shlex

    parts = ["evoarena", name, positional]
    for dest, flag in flags.items():
        value = getattr(args, dest, None)
        if value in (None, [], False):
            continue
        values = [str(v) for v in (value if isinstance(value, list) else [value])]
        if value is True:
            parts += [flag]
        elif flag == "--set":  # given once per value (argparse appends)
            parts += [x for v in values for x in (flag, v)]
        else:
            parts += [flag, *values]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_tournament(args: argparse.Namespace) -> int:
    from evoarena.bench.tournament import TournamentConfig, run_config
    from evoarena.config import apply_overrides, read_yaml, validate_config

    if args.env.endswith((".yaml", ".yml")):
        data, source = apply_overrides(read_yaml(args.env), args.set), args.env
    else:
        if not args.agents:
            raise ValueError(f"evoarena tournament {args.env}: give --agents SPEC SPEC ... (or a tournament YAML "
                             "config such as configs/bench/axelrod.yaml)")
        data, source = {"name": args.env, "env": {"id": args.env}}, "command line"
    given = {"agents": args.agents, "episodes": args.episodes, "seed": args.seed, "groups": args.groups}
    data.update({k: v for k, v in given.items() if v is not None})
    if args.kw:
        env = dict(data.get("env") or {})
        env["kwargs"] = {**(env.get("kwargs") or {}), **env_kwargs(args.kw)}
        data["env"] = env
    cfg = validate_config(data, TournamentConfig, source)
    command = _command_line("tournament", args, args.env, {"agents": "--agents", "episodes": "--episodes",
                                                           "seed": "--seed", "groups": "--groups", "kw": "--kw",
                                                           "set": "--set", "out": "--out"})
    _, rows, paths = run_config(cfg, args.out, command=command, progress=True)
    table = Table(title=f"{cfg.env.id}: {len(rows)} agents, {cfg.episodes} episodes per match")
    for col in ("rank", "agent", "Bradley-Terry [95% CI]", "Elo", "W-D-L", "median score", "Axelrod rank"):
        table.add_column(col, no_wrap=col == "agent", min_width=max(len(r["agent"]) for r in rows) if
                         col == "agent" else None)
    for r in rows:
        table.add_row(str(r["rank"]), r["agent"], f"{r['bt']:+.2f} [{r['bt_low']:+.2f}, {r['bt_high']:+.2f}]",
                      f"{r['elo']:.0f}", f"{r['wins']}-{r['draws']}-{r['losses']}", f"{r['median_score']:.3f}",
                      str(r["axelrod_rank"]))
    console.print(table)
    console.print(f"wrote {paths['markdown'].parent}/: " + ", ".join(p.name for p in paths.values()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from evoarena.bench.sweep import aggregate, load_sweep, out_dir, run_sweep

    cfg = load_sweep(args.config, args.set)
    command = _command_line("bench", args, args.config, {"set": "--set", "workers": "--workers", "ray": "--ray",
                                                         "out": "--out", "publish": "--publish"})
    if args.report_only:
        aggregate(cfg, out_dir(cfg, args.out), command=command)
    else:
        try:
            run_sweep(cfg, args.out, workers=args.workers, ray_address=args.ray, echo=console.print, command=command)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"interrupted: no further run was started; finished runs are kept and an interrupted run resumes "
                  f"from its last checkpoint; resume the sweep with:\n  {command}", file=sys.stderr)
            return 130
    console.print(f"report: {out_dir(cfg, args.out) / 'bench.md'}")
    if args.publish:
        from evoarena.bench.sweep import publish

        copied = publish(out_dir(cfg, args.out), args.publish)
        console.print(f"published {len(copied)} files to {args.publish}")
    return 0


def add_bench_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """``tournament``, ``bench`` (sweeps) and ``exploit``."""
    p = add("exploit", cmd_exploit, "Train fresh exploiters against a frozen agent and a reference with the same "
                                    "budget; print both agents' scores under exploitation with 95%% intervals.")
    p.add_argument("agent", help="the agent spec, e.g. ckpt:models/dilemma/ppo")
    p.add_argument("--world", required=True, help="env id, e.g. dilemma_v0")
    p.add_argument("--budget", type=int, default=None, help="PPO updates per exploiter (default 40)")
    p.add_argument("--restarts", type=int, default=3, help="exploiters trained per agent; the strongest on "
                                                           "selection games is reported (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="repeat with exploiter seeds SEED, SEED+1, ...; the last "
                                                       "line is then the mean over seeds with its 95%% interval, "
                                                       "the worst seed and the paired difference (default 1)")
    p.add_argument("--episodes", type=int, default=200, help="fresh games for selection and for the report")
    p.add_argument("--reference", metavar="SPEC", help="the agent to compare with (default: tit_for_tat in "
                                                       "dilemma_v0, conceder in negotiation_v0)")
    p.add_argument("--kw", nargs="*", metavar="KEY=VALUE", help="env keyword arguments, e.g. rounds=50")
    p.add_argument("--run-dir", metavar="DIR", help="keep the exploiters' runs (TensorBoard) under DIR")
    p.add_argument("--json", metavar="FILE", help="also write both results as JSON")

    p = add("tournament", cmd_tournament, "Round-robin tournament: payoff matrix, Elo and Bradley-Terry ratings "
                                          "with 95%% intervals, Axelrod ranking; CSV, PNG, Markdown and JSON.")
    p.add_argument("env", help="env id (e.g. dilemma_v0), or a tournament YAML config (configs/bench/axelrod.yaml)")
    p.add_argument("--agents", nargs="+", metavar="SPEC", help="entrants: agent specs, each optionally NAME=SPEC")
    p.add_argument("--episodes", type=int, help="episodes per match (default 20)")
    p.add_argument("--seed", type=int, help="episode seeds are SEED.. in every match (default 0)")
    p.add_argument("--groups", type=int, help="N-player worlds: matches (groups) drawn (default ~4 per pair)")
    p.add_argument("--kw", nargs="*", metavar="KEY=VALUE", help="env keyword arguments, e.g. rounds=200")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of a tournament config, e.g. --set ratings.bootstrap=200")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/tournaments/NAME)")

    p = add("bench", cmd_bench, "Sweep variants x seeds of a run config (worker processes or Ray); IQM with "
                                "95%% intervals, probability of improvement, curves, profiles in bench.md.")
    p.add_argument("config", help="sweep YAML (see configs/bench/)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: in this process)")
    p.add_argument("--ray", metavar="auto|ADDRESS", help="run each run as a Ray task on the cluster at ADDRESS "
                                                        "(auto: the one `ray start` made on this machine)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a sweep config value")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default runs/bench/NAME)")
    p.add_argument("--report-only", action="store_true", help="only aggregate the finished runs into bench.md")
    p.add_argument("--publish", metavar="DIR", help="also copy bench.md, its PNGs and JSON and the tournament's files "
                                                  "to DIR (e.g. docs/results/NAME)")


def cmd_exploit(args: argparse.Namespace) -> int:
    from evoarena.bench import exploit as ex
    from evoarena.envs import describe

    describe(args.world)  # an unknown world fails here, naming the known ones
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    budget = args.budget if args.budget is not None else ex.DEFAULT_BUDGET
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        run_dir = None if args.run_dir is None else (Path(args.run_dir) / f"seed_{seed}" if args.seeds > 1
                                                     else args.run_dir)
        results = ex.compare(args.agent, args.reference or ex.default_reference(args.world), args.world, budget,
                             seed, args.episodes, env_kwargs(args.kw), run_dir, args.restarts)
        console.print(ex.table(results, args.world))
        print(("" if args.seeds == 1 else f"seed {seed}: ") + ex.summary_line(results["agent"], results["reference"]))
        runs.append(results)
    data: dict[str, Any] = {k: ex.as_dict(v) for k, v in runs[0].items()}
    if args.seeds > 1:
        data = {"seeds": [{k: ex.as_dict(v) for k, v in r.items()} for r in runs], "summary": ex.over_seeds(runs)}
        print(ex.seeds_line(data["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    return 0
