"""The GPU check: both GPU chains at a small scale, in one short run (<= 8 minutes on one GPU, by design; it has not
run on a GPU yet, see docs/guide/gpu.md).

Run:  .venv/bin/python benchmarks/gpu_check.py [--out DIR] [--report docs/results/gpu]
      .venv/bin/python benchmarks/gpu_check.py --dry-run     # on a CPU: every step at the smallest scale

It prints the device and whether bf16 is on, then for each chain, each run through the real pipeline
(``run_pipeline``, the configs with ``--set`` overrides that only shrink the scale):

- ``configs/quickstart_gpu.yaml``: MiniLM behaviour-cloned, a few PPO updates (KL penalty, snapshots in the
  pool), a short evaluate stage;
- ``configs/llm_dilemma_gpu.yaml``: SmolLM2-135M with LoRA behaviour-cloned, a few PPO updates (with a KL
  reference kept for logging, so a second LLM lives on the GPU too), a short evaluate stage;

then per chain: PPO decisions per second (median over the updates after the first), peak GPU memory, the
paired gain of PPO over the clone on the evaluate stage's games (95% interval; a short evaluation, so a wide
interval), and a device audit: the PPO stage is reopened as ``--resume`` does and every parameter, buffer,
cache and optimizer state of the learner, its reference and its snapshots must be on the chain's device.
It exits 1 if any chain fails (a device error included), 2 when no GPU is seen without ``--dry-run``.
``--dry-run`` puts every encoder on the CPU with autocast off and uses toy sizes (3-round games, a couple of
episodes, 1 thread unless ``--threads``); its figures say nothing about speed or learning.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

#: per chain: the config, where its encoders are set (``--dry-run`` puts them on the CPU), the overrides of a
#: GPU check and those of a dry run (both only shrink the scale)
CHAINS: dict[str, dict[str, Any]] = {
    "quickstart_gpu": {
        "config": "configs/quickstart_gpu.yaml",
        "encoders": ["stages.0.bc.policy.encoder", "stages.1.policies.main.policy.encoder"],
        "gpu": ["stages.0.bc.train_episodes=300", "stages.0.bc.heldout_episodes=50", "stages.0.bc.eval_episodes=10",
                "stages.0.optim.epochs=1", "stages.1.num_envs=256", "stages.1.episodes_per_update=256",
                "stages.1.total_updates=4", "stages.1.snapshot_every=1", "stages.1.checkpoint_every=2",
                "stages.1.eval.every=2", "stages.1.eval.episodes=10", "stages.1.transcript_every=2",
                "stages.1.ppo.minibatch_size=1024", "stages.2.episodes=20", "stages.2.baselines=false"],
        "dry": ["env.kwargs.rounds=3", "stages.0.bc.train_episodes=6", "stages.0.bc.heldout_episodes=2",
                "stages.0.bc.eval_episodes=1", "stages.0.optim.epochs=1", "stages.0.optim.batch_size=16",
                "stages.1.num_envs=2", "stages.1.episodes_per_update=2", "stages.1.total_updates=3",
                "stages.1.snapshot_every=1", "stages.1.snapshot_pool_size=2", "stages.1.checkpoint_every=1",
                "stages.1.eval.every=2",
                "stages.1.eval.episodes=1", "stages.1.eval.opponents=[scripted:tit_for_tat]",
                "stages.1.transcript_every=2", "stages.1.ppo.minibatch_size=16", "stages.2.episodes=1",
                "stages.2.baselines=false", "stages.2.opponents=[scripted:tit_for_tat,scripted:always_defect]",
                "stages.2.unseen=[scripted:joss]"],
    },
    "llm_dilemma_gpu": {
        "config": "configs/llm_dilemma_gpu.yaml",
        "encoders": ["stages.0.bc.policy.encoder", "stages.1.policies.main.policy.encoder",
                     "stages.2.zero_shot.smollm2_zero_shot.encoder"],
        "gpu": ["stages.0.bc.train_episodes=100", "stages.0.bc.heldout_episodes=10", "stages.0.bc.eval_episodes=5",
                "stages.0.optim.epochs=1", "stages.1.num_envs=64", "stages.1.episodes_per_update=64",
                "stages.1.total_updates=3", "stages.1.ppo.log_kl_ref=true", "stages.1.checkpoint_every=3",
                "stages.1.eval.every=0", "stages.1.eval.episodes=5", "stages.1.transcript_every=0",
                "stages.2.episodes=10", "stages.2.baselines=false"],
        "dry": ["env.kwargs.rounds=3", "stages.0.bc.train_episodes=2", "stages.0.bc.heldout_episodes=1",
                "stages.0.bc.eval_episodes=1", "stages.0.optim.epochs=1", "stages.0.optim.batch_size=8",
                "stages.1.num_envs=2", "stages.1.episodes_per_update=2", "stages.1.total_updates=2",
                "stages.1.ppo.log_kl_ref=true", "stages.1.ppo.minibatch_size=8", "stages.1.checkpoint_every=1",
                "stages.1.eval.every=0", "stages.1.eval.episodes=1", "stages.1.eval.opponents=[scripted:tit_for_tat]",
                "stages.1.transcript_every=0", "stages.2.episodes=1", "stages.2.baselines=false",
                "stages.2.opponents=[scripted:tit_for_tat]", "stages.2.unseen=[scripted:joss]"],
    },
}


def device_line() -> dict[str, Any]:
    """What this machine offers: the device torch uses, its name, and whether it supports bf16."""
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info.update(device=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported(),
                    memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    else:
        info.update(device="cpu", bf16_supported=False)
    return info


def overrides(chain: dict[str, Any], dry_run: bool, threads: int | None) -> list[str]:
    """The ``--set`` overrides of a chain: its scale, and for a dry run every encoder on the CPU, fp32."""
    out = list(chain["dry"] if dry_run else chain["gpu"])
    if dry_run:
        out += [f"{key}.{k}={v}" for key in chain["encoders"] for k, v in (("device", "cpu"), ("autocast", "off"))]
    if threads is not None:
        out.append(f"threads={threads}")
    return out


def decisions_per_second(run_dir: Path) -> list[float]:
    """The PPO stage's ``perf/decisions_per_second`` of every update."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("perf/decisions_per_second")]


