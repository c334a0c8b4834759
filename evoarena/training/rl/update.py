"""One PPO update of one learner: epochs of shuffled minibatches, each the clipped surrogate, the value loss, the
entropy bonus and the KL penalty to a reference (:mod:`evoarena.training.rl.ppo_math`), gradient clipping and a
target-KL early stop. A frozen encoder's features come from the rollout's encodings, not from the texts again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from evoarena.config import PPOConfig
from evoarena.training.rl.learners import prepare_for_rl
from evoarena.training.rl.ppo_math import (
    clipped_policy_loss,
    explained_variance,
    masked_entropy,
    masked_kl,
    masked_log_softmax,
    normalize,
    value_loss,
)
from evoarena.training.rl.rollout import LearnerBatch


def rollout_features(policy: Any, batch: LearnerBatch) -> tuple[torch.Tensor, ...] | None:
    """For a policy whose encoder is frozen: ``(features, obs_rows, action_rows, masks)`` of every decision of
    ``batch``, encoded once (texts the rollout saw come from the encoder's cache), which every minibatch of the
    update indexes; None for policies that must re-encode (trained encoders, MLP policies)."""
    enc = getattr(policy, "encoder", None)
    if enc is None or getattr(enc, "train_mode", "") != "frozen" or not hasattr(policy, "heads"):
        return None
    with torch.no_grad():
        feats, obs_rows, act_rows = policy.encode_obs(batch.obs)
    return feats, obs_rows, act_rows, policy.action_masks(batch.obs)


LOSS_PARTS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "kl_ref", "grad_norm")


def minibatch_loss(policy: Any, batch: LearnerBatch, idx: np.ndarray, targets: tuple[torch.Tensor, ...],
                   rollout_feats: tuple | None, pc: PPOConfig, reference: Any | None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's loss on the minibatch ``idx`` of ``batch`` and its parts (``targets``: actions, old log-probabilities,
    old values, advantages, returns, on the policy's device; ``rollout_feats``: the rollout's features of a frozen
    encoder, or None to encode the texts)."""
    actions, old_logp, old_v, adv_all, ret_all = targets
    dev = policy.device
    obs = [batch.obs[i] for i in idx]
    ti = torch.as_tensor(idx, device=dev)
    if rollout_feats is None:
        logits, values = policy.forward_obs(obs)
        mask = policy.action_masks(obs)
    else:  # frozen encoder: the rollout's features, no text encoded again
        feats, obs_rows, act_rows, masks = rollout_feats
        mask = masks[ti]
        logits, values = policy.heads(feats, obs_rows[ti], None if act_rows is None else act_rows[ti], mask)
    logits, values = logits.float(), values.float()
    logp_all = masked_log_softmax(logits, mask)
    new_logp = logp_all.gather(1, actions[ti][:, None]).squeeze(1)
    pg_loss, clipfrac, approx_kl = clipped_policy_loss(new_logp, old_logp[ti], adv_all[ti], pc.clip)
    v_loss = value_loss(values, old_v[ti], ret_all[ti], pc.value_clip)
    entropy = masked_entropy(logits, mask).mean()
    loss = pg_loss + pc.vf_coef * v_loss - pc.ent_coef * entropy
    kl_ref = torch.zeros((), device=dev)
    if reference is not None:
        with torch.no_grad():
            ref_logits, _ = reference.forward_obs(obs)
        kl_ref = masked_kl(logits, ref_logits.float(), mask).mean()
        if pc.kl_coef > 0:
            loss = loss + pc.kl_coef * kl_ref
    return loss, {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy, "approx_kl": approx_kl,
                  "clipfrac": clipfrac, "kl_ref": kl_ref}


def ppo_update(policy: Any, optimizer: torch.optim.Optimizer, batch: LearnerBatch, pc: PPOConfig,
               reference: Any | None, rng: np.random.Generator) -> dict[str, float]:
    """PPO epochs over one learner's batch; returns the metrics to log (``nan_skipped`` > 0 on bad losses). Every
    tensor of the update is made on the policy's device."""
    n = len(batch)
    dev = policy.device
    adv_all = torch.as_tensor(batch.advantages, dtype=torch.float32, device=dev)
    targets = (torch.as_tensor(batch.actions, dtype=torch.long, device=dev),
               torch.as_tensor(batch.logp, dtype=torch.float32, device=dev),
               torch.as_tensor(batch.values, dtype=torch.float32, device=dev),
               normalize(adv_all) if pc.normalize_advantage else adv_all,
               torch.as_tensor(batch.returns, dtype=torch.float32, device=dev))
    params = [p for p in policy.parameters() if p.requires_grad]
    sums: dict[str, float] = defaultdict(float)
    count, epochs_run, nan_skipped = 0, 0, 0
    policy.train()
    prepare_for_rl(policy)
    rollout_feats = rollout_features(policy, batch)
    stop = False
    for _ in range(pc.epochs):
        perm = rng.permutation(n)
        epoch_kl = []
        for start in range(0, n, pc.minibatch_size):
            loss, parts = minibatch_loss(policy, batch, perm[start:start + pc.minibatch_size], targets,
                                         rollout_feats, pc, reference)
            if not torch.isfinite(loss):
                nan_skipped += 1
                optimizer.zero_grad(set_to_none=True)
                stop = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, pc.max_grad_norm)
            optimizer.step()
            for k in LOSS_PARTS:
                v = parts[k]
                sums[k] += float(v.detach()) if torch.is_tensor(v) else float(v)
            count += 1
            epoch_kl.append(float(parts["approx_kl"]))
        epochs_run += 1
        if stop or (pc.target_kl is not None and epoch_kl and float(np.mean(epoch_kl)) > pc.target_kl):
            break
    out = {k: v / max(count, 1) for k, v in sums.items()}
    out.update(epochs=epochs_run, nan_skipped=nan_skipped, decisions=n,
               explained_variance=explained_variance(np.asarray(batch.values), np.asarray(batch.returns)),
               advantage_mean=float(np.mean(batch.advantages)) if n else 0.0)
    return out
