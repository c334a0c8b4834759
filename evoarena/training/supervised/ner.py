"""The finetune stage's ``task: ner`` (``STAGE``; ``run_ner(cfg, ctx)`` -> results dict).

Token classification on CoNLL column files. An encoder (``preset: tiny`` started from a pretrain
checkpoint with ``init_from``, ``preset: minilm``, or ``path:``) + dropout + a linear head over the last
hidden states; the label sits on each word's first piece (-100 elsewhere, all via
:mod:`evoarena.training.supervised.conll`). Batches are length-bucketed and padded to their longest sentence;
AdamW with linear warmup and decay; ``encoder.autocast: bf16`` runs the forward pass in bfloat16
(also on CPU: faster only where the CPU has AVX512-BF16/AMX, ~10x slower on AVX2-only CPUs). Reports
seqeval entity-level precision/recall/F1 (micro and per type) and, separately, token accuracy on
valid and test. The checkpoint (``stages/01_finetune/checkpoint/``) is a Hugging
Face token-classification folder (``AutoModelForTokenClassification`` opens it) that
``policy.init_from`` accepts as an encoder.

TensorBoard tags: ``finetune/loss``, ``finetune/lr``, ``finetune/epoch``, ``perf/sentences_per_s``,
``eval/{valid,test}/{entity_f1,entity_precision,entity_recall,token_accuracy,f1_<TYPE>}``.

Resume: a training state is written every ``checkpoint_every`` steps (or after every epoch); ``--resume``
continues from it.
"""

from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evoarena.config import NERConfig, NERFinetuneConfig
from evoarena.storage import atomic_dir
from evoarena.training.infra import runs
from evoarena.training.infra.progress import progress_bar
from evoarena.training.protocol import InitSlot, StageContext, StageKind
from evoarena.training.supervised import loop
from evoarena.training.supervised.loop import (
    FitPlan,
    SupervisedTask,
    Timer,
    adamw,
    fit,
    init_encoder_weights,
    load_state,
    restore_torch_rng,
)