def audit(run_dir: Path, train_index: int) -> dict[str, Any]:
    """Reopen the finished PPO stage as ``--resume`` does and list where every tensor of its learners, references,
    snapshots and optimizers is (``start`` raises on a reference or snapshot off its learner's device)."""
    from evoarena.training.pipeline import load_pipeline
    from evoarena.training.protocol import StageContext
    from evoarena.training.rl.learners import tensor_devices
    from evoarena.training.rl.ppo import start

    pc = load_pipeline(run_dir / "config.yaml")
    cfg = pc.stages[train_index]
    stage_dir = next(p for p in sorted((run_dir / "stages").iterdir()) if p.name.endswith("_train"))
    t = start(cfg, StageContext(run_dir, stage_dir, stage_dir.name, resume=True, progress=False))
    parts = {**{f"learner {n}": p for n, p in t.learners.items()},
             **{f"reference {n}": p for n, p in t.references.items()},
             **{f"optimizer {n}": o for n, o in t.optimizers.items()},
             **{f"snapshot {n}@{u}": p for n, pool in t.snapshots.items() for u, p in pool}}
    where = {name: sorted(str(d) for d in tensor_devices(obj)) for name, obj in parts.items()}
    bf16 = {n: getattr(p.encoder, "_autocast_dtype", None) == torch.bfloat16 for n, p in t.learners.items()
            if p.encoder is not None}
    return {"devices": where, "bf16": bf16}


