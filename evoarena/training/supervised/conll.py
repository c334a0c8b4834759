"""CoNLL-2003 NER data and evaluation: reading, IOB1->IOB2, word-piece label alignment, metrics.

Pipeline::

    train = to_iob2_sentences(read_conll("train.txt"))        # file is IOB1
    labels = label_list(train); label2id, id2label = label_maps(labels)
    enc = encode_sentences(train, tokenizer, label2id)        # label on FIRST piece, -100 elsewhere
    batch = collate(enc[:32], tokenizer.pad_token_id)         # padded torch tensors
    tags = decode_predictions(pred_ids, e["word_ids"], id2label, n_words=e["n_words"])
    ner_metrics(true_tags, pred_tags)                         # entity P/R/F1 + token_accuracy

Two different numbers come out of :func:`ner_metrics` and must not be confused:

* ``entity_precision`` / ``entity_recall`` / ``entity_f1``: entity-level, micro-averaged over
  entity types, computed by seqeval in its default mode (the conlleval rules). An entity counts
  as correct only if type, start and end all match. This is the CoNLL-2003 score.
* ``token_accuracy``: fraction of all word tokens whose tag is right, *including* ``O`` tokens.
  On CoNLL-2003 predicting ``O`` everywhere already gives ~0.83 (see :func:`all_o_baseline`),
  so it is not a measure of NER quality.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

IGNORE_INDEX = -100
"""Label id for positions that get no loss and no prediction (later word pieces, special tokens, padding)."""

DOCSTART = "-DOCSTART-"

Scheme = Literal["IOB1", "IOB2", "none"]


class ConllFormatError(ValueError):
    """A malformed CoNLL file; the message starts with ``FILE:LINE:``."""


class TagError(ValueError):
    """A tag that is not ``O``, ``B-TYPE`` or ``I-TYPE``."""


@dataclass
class Sentence:
    """One sentence: parallel lists of words and tags."""

    words: list[str]
    tags: list[str]

    def __post_init__(self) -> None:
        if len(self.words) != len(self.tags):
            raise ValueError(f"Sentence has {len(self.words)} words but {len(self.tags)} tags")


# --------------------------------------------------------------------------- reading


def read_conll(path: str | os.PathLike[str], column: int = -1) -> list[Sentence]:
    """Read a CoNLL column file: word in field 0, tag in field ``column`` (default: last).

    Blank lines separate sentences; ``-DOCSTART-`` lines (matched on the first field, whatever
    the other fields are) are skipped and also end a sentence. Every token line must have at
    least two whitespace-separated fields and as many fields as the first token line; otherwise
    :class:`ConllFormatError` is raised naming the file and the 1-based line number. Tags are
    returned as written (no scheme conversion, no validation).
    """
    path = Path(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    n_fields: int | None = None
    first_line = 0

    def flush() -> None:
        if words:
            sentences.append(Sentence(words.copy(), tags.copy()))
            words.clear()
            tags.clear()

    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            fields = raw.split()
            if not fields:
                flush()
                continue
            if fields[0] == DOCSTART:
                flush()
                continue
            if len(fields) < 2:
                raise ConllFormatError(
                    f"{path}:{lineno}: expected at least 2 whitespace-separated fields "
                    f"(word ... tag), got {len(fields)}: {raw.rstrip()!r}"
                )
            if n_fields is None:
                n_fields, first_line = len(fields), lineno
                if not -n_fields <= column < n_fields:
                    raise ConllFormatError(
                        f"{path}:{lineno}: tag column {column} is out of range for {n_fields} fields"
                    )
            elif len(fields) != n_fields:
                raise ConllFormatError(
                    f"{path}:{lineno}: expected {n_fields} fields as on line {first_line}, "
                    f"got {len(fields)}: {raw.rstrip()!r}"
                )
            words.append(fields[0])
            tags.append(fields[column])
    flush()
    return sentences


# --------------------------------------------------------------------------- tag schemes


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split ``"B-PER"`` into ``("B", "PER")`` and ``"O"`` into ``("O", None)``; reject other forms."""
    if tag == "O":
        return "O", None
    prefix, sep, etype = tag.partition("-")
    if sep and prefix in ("B", "I") and etype and not any(c.isspace() for c in etype):
        return prefix, etype
    raise TagError(f"unknown tag form {tag!r}: expected 'O', 'B-TYPE' or 'I-TYPE' (IOB1 or IOB2)")