def _autocast_dtype(encoder_cfg: Any, device: torch.device) -> torch.dtype | None:
    if encoder_cfg.autocast == "bf16" or (encoder_cfg.autocast == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


class TokenClassifier(nn.Module):
    """An encoder's last hidden states -> dropout -> linear logits over the labels, per word piece."""

    def __init__(self, encoder: Any, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)
        self.to(encoder.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                autocast: torch.dtype | None = None) -> torch.Tensor:
        dev = input_ids.device
        with torch.autocast(dev.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            out = self.encoder.model(input_ids=input_ids, attention_mask=attention_mask)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            logits = self.classifier(self.dropout(hidden))
        return logits.float()


@dataclass
class NERSplit:
    """Sentences of one split (IOB2), their encodings and the true tags."""

    name: str
    sentences: list[Any]
    encodings: list[dict[str, Any]] = field(default_factory=list)


def _ner_tokenizer(ner: NERConfig, train_sentences: list[Any]):
    """The tokenizer of the NER encoder: ``init_from``'s, else the preset's; ``preset: tiny`` without
    ``init_from`` trains WordPiece on the training sentences."""
    from evoarena.policies.encoder import train_wordpiece
    from evoarena.policies.io import init_tokenizer

    if ner.init_from:
        tok = init_tokenizer(ner.init_from)
        if tok is not None:
            return tok
    if ner.encoder.preset == "tiny":
        return train_wordpiece([" ".join(s.words) for s in train_sentences], ner.encoder.vocab_size)
    return None


def build_token_classifier(ner: NERConfig, num_labels: int, tokenizer=None) -> TokenClassifier:
    """Encoder (``ner.encoder``, weights from ``ner.init_from``) + a fresh classification head."""
    from evoarena.policies.encoder import build_encoder

    encoder = build_encoder(ner.encoder, tokenizer)
    model = TokenClassifier(encoder, num_labels, ner.dropout)
    if ner.init_from:
        init_encoder_weights(model, ner.init_from)
    return model


def _read_ner_data(cfg: NERFinetuneConfig) -> dict[str, NERSplit]:
    from evoarena.training.supervised.conll import read_conll, to_iob2_sentences

    data = cfg.ner.data
    splits = {}
    for name in ("train", "valid", "test"):
        path = getattr(data, name)
        if path is None:
            continue
        sents = to_iob2_sentences(read_conll(path, column=data.column))
        limit = data.max_train_sentences if name == "train" else data.max_eval_sentences
        splits[name] = NERSplit(name, sents[:limit] if limit else sents)
    return splits


def length_buckets(lengths: list[int], batch_size: int, rng: random.Random,
                   pool: int = 50) -> list[list[int]]:
    """Batches of indices of similar length: shuffle, sort within pools of ``pool`` batches, cut, shuffle."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches = []
    span = batch_size * pool
    for s in range(0, len(idx), span):
        chunk = sorted(idx[s: s + span], key=lambda i: lengths[i])
        batches += [chunk[k: k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def evaluate_ner(model: TokenClassifier, split: NERSplit, id2label: dict[int, str], batch_size: int,
                 autocast: torch.dtype | None) -> dict[str, Any]:
    """:func:`conll.ner_metrics` of the model's predictions on ``split`` (entity F1 and token accuracy)."""
    from evoarena.training.supervised.conll import collate, decode_predictions, ner_metrics

    was = model.training
    model.eval()
    enc = split.encodings
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]["input_ids"]))
    preds: list[list[str]] = [[] for _ in enc]
    pad = model.encoder.pad_id
    dev = model.encoder.device
    for s in range(0, len(order), batch_size):
        ids = order[s: s + batch_size]
        batch = collate([enc[i] for i in ids], pad)
        logits = model(batch["input_ids"].to(dev), batch["attention_mask"].to(dev), autocast)
        best = logits.argmax(-1).cpu()
        for row, i in enumerate(ids):
            preds[i] = decode_predictions(best[row], enc[i]["word_ids"], id2label, n_words=enc[i]["n_words"])
    model.train(was)
    return ner_metrics([s.tags for s in split.sentences], preds)


