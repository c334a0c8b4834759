"""The finetune stage's ``task: ner``: ``run_ner(cfg, run_dir, resume)`` -> results dict.

Token classification on CoNLL column files. An encoder (``preset: tiny`` started from a pretrain
checkpoint with ``init_from``, ``preset: minilm``, or ``path:``) + dropout + a linear head over the last
hidden states; the label sits on each word's first piece (-100 elsewhere, all via
:mod:`evoarena.training.conll`). Batches are length-bucketed and padded to their longest sentence;
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

from evoarena.config import FinetuneConfig, NERConfig
from evoarena.storage import atomic_dir
from evoarena.training import runs
from evoarena.training.finetune import STAGE, STAGE_INDEX
from evoarena.training.supervised import (
    Timer,
    adamw,
    init_encoder_weights,
    load_state,
    lr_factor,
    progress_bar,
    read_state,
    restore_torch_rng,
    save_state,
    set_lr,
    torch_rng_state,
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


def _read_ner_data(cfg: FinetuneConfig) -> dict[str, NERSplit]:
    from evoarena.training.conll import read_conll, to_iob2_sentences

    data = cfg.ner.data  # type: ignore[union-attr]
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
    from evoarena.training.conll import collate, decode_predictions, ner_metrics

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


def run_ner(cfg: FinetuneConfig, run_dir: Path, resume: bool) -> dict[str, Any]:
    """``task: ner`` (see the module docstring)."""
    from evoarena.policies.encoder import load_tokenizer
    from evoarena.training.conll import (
        all_o_baseline,
        encode_sentences,
        label_list,
        label_maps,
        truncation_stats,
    )

    ner = cfg.ner
    assert ner is not None
    opt = cfg.optim
    sdir = runs.stage_dir(run_dir, STAGE_INDEX, STAGE)
    state_dir = sdir / "state"
    prior = read_state(state_dir) if resume else None
    if prior is not None and prior.get("done"):
        return runs.read_results(run_dir).get(STAGE, prior.get("results", {}))

    splits = _read_ner_data(cfg)
    labels = label_list([s for sp in splits.values() for s in sp.sentences])
    label2id, id2label = label_maps(labels)
    if prior is not None:
        tokenizer = load_tokenizer(state_dir)
    else:
        tokenizer = _ner_tokenizer(ner, splits["train"].sentences)
    model = build_token_classifier(ner, len(labels), tokenizer)
    dev = model.encoder.device
    amp = _autocast_dtype(ner.encoder, dev)
    max_len = model.encoder.max_length
    for sp in splits.values():
        sp.encodings = encode_sentences(sp.sentences, model.encoder.tokenizer, label2id, max_length=max_len)
    train = splits["train"]
    lengths = [len(e["input_ids"]) for e in train.encodings]
    steps_per_epoch = math.ceil(len(lengths) / opt.batch_size)
    total = opt.max_steps or steps_per_epoch * opt.epochs
    warmup = int(opt.warmup_fraction * total)
    optimizer = adamw(model, opt.lr, opt.weight_decay)
    eval_split = splits.get("valid")

    step, history, wall0 = 0, [], 0.0
    sums: dict[str, Any] = {}
    if prior is not None:
        load_state(state_dir, model, optimizer)
        step, history, wall0 = prior["step"], prior["history"], prior["wall_s"]
        sums, untrained = prior.get("sums", {}), prior.get("untrained")
        restore_torch_rng(prior)
    timer = Timer(wall0)
    writer = runs.tb_writer(run_dir, purge_step=runs.resume_purge_step(resume, step))
    if step == 0:
        writer.add_text("finetune/config", f"```\n{json.dumps(cfg.model_dump(mode='json'), indent=1)}\n```", 0)
    ckpt_every = cfg.checkpoint_every or steps_per_epoch
    eval_every = cfg.eval_every or steps_per_epoch

    def evaluate(split: NERSplit) -> dict[str, Any]:
        return evaluate_ner(model, split, id2label, ner.eval_batch_size, amp)

    if prior is None:
        untrained = None
    if prior is None and eval_split is not None:
        untrained = evaluate(eval_split)
        _log_ner_metrics(writer, eval_split.name, untrained, 0)
    model.train()
    loss_sum, tok_sum = float(sums.get("loss_sum", 0.0)), int(sums.get("tok_sum", 0))
    lossf = nn.CrossEntropyLoss(ignore_index=-100, reduction="sum")
    from evoarena.training.conll import collate

    with progress_bar(f"finetune ner ({cfg.name})", total, completed=step) as update:
        while step < total:
            epoch, k0 = divmod(step, steps_per_epoch)
            batches = length_buckets(lengths, opt.batch_size, random.Random(cfg.seed * 1000 + epoch))
            for bi in range(k0, len(batches)):
                if step >= total:
                    break
                batch = collate([train.encodings[i] for i in batches[bi]], model.encoder.pad_id)
                set_lr(optimizer, opt.lr * lr_factor(step, total, warmup))
                logits = model(batch["input_ids"].to(dev), batch["attention_mask"].to(dev), amp)
                target = batch["labels"].to(dev)
                n_tok = int((target != -100).sum())
                loss = lossf(logits.view(-1, logits.shape[-1]), target.view(-1)) / max(1, n_tok)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt.max_grad_norm)
                optimizer.step()
                step += 1
                loss_sum += float(loss.detach()) * n_tok
                tok_sum += n_tok
                if step % cfg.log_every == 0 or step == total:
                    writer.add_scalar("finetune/loss", loss_sum / max(1, tok_sum), step)
                    writer.add_scalar("finetune/lr", optimizer.param_groups[0]["lr"], step)
                    writer.add_scalar("finetune/epoch", step / steps_per_epoch, step)
                    rate = step * opt.batch_size / max(timer(), 1e-9)
                    writer.add_scalar("perf/sentences_per_s", rate, step)
                    update(0, info=f"loss {loss_sum / max(1, tok_sum):.4f}")
                    loss_sum, tok_sum = 0.0, 0
                if eval_split is not None and (step % eval_every == 0 or step == total):
                    m = evaluate(eval_split)
                    _log_ner_metrics(writer, eval_split.name, m, step)
                    history.append({"step": step, "epoch": step / steps_per_epoch, "wall_s": timer(),
                                    "entity_f1": m["entity_f1"], "token_accuracy": m["token_accuracy"]})
                    update(0, info=f"valid F1 {m['entity_f1']:.3f} tok acc {m['token_accuracy']:.3f}")
                if step % ckpt_every == 0 and step < total:
                    writer.flush()  # what was logged up to this state is on disk before the state is
                    save_state(state_dir, model, optimizer,
                               {"step": step, "history": history, "wall_s": timer(), "untrained": untrained,
                                "sums": {"loss_sum": loss_sum, "tok_sum": tok_sum}, "torch_rng": torch_rng_state()},
                               model.encoder.tokenizer)
                update(1)
    train_wall = timer()
    results: dict[str, Any] = {
        "task": "ner", "encoder": ner.encoder.preset or ner.encoder.path, "init_from": ner.init_from,
        "labels": labels, "epochs": step / steps_per_epoch, "steps": step, "batch_size": opt.batch_size,
        "lr": opt.lr, "autocast": "bf16" if amp else "off", "threads": torch.get_num_threads(),
        "train_sentences": len(train.sentences), "train_wall_s": train_wall, "history": history,
        "truncation": {name: truncation_stats(sp.encodings) for name, sp in splits.items()},
    }
    if untrained is not None:
        results["untrained_valid"] = _ner_row(untrained)
    for name in ("valid", "test"):
        if name in splits:
            m = evaluate(splits[name])
            if eval_split is None or name != eval_split.name:  # the loop logged valid at this step already
                _log_ner_metrics(writer, name, m, step)
            results[name] = _ner_row(m)
            all_o = all_o_baseline(splits[name].sentences)
            results[f"{name}_all_o_baseline_token_accuracy"] = all_o["token_accuracy"]
    results["wall_s"] = timer()
    ckpt = export_token_classifier(model, id2label, sdir / "checkpoint",
                                   {"results": {k: results[k] for k in ("valid", "test") if k in results}})
    results["checkpoint"] = str(ckpt)
    parts = [f"ner {results['encoder']}: {results['epochs']:.2f} epochs, {step} steps, {train_wall:.0f} s"]
    for name in ("valid", "test"):
        if name in results:
            r = results[name]
            parts.append(f"{name} entity F1 {r['entity_f1']:.4f} (P {r['entity_precision']:.4f} "
                         f"R {r['entity_recall']:.4f}), token accuracy {r['token_accuracy']:.4f}")
    results["summary"] = "; ".join(parts)
    writer.add_text("finetune/summary", results["summary"], step)
    writer.close()
    runs.update_results(run_dir, STAGE, results)
    save_state(state_dir, model, optimizer, {"step": step, "history": history, "wall_s": results["wall_s"],
                                             "done": True, "results": results}, model.encoder.tokenizer)
    return results