def _types(tags: Sequence[str]) -> list[tuple[str, str | None]]:
    out = []
    for i, tag in enumerate(tags):
        try:
            out.append(split_tag(tag))
        except TagError as err:
            raise TagError(f"{err} (position {i} of {list(tags)!r})") from None
    return out


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Convert IOB1 or IOB2 tags to IOB2 without needing to know which (detect-free).

    ``I-X`` becomes ``B-X`` where it starts an entity (first tag, or after ``O`` or another
    type); everything else is kept. Valid IOB2 has no such ``I-X``, so it comes back unchanged.
    Entity spans (conlleval rules) are preserved exactly.
    """
    out: list[str] = []
    prev_type: str | None = None
    for tag, (prefix, etype) in zip(tags, _types(tags), strict=True):
        out.append(f"B-{etype}" if prefix == "I" and etype != prev_type else tag)
        prev_type = etype
    return out


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """Convert IOB1 tags (CoNLL-2003 files) to IOB2; same mapping as :func:`to_iob2`."""
    return to_iob2(tags)


def to_iob2_sentences(sentences: Sequence[Sentence]) -> list[Sentence]:
    """Return new sentences with tags converted by :func:`to_iob2`."""
    return [Sentence(list(s.words), to_iob2(s.tags)) for s in sentences]


def detect_scheme(tags: Sequence[str] | Sequence[Sequence[str]]) -> Scheme:
    """Say which scheme one tag sequence, or a list of them, is written in.

    ``"IOB1"`` if some ``I-X`` starts an entity (impossible in IOB2); otherwise ``"IOB2"`` if any
    entity tag occurs; ``"none"`` when all tags are ``O``. A corpus without ``I-X`` starts is
    valid in both schemes and reads the same either way; it is reported as ``"IOB2"``.
    """
    seqs: Sequence[Sequence[str]] = [tags] if tags and isinstance(tags[0], str) else tags  # type: ignore[list-item]
    any_entity = False
    for seq in seqs:
        prev_type: str | None = None
        for prefix, etype in _types(seq):
            if prefix == "I" and etype != prev_type:
                return "IOB1"
            any_entity = any_entity or etype is not None
            prev_type = etype
    return "IOB2" if any_entity else "none"


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities as ``(type, start, end)`` with ``end`` inclusive (seqeval's convention).

    conlleval rules, valid for IOB1 and IOB2 alike: an entity starts at ``B-X``, or at ``I-X``
    when the previous tag is ``O`` or of another type, and runs while ``I-X`` follows.
    """
    spans: list[tuple[str, int, int]] = []
    prev_type: str | None = None
    for i, (prefix, etype) in enumerate(_types(tags)):
        if etype is None:
            prev_type = None
            continue
        if prefix == "B" or etype != prev_type:
            spans.append((etype, i, i))
        else:
            t, start, _ = spans[-1]
            spans[-1] = (t, start, i)
        prev_type = etype
    return spans


# --------------------------------------------------------------------------- labels


def label_list(sentences: Sequence[Sentence]) -> list[str]:
    """All tags used in ``sentences``: ``"O"`` first (always present), the rest sorted."""
    found = {tag for s in sentences for tag in s.tags}
    _types(sorted(found))
    return ["O", *sorted(found - {"O"})]


def label_maps(labels: Sequence[str]) -> tuple[dict[str, int], dict[int, str]]:
    """``(label2id, id2label)`` for a label list, ids in list order."""
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {list(labels)!r}")
    label2id = {lab: i for i, lab in enumerate(labels)}
    return label2id, {i: lab for lab, i in label2id.items()}