def export_token_classifier(model: TokenClassifier, id2label: dict[int, str], folder: Path,
                            extra: dict[str, Any]) -> Path:
    """Write ``model`` atomically as a Hugging Face token-classification folder + tokenizer + ``ner.json``."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    enc = model.encoder
    base = copy.deepcopy(enc.model).merge_and_unload() if enc.train_mode == "lora" else enc.base_model()
    config = copy.deepcopy(base.config)
    config.num_labels = len(id2label)
    config.id2label = {int(i): lab for i, lab in id2label.items()}
    config.label2id = {lab: int(i) for i, lab in id2label.items()}
    hf = AutoModelForTokenClassification.from_config(config)
    missing, _ = hf.base_model.load_state_dict(base.state_dict(), strict=False)
    heads = [m for name, m in hf.named_children() if isinstance(m, nn.Linear)]
    if missing or len(heads) != 1 or heads[0].weight.shape != model.classifier.weight.shape:
        raise RuntimeError(f"cannot export {type(base).__name__} as a token-classification model "
                           f"(missing {missing[:3]}, heads {len(heads)})")
    with torch.no_grad():
        heads[0].weight.copy_(model.classifier.weight)
        heads[0].bias.copy_(model.classifier.bias)
    with atomic_dir(folder) as tmp:
        hf.save_pretrained(str(tmp))
        enc.tokenizer.save_pretrained(str(tmp))
        (tmp / "ner.json").write_text(json.dumps({"labels": [id2label[i] for i in sorted(id2label)], **extra},
                                                 indent=2, default=float))
    return folder


def _log_ner_metrics(writer: Any, split: str, m: dict[str, Any], step: int) -> None:
    for key in ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"):
        writer.add_scalar(f"eval/{split}/{key}", m[key], step)
    for etype, row in m["per_type"].items():
        writer.add_scalar(f"eval/{split}/f1_{etype}", row["f1"], step)


def _ner_row(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("entity_precision", "entity_recall", "entity_f1", "token_accuracy", "per_type",
            "n_true_entities", "n_pred_entities", "n_correct_entities", "n_tokens", "n_sentences")
    return {k: m[k] for k in keys}


@dataclass
class _NERSetup:
    """What a NER run trains: data, model, optimizer and its step plan."""

    splits: dict[str, NERSplit]
    labels: list[str]
    id2label: dict[int, str]
    model: TokenClassifier
    amp: torch.dtype | None
    lengths: list[int]
    steps_per_epoch: int
    total: int
    warmup: int
    optimizer: torch.optim.Optimizer

    @property
    def eval_split(self) -> NERSplit | None:
        return self.splits.get("valid")

    def evaluate(self, split: NERSplit, batch_size: int) -> dict[str, Any]:
        return evaluate_ner(self.model, split, self.id2label, batch_size, self.amp)


def _setup(cfg: NERFinetuneConfig, state_dir: Path, prior: dict[str, Any] | None) -> _NERSetup:
    from evoarena.policies.encoder import load_tokenizer
    from evoarena.training.supervised.conll import encode_sentences, label_list, label_maps

    ner, opt = cfg.ner, cfg.optim
    splits = _read_ner_data(cfg)
    labels = label_list([s for sp in splits.values() for s in sp.sentences])
    label2id, id2label = label_maps(labels)
    tokenizer = load_tokenizer(state_dir) if prior is not None else _ner_tokenizer(ner, splits["train"].sentences)
    model = build_token_classifier(ner, len(labels), tokenizer)
    amp = _autocast_dtype(ner.encoder, model.encoder.device)
    for sp in splits.values():
        sp.encodings = encode_sentences(sp.sentences, model.encoder.tokenizer, label2id,
                                        max_length=model.encoder.max_length)
    lengths = [len(e["input_ids"]) for e in splits["train"].encodings]
    steps_per_epoch = math.ceil(len(lengths) / opt.batch_size)
    total = opt.max_steps or steps_per_epoch * opt.epochs
    return _NERSetup(splits, labels, id2label, model, amp, lengths, steps_per_epoch, total,
                     int(opt.warmup_fraction * total), adamw(model, opt.lr, opt.weight_decay))


class _TokenTagging(SupervisedTask):
    """The NER part of :func:`~evoarena.training.supervised.loop.fit`: length-bucketed batches of the step's epoch,
    the token cross-entropy; logs, validation and the state's JSON."""

    def __init__(self, cfg: NERFinetuneConfig, run: _NERSetup, writer: Any, state: dict[str, Any],
                 timer: Timer) -> None:
        self.cfg, self.run, self.writer, self.state_json, self.timer = cfg, run, writer, state, timer
        self.model, self.optimizer, self.tokenizer = run.model, run.optimizer, run.model.encoder.tokenizer
        self.loss_sum, self.tok_sum = float(state["sums"].get("loss_sum", 0.0)), int(state["sums"].get("tok_sum", 0))
        self.lossf = nn.CrossEntropyLoss(ignore_index=-100, reduction="sum")
        self.epoch, self.batches = -1, []

    def batch(self, step: int) -> Any:
        from evoarena.training.supervised.conll import collate

        epoch, bi = divmod(step, self.run.steps_per_epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = length_buckets(self.run.lengths, self.cfg.optim.batch_size,
                                          random.Random(self.cfg.seed * 1000 + epoch))
        train = self.run.splits["train"]
        return collate([train.encodings[i] for i in self.batches[bi]], self.model.encoder.pad_id)

    def loss(self, batch: Any) -> tuple[torch.Tensor, Any]:
        dev = self.model.encoder.device
        logits = self.model(batch["input_ids"].to(dev), batch["attention_mask"].to(dev), self.run.amp)
        target = batch["labels"].to(dev)
        n_tok = int((target != -100).sum())
        return self.lossf(logits.view(-1, logits.shape[-1]), target.view(-1)) / max(1, n_tok), n_tok

    def accumulate(self, loss: torch.Tensor, stats: Any) -> None:
        self.loss_sum += float(loss.detach()) * stats
        self.tok_sum += stats

    def log(self, step: int) -> str:
        w, per_epoch = self.writer, self.run.steps_per_epoch
        w.add_scalar("finetune/loss", self.loss_sum / max(1, self.tok_sum), step)
        w.add_scalar("finetune/lr", self.optimizer.param_groups[0]["lr"], step)
        w.add_scalar("finetune/epoch", step / per_epoch, step)
        w.add_scalar("perf/sentences_per_s", step * self.cfg.optim.batch_size / max(self.timer(), 1e-9), step)
        info = f"loss {self.loss_sum / max(1, self.tok_sum):.4f}"
        self.loss_sum, self.tok_sum = 0.0, 0
        return info

    def evaluate(self, step: int) -> str | None:
        split = self.run.eval_split
        if split is None:
            return None
        m = self.run.evaluate(split, self.cfg.ner.eval_batch_size)
        _log_ner_metrics(self.writer, split.name, m, step)
        self.state_json["history"].append({"step": step, "epoch": step / self.run.steps_per_epoch,
                                           "wall_s": self.timer(), "entity_f1": m["entity_f1"],
                                           "token_accuracy": m["token_accuracy"]})
        return f"valid F1 {m['entity_f1']:.3f} tok acc {m['token_accuracy']:.3f}"

    def state(self, step: int) -> dict[str, Any]:
        return {"step": step, "history": self.state_json["history"], "wall_s": self.timer(),
                "untrained": self.state_json["untrained"],
                "sums": {"loss_sum": self.loss_sum, "tok_sum": self.tok_sum}}


def _train_steps(cfg: NERFinetuneConfig, ctx: StageContext, run: _NERSetup, writer: Any, state: dict[str, Any],
                 timer: Timer) -> int:
    """Steps from ``state["step"]`` to the end: logs, validation, training states."""
    opt = cfg.optim
    plan = FitPlan(run.total, opt.lr, run.warmup, opt.max_grad_norm, cfg.log_every,
                   cfg.eval_every or run.steps_per_epoch, cfg.checkpoint_every or run.steps_per_epoch,
                   ctx.stage_dir / "state")
    run.model.train()
    with progress_bar(ctx.describe(f"finetune ner ({cfg.name})"), run.total, completed=state["step"],
                      enabled=ctx.progress) as update:
        return fit(_TokenTagging(cfg, run, writer, state, timer), plan, state["step"], update)


def _final_results(cfg: NERFinetuneConfig, run: _NERSetup, writer: Any, state: dict[str, Any], step: int,
                   train_wall: float) -> dict[str, Any]:
    """The results of a finished run: final valid/test metrics (logged), baselines, truncation."""
    from evoarena.training.supervised.conll import all_o_baseline, truncation_stats

    ner, opt = cfg.ner, cfg.optim
    results: dict[str, Any] = {
        "task": "ner", "encoder": ner.encoder.preset or ner.encoder.path, "init_from": ner.init_from,
        "labels": run.labels, "epochs": step / run.steps_per_epoch, "steps": step, "batch_size": opt.batch_size,
        "lr": opt.lr, "autocast": "bf16" if run.amp else "off", "threads": torch.get_num_threads(),
        "train_sentences": len(run.splits["train"].sentences), "train_wall_s": train_wall,
        "history": state["history"],
        "truncation": {name: truncation_stats(sp.encodings) for name, sp in run.splits.items()},
    }
    if state["untrained"] is not None:
        results["untrained_valid"] = _ner_row(state["untrained"])
    for name in ("valid", "test"):
        if name in run.splits:
            m = run.evaluate(run.splits[name], ner.eval_batch_size)
            if run.eval_split is None or name != run.eval_split.name:  # the loop logged valid at this step
                _log_ner_metrics(writer, name, m, step)
            results[name] = _ner_row(m)
            all_o = all_o_baseline(run.splits[name].sentences)
            results[f"{name}_all_o_baseline_token_accuracy"] = all_o["token_accuracy"]
    return results


def _summary(results: dict[str, Any], step: int, train_wall: float) -> str:
    parts = [f"ner {results['encoder']}: {results['epochs']:.2f} epochs, {step} steps, {train_wall:.0f} s"]
    for name in ("valid", "test"):
        if name in results:
            r = results[name]
            parts.append(f"{name} entity F1 {r['entity_f1']:.4f} (P {r['entity_precision']:.4f} "
                         f"R {r['entity_recall']:.4f}), token accuracy {r['token_accuracy']:.4f}")
    return "; ".join(parts)


def run_ner(cfg: NERFinetuneConfig, ctx: StageContext) -> dict[str, Any]:
    """``task: ner`` (see the module docstring): run or resume into ``ctx``; returns the results."""
    state_dir, prior = loop.begin(ctx, cfg.threads, cfg.seed)
    if prior is not None and prior.get("done"):
        return ctx.results() or prior.get("results", {})
    run = _setup(cfg, state_dir, prior)
    state: dict[str, Any] = {"step": 0, "history": [], "sums": {}, "untrained": None}
    wall0 = 0.0
    if prior is not None:
        load_state(state_dir, run.model, run.optimizer)
        state.update(step=prior["step"], history=prior["history"], sums=prior.get("sums", {}),
                     untrained=prior.get("untrained"))
        wall0 = prior["wall_s"]
        restore_torch_rng(prior)
    timer = Timer(wall0)
    writer = ctx.writer(purge_step=runs.resume_purge_step(ctx.resume, state["step"]))
    if state["step"] == 0:
        writer.add_text("finetune/config", f"```\n{json.dumps(cfg.model_dump(mode='json'), indent=1)}\n```", 0)
    if prior is None and run.eval_split is not None:
        state["untrained"] = run.evaluate(run.eval_split, cfg.ner.eval_batch_size)
        _log_ner_metrics(writer, run.eval_split.name, state["untrained"], 0)
    step = _train_steps(cfg, ctx, run, writer, state, timer)
    train_wall = timer()
    results = _final_results(cfg, run, writer, state, step, train_wall)
    results["wall_s"] = timer()
    ckpt = export_token_classifier(run.model, run.id2label, ctx.stage_dir / "checkpoint",
                                   {"results": {k: results[k] for k in ("valid", "test") if k in results}})
    results["checkpoint"] = str(ckpt)
    results["summary"] = _summary(results, step, train_wall)
    writer.add_text("finetune/summary", results["summary"], step)
    writer.close()
    ctx.write_results(results)
    loop.save_state(state_dir, run.model, run.optimizer,
                    {"step": step, "history": state["history"], "wall_s": results["wall_s"], "done": True,
                     "results": results}, run.model.encoder.tokenizer)
    return results


class NERStage(StageKind):
    """``kind: finetune, task: ner``: token classification on CoNLL files; hands on an encoder."""

    name, kind = "finetune:ner", "finetune"
    config = NERFinetuneConfig
    agent_label = "NER encoder, untrained heads"

    def run(self, cfg: NERFinetuneConfig, ctx: StageContext) -> dict[str, Any]:
        return run_ner(cfg, ctx)

    def init_slots(self, data: dict[str, Any]) -> list[InitSlot]:
        return [InitSlot("ner.init_from", data.setdefault("ner", {}))]


STAGE = NERStage()
