"""The behaviour-cloning objective and its held-out measure: count-weighted masked cross-entropy against
smoothed targets, the value MSE scaled by the returns' variance, the optional auxiliary head of
``bc.aux_features`` (:class:`AuxHead`), and held-out action accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from evoarena.training.supervised.demos import Demos

VAR_FLOOR = 0.01  #: the value MSE is divided by max(variance of the returns, this)


def smoothed_targets(actions: torch.Tensor, mask: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Target distributions: ``1 - smoothing`` on the expert's action, ``smoothing`` spread evenly over the
    legal actions (the expert's included), 0 on illegal ones."""
    legal = mask.float()
    target = smoothing * legal / legal.sum(-1, keepdim=True).clamp_min(1.0)
    return target + (1.0 - smoothing) * torch.nn.functional.one_hot(actions, mask.shape[-1]).float()


class AuxHead(nn.Module):
    """``bc.aux_features``: a linear head from the policy heads' input to the auxiliary targets, standardised by
    their count-weighted mean and deviation over the training demonstrations."""

    def __init__(self, width: int, demos: Demos) -> None:
        super().__init__()
        aux = torch.as_tensor(demos.aux, dtype=torch.float64)
        w = torch.as_tensor(demos.counts, dtype=torch.float64)[:, None] / float(demos.counts.sum())
        mean = (w * aux).sum(0)
        std = ((w * (aux - mean) ** 2).sum(0)).sqrt().clamp_min(1e-6)
        self.linear = nn.Linear(width, aux.shape[1])
        self.register_buffer("mean", mean.float(), persistent=False)
        self.register_buffer("std", std.float(), persistent=False)

    def mse(self, h: torch.Tensor, demos: Demos, idx: np.ndarray, w: torch.Tensor) -> torch.Tensor:
        """Count-weighted MSE (mean over the targets) of the standardised targets of examples ``idx``."""
        target = (torch.as_tensor(demos.aux[idx], device=h.device) - self.mean) / self.std
        return (w[:, None] * (self.linear(h.float()) - target) ** 2).sum() / target.shape[1]

    def weights(self) -> dict[str, list]:
        """The head's weights as JSON lists (exact: float32 values), for a training state."""
        return {k: v.tolist() for k, v in self.linear.state_dict().items()}

    def load_weights(self, saved: dict[str, list]) -> None:
        self.linear.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in saved.items()})


def bc_losses(policy: Any, demos: Demos, idx: np.ndarray, value_coef: float, return_var: float = 1.0,
              label_smoothing: float = 0.0, entropy_coef: float = 0.0, aux: AuxHead | None = None,
              aux_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Count-weighted masked cross-entropy (against targets smoothed over the legal actions) - ``entropy_coef``
    x entropy + ``value_coef`` x count-weighted value MSE / ``return_var`` (+ ``aux_coef`` x the auxiliary
    targets' MSE) on examples ``idx`` (dividing by the returns' variance, floored at :data:`VAR_FLOOR`, keeps
    the value term O(1) whatever the reward scale, so it cannot drown the policy's gradient). Smoothing and the
    entropy bonus keep every legal action at a probability that a later RL stage can sample, while the greedy
    action stays the expert's."""
    obs = demos.obs(idx)
    if aux is None:
        logits, values = policy.forward_obs(obs)
    else:  # the same forward pass, keeping the heads' input for the auxiliary head
        feats, rows, act_rows = policy.encode_obs(obs)
        logits, values = policy.heads(feats, rows, act_rows, policy.action_masks(obs))
    dev = logits.device
    actions = torch.as_tensor(demos.actions[idx], device=dev)
    mask = torch.as_tensor(np.asarray(demos.masks[idx]), device=dev).bool()
    w = torch.as_tensor(demos.counts[idx], device=dev)
    w = w / w.sum()
    ret = torch.as_tensor(demos.returns[idx], device=dev)
    logp_all = torch.log_softmax(logits, -1).masked_fill(~mask, 0.0)
    target = smoothed_targets(actions, mask, label_smoothing)
    pi_loss = -(w * (target * logp_all).sum(-1)).sum()
    v_loss = (w * (values - ret) ** 2).sum()
    loss = pi_loss + value_coef * v_loss / max(return_var, VAR_FLOOR)
    if entropy_coef:
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        loss = loss - entropy_coef * (w * entropy).sum()
    acc = float((w * (logits.detach().argmax(-1) == actions).float()).sum())
    parts = {"policy_loss": float(pi_loss.detach()), "value_mse": float(v_loss.detach()), "accuracy": acc}
    if aux is not None:
        aux_mse = aux.mse(policy._split_standardize(feats, rows), demos, idx, w)
        loss = loss + aux_coef * aux_mse
        parts["aux_mse"] = float(aux_mse.detach())
    return loss, parts


@torch.no_grad()
def heldout_accuracy(policy: Any, demos: Demos, batch_size: int = 512) -> dict[str, float]:
    """Greedy action accuracy and value MSE over the held-out decisions (repeats counted), and quantiles of
    the probability of the most probable non-expert legal action (how sampleable the alternatives are)."""
    was = policy.training
    policy.eval()
    right, se, total = 0.0, 0.0, float(demos.counts.sum())
    alt: list[np.ndarray] = []
    for s in range(0, len(demos), batch_size):
        idx = np.arange(s, min(len(demos), s + batch_size))
        logits, values = policy.forward_obs(demos.obs(idx))
        w = demos.counts[idx]
        right += float((w * (logits.argmax(-1).cpu().numpy() == demos.actions[idx])).sum())
        se += float((w * (values.cpu().numpy() - demos.returns[idx]) ** 2).sum())
        probs = torch.softmax(logits.float(), -1).cpu().numpy()
        probs[np.arange(len(idx)), demos.actions[idx]] = 0.0
        alt.append(np.repeat(probs.max(-1), w.astype(int)))
    policy.train(was)
    p_alt = np.concatenate(alt) if alt else np.zeros(1)
    return {"action_accuracy": right / max(total, 1.0), "value_mse": se / max(total, 1.0),
            "decisions": int(total), "p_best_alternative_median": float(np.median(p_alt)),
            "p_best_alternative_p10": float(np.quantile(p_alt, 0.1)),
            "p_best_alternative_p90": float(np.quantile(p_alt, 0.9))}