# --------------------------------------------------------------------------- word pieces


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Per-piece labels: the word's label on its FIRST piece, ``-100`` on later pieces and specials.

    ``word_ids`` is the tokenizer's piece->word map (``None`` for special tokens).
    """
    out: list[int] = []
    seen: set[int] = set()
    for wid in word_ids:
        if wid is None or wid in seen:
            out.append(IGNORE_INDEX)
            continue
        if not 0 <= wid < len(word_labels):
            raise IndexError(f"word id {wid} out of range for {len(word_labels)} word labels")
        seen.add(wid)
        out.append(int(word_labels[wid]))
    return out


def encode_sentences(
    sentences: Sequence[Sentence],
    tokenizer: Any,
    label2id: Mapping[str, int],
    max_length: int = 128,
) -> list[dict[str, Any]]:
    """Tokenize words with a fast tokenizer (``is_split_into_words=True``) and align labels.

    Each item has ``input_ids``, ``attention_mask``, ``labels`` (see :func:`align_labels`),
    ``word_ids`` (``None`` for specials), ``n_words`` and ``words_lost``: the number of words
    with no piece left, i.e. cut off by truncation to ``max_length`` pieces (or, rarely, words
    the tokenizer maps to nothing). Those words get no label and decode to ``"O"``; see
    :func:`truncation_stats`. Tags must be in the scheme ``label2id`` was built from.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("encode_sentences needs a fast tokenizer (word_ids() is only available there)")
    if max_length <= tokenizer.num_special_tokens_to_add():
        raise ValueError(f"max_length={max_length} leaves no room for word pieces")
    try:
        word_labels = [[label2id[t] for t in s.tags] for s in sentences]
    except KeyError as err:
        raise KeyError(f"tag {err.args[0]!r} not in label2id {sorted(label2id)!r}") from None
    if not sentences:
        return []
    enc = tokenizer(
        [list(s.words) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    out = []
    for i, s in enumerate(sentences):
        wids = enc.word_ids(i)
        kept = {w for w in wids if w is not None}
        out.append(
            {
                "input_ids": list(enc["input_ids"][i]),
                "attention_mask": list(enc["attention_mask"][i]),
                "labels": align_labels(wids, word_labels[i]),
                "word_ids": list(wids),
                "n_words": len(s.words),
                "words_lost": len(s.words) - len(kept),
            }
        )
    return out


def truncation_stats(encodings: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Totals over :func:`encode_sentences` output: sentences/words, and how many lost words."""
    return {
        "sentences": len(encodings),
        "sentences_truncated": sum(1 for e in encodings if e["words_lost"]),
        "words": sum(e["n_words"] for e in encodings),
        "words_lost": sum(e["words_lost"] for e in encodings),
    }


def decode_predictions(
    pred_ids: Sequence[int] | torch.Tensor,
    word_ids: Sequence[int | None],
    id2label: Mapping[int, str],
    n_words: int | None = None,
) -> list[str]:
    """Word-level tags from per-piece predicted ids, read on the FIRST piece of each word.

    ``pred_ids`` may be longer than ``word_ids`` (padding); extra positions are ignored. Words
    with no piece (truncated) get ``"O"``. Pass ``n_words`` (from :func:`encode_sentences`) so
    that words cut off at the end are included; without it the length is ``max(word_ids) + 1``.
    """
    if isinstance(pred_ids, torch.Tensor):
        pred_ids = pred_ids.tolist()
    if len(pred_ids) < len(word_ids):
        raise ValueError(f"{len(pred_ids)} predictions for {len(word_ids)} word pieces")
    kept = [w for w in word_ids if w is not None]
    if n_words is None:
        n_words = max(kept, default=-1) + 1
    tags = ["O"] * n_words
    seen: set[int] = set()
    for pid, wid in zip(pred_ids, word_ids, strict=False):
        if wid is None or wid in seen:
            continue
        if wid >= n_words:
            raise IndexError(f"word id {wid} out of range for n_words={n_words}")
        seen.add(wid)
        tags[wid] = id2label[int(pid)]
    return tags


def collate(
    batch: Sequence[Mapping[str, Any]], pad_id: int, label_pad_id: int = IGNORE_INDEX
) -> dict[str, torch.Tensor]:
    """Pad ``input_ids`` (``pad_id``), ``attention_mask`` (0) and ``labels`` (-100) to the batch max.

    Returns ``torch.long`` tensors of shape ``(batch, longest)``. ``word_ids`` and the counts are
    not tensors and stay with the encodings (use them with :func:`decode_predictions`).
    """
    if not batch:
        raise ValueError("collate got an empty batch")
    width = max(len(item["input_ids"]) for item in batch)
    pads = {"input_ids": pad_id, "attention_mask": 0, "labels": label_pad_id}
    out: dict[str, torch.Tensor] = {}
    for key, pad in pads.items():
        if key not in batch[0]:
            continue
        out[key] = torch.tensor(
            [list(item[key]) + [pad] * (width - len(item[key])) for item in batch], dtype=torch.long
        )
    return out


# --------------------------------------------------------------------------- metrics


def ner_metrics(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level P/R/F1 (seqeval default mode = conlleval rules) and, separately, token accuracy.

    Keys: ``entity_precision``, ``entity_recall``, ``entity_f1`` (micro over types);
    ``per_type`` = ``{TYPE: {precision, recall, f1, support}}`` (support = true entities);
    ``n_true_entities``, ``n_pred_entities``, ``n_correct_entities``; ``token_accuracy`` (all
    tokens, ``O`` included: NOT an NER score); ``n_tokens``, ``n_sentences``. Both inputs may be
    IOB1 or IOB2: they are converted with :func:`to_iob2` first, which changes no entity span.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true sentences but {len(pred_tags)} predicted")
    y_true, y_pred = [], []
    for i, (t, p) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted")
        y_true.append(to_iob2(t))
        y_pred.append(to_iob2(p))
    n_tokens = sum(len(t) for t in y_true)
    n_right = sum(a == b for t, p in zip(y_true, y_pred, strict=True) for a, b in zip(t, p, strict=True))

    ents_true = set(get_entities(y_true))
    ents_pred = set(get_entities(y_pred))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    per_type: dict[str, dict[str, float | int]] = {}
    types = sorted({e[0] for e in ents_true | ents_pred})
    if types:
        ps, rs, fs, ss = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
        for name, tp, tr, tf, ts in zip(types, ps, rs, fs, ss, strict=True):
            per_type[name] = {
                "precision": float(tp),
                "recall": float(tr),
                "f1": float(tf),
                "support": int(ts),
            }
    return {
        "entity_precision": float(p),
        "entity_recall": float(r),
        "entity_f1": float(f),
        "per_type": per_type,
        "n_true_entities": len(ents_true),
        "n_pred_entities": len(ents_pred),
        "n_correct_entities": len(ents_true & ents_pred),
        "token_accuracy": n_right / n_tokens if n_tokens else 0.0,
        "n_tokens": n_tokens,
        "n_sentences": len(y_true),
    }


def all_o_baseline(sentences: Sequence[Sentence]) -> dict[str, Any]:
    """:func:`ner_metrics` of predicting ``O`` for every token (high token accuracy, entity F1 0)."""
    return ner_metrics([s.tags for s in sentences], [["O"] * len(s.tags) for s in sentences])
