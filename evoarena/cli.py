"""The ``evoarena`` command. Every subcommand is a thin call into the packages.

Bad input (unknown env, strategy, key, value, file) prints one ``error:`` line and exits 2;
``EVOARENA_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from evoarena.cli_bench import add_bench_commands
from evoarena.cli_io import console, env_kwargs

EPILOG = "Agent specs: random | scripted:NAME | ckpt:PATH | human. See `evoarena envs` for worlds and strategies."


# --------------------------------------------------------------------------- envs


def cmd_envs(args: argparse.Namespace) -> int:
    from evoarena.agents import describe_strategy, list_strategies
    from evoarena.envs import describe, list_envs

    table = Table(title="evoarena worlds")
    for col in ("env id", "agents", "actions", "strategies"):
        table.add_column(col)
    for env_id in list_envs():
        info = describe(env_id)
        acts = ", ".join(f"{a}: {info.num_actions[info.roles[a]]}" for a in info.agents)
        table.add_row(env_id, ", ".join(info.agents), acts, ", ".join(list_strategies(env_id)))
    console.print(table)
    if args.verbose:
        for env_id in list_envs():
            console.print(f"\n[bold]{env_id}[/bold]")
            for s in list_strategies(env_id):
                console.print(f"  scripted:{s:<24} {describe_strategy(env_id, s)}")
    return 0


# --------------------------------------------------------------------------- evaluate


def _print_summary(summary: dict[str, Any], title: str) -> None:
    """The result tables of a match summary (``bench.summarize``): per seat the agent, mean return and
    95% CI, then the mean of every metric."""
    table = Table(title=title)
    for col in ("seat", "agent", "mean return", "95% CI"):
        table.add_column(col, overflow="fold" if col == "agent" else "ellipsis")  # a long ckpt: path in full
    for seat, row in summary["seats"].items():
        table.add_row(seat, row["agent"], f"{row['mean_return']:.3f}", f"+- {row['ci95']:.3f}")
    console.print(table)
    metrics = Table(title="metrics (mean over episodes)")
    metrics.add_column("metric")
    metrics.add_column("value")
    for k, v in summary["metrics"].items():
        metrics.add_row(k, f"{v:.4f}")
    console.print(metrics)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from evoarena.bench import play, summarize

    result = play(args.env, args.agents, episodes=args.episodes, seed=args.seed, env_kwargs=env_kwargs(args.kw))
    summary = summarize(result)
    _print_summary(summary, f"{args.env}: {args.episodes} episodes, seed {args.seed}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
        console.print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- play


def cmd_play(args: argparse.Namespace) -> int:
    import numpy as np

    from evoarena.agents import make_agent
    from evoarena.agents.human import HumanAgent, HumanQuit, play_human
    from evoarena.bench import MatchResult, summarize
    from evoarena.envs import describe

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    names = list(describe(args.env, env_kwargs(args.kw)).agents)
    args.seat = args.seat or names[0]
    if args.seat not in names:
        raise ValueError(f"--seat {args.seat!r} is not an agent of {args.env}; choose from {names}")
    others = list(args.vs)
    if len(others) == 1:
        others = others * (len(names) - 1)
    if len(others) != len(names) - 1:
        raise ValueError(f"{args.env} needs {len(names) - 1} opponent spec(s) for --vs, got {len(args.vs)}")
    seats: dict[str, Any] = {}
    it = iter(others)
    for a in names:
        seats[a] = HumanAgent() if a == args.seat else make_agent(next(it), args.env, seed=args.seed)
    games = []
    for ep in range(args.episodes):
        console.rule(f"{args.env}: game {ep + 1} of {args.episodes} (seed {args.seed + ep})")
        try:
            games.append(play_human(args.env, seats, args.seat, args.seed + ep, env_kwargs(args.kw)))
        except HumanQuit as exc:
            print(f"stopped: {exc}; {len(games)} game(s) finished")
            if not games:
                return 1
            break
    played = MatchResult(args.env, names, {a: "human" if a == args.seat else seats[a].name for a in names},
                         {a: np.array([g.returns[a] for g in games]) for a in names}, [g.metrics for g in games])
    _print_summary(summarize(played), f"{args.env}: {len(games)} episode(s) played, seed {args.seed}")
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evoarena", description=__doc__.splitlines()[0], epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG)
        p.set_defaults(func=fn)
        commands[name] = fn
        return p

    p = add("envs", cmd_envs, "List the worlds: agents, action counts, scripted strategies.")
    p.add_argument("-v", "--verbose", action="store_true", help="also describe every strategy")

    p = add("evaluate", cmd_evaluate, "Play agents against each other and print mean return +- 95%% CI per seat.")
    p.add_argument("env", help="env id, e.g. dilemma_v0")
    p.add_argument("--agents", nargs="+", required=True, metavar="SPEC", help="one agent spec per seat")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kw", nargs="*", metavar="KEY=VALUE", help="env keyword arguments, e.g. num_agents=3")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")

    p = add("play", cmd_play, "Play a world yourself in the terminal against agents.")
    p.add_argument("env", help="env id, e.g. negotiation_v0")
    p.add_argument("--vs", nargs="+", default=["random"], metavar="SPEC", help="opponent spec(s)")
    p.add_argument("--seat", default=None, help="your agent name (default: the first agent)")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kw", nargs="*", metavar="KEY=VALUE", help="env keyword arguments")

    _add_training_commands(add)
    add_bench_commands(add)
    parser.set_defaults(command_names=tuple(commands))  # `parser.get_default("command_names")` lists them
    return parser


def _stage_command(stage: str) -> Callable[[argparse.Namespace], int]:
    """A subcommand running one stage from a YAML config into a run folder."""

    def run(args: argparse.Namespace) -> int:
        from evoarena.training.pipeline import run_command

        run_dir, result = run_command(stage, args.config, args.set, args.resume or args.run_dir, bool(args.resume))
        console.print(f"[bold]{stage}[/bold] done: {run_dir}")
        if isinstance(result, dict) and result.get("summary"):
            console.print(result["summary"])
        return 0

    return run


def _add_training_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Stage subcommands: each loads its config (validated before any work) and writes a run folder."""
    from evoarena.config import STAGES

    for stage, names in STAGES.items():
        if names.command is None:
            continue
        p = add(stage, _stage_command(stage), names.help)
        p.add_argument("config", nargs="?", help="YAML config (see configs/)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set ppo.lr=1e-4 (repeatable)")
        p.add_argument("--run-dir", help="run folder (default: runs/NAME from the config)")
        p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")

    p = add("run", cmd_run, "Run a pipeline of stages (pretrain -> finetune -> train -> evaluate) into one run "
                            "folder, then write its report.")
    p.add_argument("config", nargs="?", help="pipeline YAML (e.g. configs/quickstart.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value; a stage by name or index: --set stages.train.ppo.lr=1e-4 (repeatable)")
    p.add_argument("--run-dir", help="run folder (default: runs/NAME from the config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue: finished stages are skipped, the interrupted "
                                                       "one resumes from its last checkpoint")

    p = add("report", cmd_report, "Write report.md and plots/*.png of a run folder (the evolution table).")
    p.add_argument("run_dir", help="a run folder, e.g. runs/quickstart")


