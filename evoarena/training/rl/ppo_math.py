"""The maths of PPO as small pure functions: GAE per decision stream, clipped losses, masked KL.

A *stream* is the sequence of decisions one agent made in one episode. Rewards that arrive
between two of its decisions (in turn-based worlds, while it waits) are credited to the
earlier decision, so discounting counts decisions, not env steps. A stream ends with a
``bootstrap`` value: 0 when the episode terminated, the value of the last observation when it
was truncated.
"""

from __future__ import annotations

import numpy as np
import torch


def gae(rewards: np.ndarray, values: np.ndarray, bootstrap: float, gamma: float, lam: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns (advantage + value) of one stream."""
    n = len(rewards)
    adv = np.zeros(n, dtype=np.float64)
    next_value, running = float(bootstrap), 0.0
    for t in range(n - 1, -1, -1):
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        adv[t] = running
        next_value = values[t]
    return adv, adv + np.asarray(values, dtype=np.float64)


def discounted_returns(rewards: np.ndarray, bootstrap: float, gamma: float) -> np.ndarray:
    """Discounted return from each decision of one stream to its end (plus the discounted bootstrap)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = float(bootstrap)
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / (std + eps); a single element is returned centred."""
    if x.numel() < 2:
        return x - x.mean()
    return (x - x.mean()) / (x.std() + eps)


def clipped_policy_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss, the fraction of clipped ratios, and approx KL (Schulman's k3)."""
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    with torch.no_grad():
        clipfrac = ((ratio - 1).abs() > clip).float().mean()
        approx_kl = ((ratio - 1) - log_ratio).mean()
    return loss, clipfrac, approx_kl


def value_loss(new_v: torch.Tensor, old_v: torch.Tensor, returns: torch.Tensor, clip: float | None
               ) -> torch.Tensor:
    """0.5 * squared error, with CleanRL's clipped variant when ``clip`` is given."""
    unclipped = (new_v - returns) ** 2
    if clip is None:
        return 0.5 * unclipped.mean()
    clipped = (old_v + (new_v - old_v).clamp(-clip, clip) - returns) ** 2
    return 0.5 * torch.max(unclipped, clipped).mean()


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log-probabilities over legal actions; illegal entries are -inf."""
    return torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy of the policy restricted to legal actions, per row."""
    logp = masked_log_softmax(logits, mask)
    return -(logp.exp() * logp.masked_fill(~mask, 0.0)).sum(-1)


def masked_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the legal actions, per row (p: the policy, q: the reference)."""
    logp = masked_log_softmax(logits_p, mask)
    logq = masked_log_softmax(logits_q, mask)
    return (logp.exp() * (logp - logq).masked_fill(~mask, 0.0)).sum(-1)


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    """1 - Var(target - pred) / Var(target); nan when the target is constant."""
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - pred)) / var
