"""Every tensor of a PPO learner, its KL reference and its snapshots lives on the learner's device.

On a CPU-only machine a misplaced tensor is made visible with PyTorch's ``meta`` device: ``device: auto`` is
made to mean ``meta`` (the run's recorded device, :mod:`evoarena.policies.numerics`), so whatever the training
code places with a bare ``cpu`` shows up as ``cpu``. Meta tensors hold no data (weights read from a checkpoint are
dropped, nothing can be computed to a number), so these tests check placement only; the test marked ``cuda``
runs a real PPO stage (KL penalty, snapshots, resume) on the GPU when torch sees one.
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import TINY_ENCODER

from evoarena.config import TrainConfig, validate_config
from evoarena.envs import make
from evoarena.policies import numerics
from evoarena.policies.base import BasePolicy
from evoarena.training.protocol import StageContext
from evoarena.training.rl import ppo as ppo_mod
from evoarena.training.rl import update as update_mod
from evoarena.training.rl.learners import build_learner, frozen_copy, tensor_devices
from evoarena.training.rl.rollout import LearnerBatch
from evoarena.training.stages import run_standalone

META = torch.device("meta")
POOL = [{"agent": "scripted:always_defect"}, {"agent": "scripted:tit_for_tat"}, {"agent": "snapshot"}]


def train_cfg(device: str = "auto", **policy) -> TrainConfig:
    """The train stage of ``configs/quickstart_gpu.yaml`` (pool with snapshots, KL penalty to the start) at toy
    scale, its encoder on ``device``."""
    pol = {"encoder": {**TINY_ENCODER, "device": device}, **policy}
    return validate_config({
        "seed": 0, "env": {"id": "dilemma_v0", "kwargs": {"rounds": 4}},
        "policies": {"main": {"policy": pol}},
        "seats": {"player_0": {"policy": "main"}, "player_1": {"pool": POOL}}, "shuffle_seats": True,
        "num_envs": 4, "episodes_per_update": 4, "total_updates": 2, "snapshot_every": 1, "checkpoint_every": 1,
        "transcript_every": 0, "eval": {"every": 0, "episodes": 2, "opponents": ["scripted:tit_for_tat"]},
        "ppo": {"epochs": 1, "minibatch_size": 16, "kl_coef": 0.02}}, TrainConfig)


@pytest.fixture
def auto_means_meta(monkeypatch):
    """``device: auto`` resolves to ``meta``; weights read from a checkpoint go through the CPU (safetensors cannot
    read to meta; copying them into meta parameters is a no-op)."""
    import safetensors.torch as st

    load_model = st.load_model

    def via_cpu(model, filename, strict=True, device="cpu"):
        return load_model(model, filename, strict=strict, device="cpu" if str(device) == "meta" else device)

    monkeypatch.setattr(st, "load_model", via_cpu)
    monkeypatch.setitem(numerics._STATE, "device", "meta")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")
        yield


def trainer_devices(t: ppo_mod.Trainer) -> dict[str, set[torch.device]]:
    """Where the tensors of every learner, reference, snapshot and optimizer of a trainer are."""
    out = {f"learner {n}": tensor_devices(p) for n, p in t.learners.items()}
    out.update({f"reference {n}": tensor_devices(p) for n, p in t.references.items()})
    out.update({f"optimizer {n}": tensor_devices(o) for n, o in t.optimizers.items()})
    out.update({f"snapshot {n}@{u}": tensor_devices(p) for n, pool in t.snapshots.items() for u, p in pool})
    return out


def test_resumed_learner_reference_and_snapshots_follow_the_learner(tmp_path, auto_means_meta):
    """A run saved on the CPU, resumed where ``auto`` means another device: the learner, its KL reference, the
    snapshots read back and a new snapshot are all there (each used to be loaded with ``device='cpu'``)."""
    cfg = train_cfg()
    with pytest.MonkeyPatch.context() as mp:  # the first session ran on the CPU
        mp.setitem(numerics._STATE, "device", "cpu")
        run_standalone(cfg, tmp_path, progress=False)
    t = ppo_mod.start(cfg, StageContext.standalone(tmp_path, "train", resume=True, progress=False))
    assert t.references and t.snapshots["main"], "the run has a KL reference and snapshots to check"
    ppo_mod.take_snapshots(t, 3)
    assert trainer_devices(t) == dict.fromkeys(trainer_devices(t), {META})


def test_checkpoint_start_lives_where_the_config_says(tmp_path, auto_means_meta):
    """``init_from`` a checkpoint with ``device: cpu`` in the train config: the learner is on the CPU, whatever
    ``auto`` means (it used to be loaded with ``auto``)."""
    from evoarena.policies.actor_critic import build_policy
    from evoarena.policies.io import save_checkpoint

    cfg = train_cfg(device="cpu")
    save_checkpoint(tmp_path / "start", build_policy(cfg.policies["main"].policy, "dilemma_v0"))
    cfg = train_cfg(device="cpu", init_from=str(tmp_path / "start"))
    assert tensor_devices(build_learner(cfg, "main", ["player_0", "player_1"])) == {torch.device("cpu")}


class _Stop(Exception):
    pass


def test_ppo_update_builds_its_tensors_on_the_policy_device(monkeypatch, auto_means_meta):
    """Every tensor a PPO minibatch combines (actions, old log-probs, advantages, returns, the reference's
    logits) is on the policy's device (they used to be made on the CPU: any GPU learner failed its first
    update)."""
    from evoarena.policies.actor_critic import build_policy

    def masks_unchecked(self, obs_list):  # the check for a legal action reads a value, which meta cannot
        return torch.from_numpy(np.stack([o["action_mask"] for o in obs_list]) != 0).to(self.device)

    monkeypatch.setattr(BasePolicy, "action_masks", masks_unchecked)
    seen: list[torch.device] = []

    def spy(fn, stop=False):
        def wrapped(*args, **kw):
            seen.extend(a.device for a in args if torch.is_tensor(a))
            if stop:
                raise _Stop
            return fn(*args, **kw)
        return wrapped

    for name in ("clipped_policy_loss", "value_loss"):
        monkeypatch.setattr(update_mod, name, spy(getattr(update_mod, name)))
    monkeypatch.setattr(update_mod, "masked_kl", spy(update_mod.masked_kl, stop=True))
    cfg = train_cfg(kind="mlp", mlp_hidden=[8])
    policy = build_policy(cfg.policies["main"].policy, "dilemma_v0")
    assert policy.device == META
    env = make("dilemma_v0", rounds=4)
    obs, _ = env.reset(seed=0)
    batch = LearnerBatch()
    for _ in range(4):
        batch.add(obs["player_0"], 0, -0.7, 0.1)
        obs, *_ = env.step({"player_0": 0, "player_1": 1})
    batch.streams.append(([0, 1, 2, 3], 0.0))
    batch.rewards = [1.0, 0.0, 3.0, 1.0]
    batch.finish(0.99, 0.95)
    with pytest.raises(_Stop):
        update_mod.ppo_update(policy, torch.optim.Adam(policy.parameters()), batch, cfg.ppo, frozen_copy(policy),
                           np.random.default_rng(0))
    assert len(seen) == 9 and set(seen) == {META}, seen  # 3 tensors into each of the 3 spies


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="torch sees no CUDA GPU"))])
def test_ppo_run_keeps_one_device(tmp_path, device):
    """A real PPO stage with the KL penalty and snapshots, resumed and trained one more update: every parameter,
    buffer, cache and optimizer state of the learner, its reference and its snapshots is on ``device``."""
    cfg = train_cfg(device=device)
    run_standalone(cfg, tmp_path, progress=False)
    t = ppo_mod.start(cfg, StageContext.standalone(tmp_path, "train", resume=True, progress=False))
    stats, nan = ppo_mod.learn(t, t.rollout.collect(cfg.episodes_per_update), cfg.total_updates)
    assert not nan and stats["main"]["kl_ref"] >= 0
    ppo_mod.take_snapshots(t, cfg.total_updates + 1)
    want = {torch.device(device, 0) if device == "cuda" else torch.device(device)}
    assert trainer_devices(t) == dict.fromkeys(trainer_devices(t), want)


def test_a_copy_off_the_learner_device_is_refused_at_start(auto_means_meta):
    """``check_devices`` (run by ``start``) names a reference that lives elsewhere than its learner."""
    from evoarena.policies.actor_critic import build_policy
    from evoarena.training.rl.learners import check_devices

    pcfg = train_cfg(device="cpu", kind="mlp", mlp_hidden=[8]).policies["main"].policy
    learner = build_policy(pcfg, "dilemma_v0")
    check_devices({"main": learner}, {"main": frozen_copy(learner)}, {"main": [(1, frozen_copy(learner))]})
    elsewhere = build_policy(pcfg.model_copy(update={"encoder": pcfg.encoder.model_copy(update={"device": "auto"})}),
                             "dilemma_v0")
    with pytest.raises(RuntimeError, match="reference main holds tensors on .'meta'.; learner main lives on .'cpu'."):
        check_devices({"main": learner}, {"main": elsewhere}, {})