def cmd_run(args: argparse.Namespace) -> int:
    from evoarena.bench.report import write_report
    from evoarena.training.pipeline import run_command

    if not args.config and not args.resume:
        raise ValueError("evoarena run: give a CONFIG file, or --resume RUN_DIR")
    run_dir, results = run_command("run", args.config, args.set, args.resume or args.run_dir, bool(args.resume))
    report = write_report(run_dir)
    _print_evolution(results)
    console.print(f"[bold]run[/bold] done: {run_dir}\nreport: {report}\nTensorBoard: tensorboard --logdir {run_dir}")
    return 0


def _print_evolution(results: dict[str, Any]) -> None:
    """The evolution in words: each stage's paired gain on the pool and the unseen opponents."""
    from evoarena.bench.report import evaluation
    from evoarena.training.evaluate import evolution_words

    found = evaluation(results)
    if found:
        console.print("[bold]evolution[/bold] (mean score per game, paired on the same games):")
        for line in evolution_words(found[1]):
            console.print(f"  {line}", soft_wrap=True)


def cmd_report(args: argparse.Namespace) -> int:
    from evoarena.bench.report import write_report

    report = write_report(args.run_dir)
    text = report.read_text()
    console.print(text.split("\n## Paired gains")[0], soft_wrap=True)  # the intro and the evolution table
    console.print(f"wrote {report} and its plots in {report.parent / 'plots'}")
    return 0


# --------------------------------------------------------------------------- tournament and bench


def user_message(exc: BaseException) -> str | None:
    """The one-line ``error:`` text of an error the user can fix (bad input, a file-system fault, a run in
    use, too little memory); None for anything else (a bug: its traceback is shown)."""
    from evoarena.storage import RunLockedError, describe_os_error

    if isinstance(exc, OSError):
        from evoarena.training.infra import runs

        run_dir = runs.current_run_dir()
        line = describe_os_error(exc)
        return f"{run_dir}: {line}" if exc.filename is None and run_dir is not None else line
    if isinstance(exc, KeyError):
        return str(exc.args[0]) if exc.args else str(exc)
    if isinstance(exc, ValueError | RunLockedError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory; reduce the sizes in the config (episodes_per_update, num_envs, batch sizes)"
    if type(exc).__name__ == "TrainingError":
        return str(exc)
    return None


def _resume_hint(args: argparse.Namespace) -> str:
    """The command that continues the interrupted run, or "" when no run folder was made."""
    from evoarena.config import STAGE_COMMANDS
    from evoarena.training.infra import runs

    run_dir = runs.current_run_dir()
    if run_dir is None or (args.command != "run" and args.command not in STAGE_COMMANDS):
        return ""
    return f"evoarena {args.command} --resume {run_dir}"


def _terminate_like_interrupt() -> None:
    """SIGTERM (a scheduler stopping the job) does what Ctrl-C does: save, print the resume command."""
    import contextlib
    import signal

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, lambda _sig, _frame: signal.raise_signal(signal.SIGINT))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _terminate_like_interrupt()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        hint = _resume_hint(args)
        print("interrupted" + (f"; resume with:\n  {hint}" if hint else ""), file=sys.stderr)
        return 130
    except Exception as exc:
        msg = user_message(exc)
        if msg is None or os.environ.get("EVOARENA_DEBUG"):
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2
    finally:
        from evoarena.training.infra import runs

        runs.unlock_all()


if __name__ == "__main__":
    sys.exit(main())