def ppo_over_clone(results: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluate stage's paired gain of the PPO row over the row before it (the clone), pool and unseen."""
    ev = next((v for k, v in results.items() if k.endswith("_evaluate")), {})
    gains = [g for g in ev.get("gains", []) if g["kind"] == "over previous stage"]
    return gains[-1] if gains else None


def run_chain(name: str, chain: dict[str, Any], out: Path, dry_run: bool, threads: int | None) -> dict[str, Any]:
    """Run one chain into ``out/NAME``; its figures and audit."""
    from evoarena.training.pipeline import run_pipeline

    run_dir = out / name
    cuda = torch.cuda.is_available() and not dry_run
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    results = run_pipeline(ROOT / chain["config"], overrides(chain, dry_run, threads), run_dir=run_dir)
    wall = time.perf_counter() - t0
    stages = results["pipeline"]["stages"]
    train_index = next(i for i, s in enumerate(stages) if s["kind"] == "train")
    ppo = results[stages[train_index]["key"]]
    rates = decisions_per_second(run_dir)
    row = {"chain": name, "wall_s": round(wall, 1),
           "stage_wall_s": {s["name"]: round(s.get("wall_s", 0.0), 1) for s in stages},
           "ppo_updates": ppo["updates"], "ppo_decisions": ppo["decisions"],
           "decisions_per_second": round(statistics.median(rates[1:] or rates), 1) if rates else None,
           "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
           "ppo_over_clone": ppo_over_clone(results)}
    row.update(audit(run_dir, train_index))
    want = {"cuda:0"} if cuda else {"cpu"}
    wrong = {k: v for k, v in row["devices"].items() if set(v) != want}
    if wrong:
        raise RuntimeError(f"{name}: tensors off {sorted(want)}: {wrong}")
    return row


def gain_text(g: dict[str, Any] | None) -> str:
    if not g:
        return "n/a"
    text = f"{g['pool']['mean']:+.2f} [{g['pool']['low']:+.2f}, {g['pool']['high']:+.2f}] pool"
    if g.get("unseen"):
        text += f", {g['unseen']['mean']:+.2f} [{g['unseen']['low']:+.2f}, {g['unseen']['high']:+.2f}] unseen"
    return f"{g['agent']} over {g['over']}: {text} ({g['pool']['games']} paired pool games)"


def report(info: dict[str, Any], rows: list[dict[str, Any]], failures: dict[str, str], dry_run: bool,
           wall: float) -> str:
    """The check's result as Markdown (also what is printed)."""
    lines = [f"# GPU check{' (dry run on the CPU: toy sizes, figures say nothing)' if dry_run else ''}", "",
             f"- device: {info['device']} (torch {info['torch']}" + (f", CUDA {info['cuda_version']}, "
                                                                    f"{info['memory_gib']} GiB" if info["cuda"] else "")
             + f"); bf16 supported: {'yes' if info['bf16_supported'] else 'no'}",
             f"- total wall time: {wall:.0f} s", ""]
    for r in rows:
        bf16 = ", ".join(f"{n}: {'on' if v else 'off'}" for n, v in r["bf16"].items()) or "n/a"
        mem = f"{r['peak_gpu_memory_gib']} GiB" if r["peak_gpu_memory_gib"] is not None else "n/a (no GPU)"
        devices = sorted({d for v in r["devices"].values() for d in v})
        lines += [f"## {r['chain']}", "",
                  f"- wall: {r['wall_s']} s ({', '.join(f'{k} {v} s' for k, v in r['stage_wall_s'].items())})",
                  f"- bf16 (learner encoder autocast): {bf16}",
                  f"- PPO: {r['ppo_updates']} updates, {r['ppo_decisions']} decisions, "
                  f"{r['decisions_per_second']} decisions/s (median of the updates after the first)",
                  f"- peak GPU memory: {mem}",
                  f"- PPO over the clone (short evaluation, 95% CI): {gain_text(r['ppo_over_clone'])}",
                  f"- device audit: {len(r['devices'])} parts ({', '.join(r['devices'])}) all on {devices}", ""]
    for name, err in failures.items():
        lines += [f"## {name}: FAILED", "", "```", err.strip(), "```", ""]
    lines.append("result: " + ("FAILED: " + ", ".join(failures) if failures else "every chain passed"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, autocast off, toy sizes: every step, no figures")
    ap.add_argument("--out", type=Path, help="run folders go here (default: a temporary folder, removed)")
    ap.add_argument("--report", type=Path, help="also write gpu_check.md and gpu_check.json into this folder")
    ap.add_argument("--chains", nargs="+", choices=list(CHAINS), default=list(CHAINS))
    ap.add_argument("--threads", type=int, help="torch CPU threads of every stage (default: the configs'; 1 with "
                                                "--dry-run)")
    args = ap.parse_args(argv)
    if args.dry_run and args.threads is None:
        args.threads = 1
    info = device_line()
    if not args.dry_run and not info["cuda"]:
        print("gpu_check: torch sees no CUDA GPU; run with --dry-run to check the steps on the CPU", file=sys.stderr)
        return 2
    print(f"device: {info['device']}; bf16 supported: {info['bf16_supported']}", flush=True)
    t0 = time.perf_counter()
    rows, failures = [], {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        out = args.out or Path(tmp)
        for name in args.chains:
            print(f"--- {name}", flush=True)
            try:
                rows.append(run_chain(name, CHAINS[name], out, args.dry_run, args.threads))
            except Exception:  # a device error or any other: reported, the other chains still run
                failures[name] = traceback.format_exc()
                print(failures[name], file=sys.stderr, flush=True)
    text = report(info, rows, failures, args.dry_run, time.perf_counter() - t0)
    print(text)
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "gpu_check.md").write_text(text)
        (args.report / "gpu_check.json").write_text(json.dumps({"device": info, "dry_run": args.dry_run,
                                                                "chains": rows, "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
