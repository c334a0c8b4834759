"""Speed paths of the text encoder compute the same function: cached frozen lower layers in ``top_k`` mode,
and SB3-style fixed-width inputs through ``forward_padded``."""

import copy

import torch

from evoarena.config import EncoderConfig
from evoarena.envs import make
from evoarena.policies.encoder import build_encoder

SMALL = {"preset": "tiny", "hidden_size": 32, "num_layers": 3, "num_heads": 2, "intermediate_size": 64,
         "vocab_size": 400, "autocast": "off", "device": "cpu"}


def world_texts(n_episodes: int = 8) -> list[str]:
    env = make("negotiation_v0")
    texts = []
    for seed in range(n_episodes):
        obs, _ = env.reset(seed=seed)
        texts += [o["text"] for o in obs.values()]
    return texts


def test_top_k_cached_lower_layers_give_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig.model_validate({**SMALL, "train_mode": "top_k", "top_k": 1}))
    assert enc._split == 2  # two frozen layers are cached
    plain = copy.deepcopy(enc)
    plain._split = None  # the full forward pass
    texts = world_texts()
    with torch.no_grad():
        enc.encode(texts[:5])  # a "rollout" fills the cache for some texts
    assert len(enc._acts) == len(set(texts[:5]))
    got, want = enc.encode(texts), plain.encode(texts)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    got.pow(2).sum().backward()
    want.pow(2).sum().backward()
    grads = [(n, p.grad, q.grad) for (n, p), q in zip(enc.model.named_parameters(), plain.model.parameters())
             if p.requires_grad]
    assert grads and all(g is not None for _, g, _ in grads)
    for name, g, h in grads:
        torch.testing.assert_close(g, h, atol=1e-5, rtol=1e-4, msg=name)
    assert not copy.deepcopy(enc)._acts  # snapshots start without the cache


def test_forward_padded_ignores_extra_padding():
    enc = build_encoder(EncoderConfig.model_validate(SMALL))
    texts = world_texts(2)
    ids = enc.token_ids(texts)
    width = 64
    arr = torch.full((len(ids), width), enc.pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for i, x in enumerate(ids):
        arr[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_padded(arr.float(), mask.float()), enc.encode(texts, dedupe=False),
                                   atol=1e-5, rtol=1e-4)


def test_autocast_auto_on_cpu_follows_the_probe(monkeypatch):
    from evoarena.policies import encoder as enc_mod

    for verdict in (False, True):
        monkeypatch.setattr(enc_mod, "cpu_bf16_faster", lambda model, vocab, v=verdict: v)
        enc = build_encoder(EncoderConfig.model_validate({**SMALL, "autocast": "auto"}))
        assert (enc._autocast_dtype is torch.bfloat16) == verdict
        off = build_encoder(EncoderConfig.model_validate({**SMALL, "autocast": "off"}))
        assert off._autocast_dtype is None


def test_bf16_probe_runs_once_per_architecture(monkeypatch):
    from evoarena.policies import encoder as enc_mod

    monkeypatch.setattr(enc_mod, "_BF16_PROBES", {})
    enc = build_encoder(EncoderConfig.model_validate({**SMALL, "autocast": "off"}))
    first = enc_mod.cpu_bf16_faster(enc.model, len(enc.tokenizer))
    assert isinstance(first, bool) and len(enc_mod._BF16_PROBES) == 1
    assert enc_mod.cpu_bf16_faster(enc.model, len(enc.tokenizer)) is first  # cached, not re-measured
