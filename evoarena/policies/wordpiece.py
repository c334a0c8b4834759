"""A WordPiece tokenizer learned deterministically: ``train_wordpiece(texts, vocab_size)``.

The Hugging Face trainer breaks ties between equally frequent pairs in hash-map order, which is
seeded per process, so the same corpus gave a different vocabulary in every new process. Here the
vocabulary is learned by byte-pair merges over the corpus's words (counted after the BERT
normalizer and pre-tokenizer), with ties broken by the pair's text: the same texts and size give the
same vocabulary in every process. The result is an ordinary ``PreTrainedTokenizerFast`` with a
WordPiece model (greedy longest-match-first, ``##`` continuation prefix).

Rules of the vocabulary: the special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4), then
every character of the corpus (as a word start, and as ``##c`` inside a word), then merged pieces,
most frequent pair first, until ``vocab_size`` (the alphabet is always kept whole). Ids after the
specials follow the pieces' sorted order.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PREFIX = "##"
MAX_WORD_CHARS = 100

Pair = tuple[str, str]


def _merged(a: str, b: str) -> str:
    return a + b[len(PREFIX):]


def _pairs(symbols: list[str]) -> Iterable[Pair]:
    return zip(symbols, symbols[1:])


def _merge_word(symbols: list[str], pair: Pair) -> list[str]:
    """``symbols`` with every non-overlapping occurrence of ``pair`` (left to right) merged."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
            out.append(_merged(*pair))
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_vocab(word_counts: dict[str, int], vocab_size: int) -> list[str]:
    """The WordPiece vocabulary (specials, alphabet, merged pieces) of ``word_counts``; deterministic."""
    words = sorted(w for w in word_counts if w and len(w) <= MAX_WORD_CHARS)
    symbols = [[w[0]] + [PREFIX + c for c in w[1:]] for w in words]
    counts = [int(word_counts[w]) for w in words]
    vocab: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    vocab.update(dict.fromkeys(sorted({s for syms in symbols for s in syms})))
    pair_count: Counter[Pair] = Counter()
    where: dict[Pair, set[int]] = {}
    for i, syms in enumerate(symbols):
        for p in _pairs(syms):
            pair_count[p] += counts[i]
            where.setdefault(p, set()).add(i)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or neg == 0:
            continue  # a stale entry: the pair's count changed since it was pushed
        vocab.setdefault(_merged(*pair))
        changed: set[Pair] = set()
        for i in sorted(where.pop(pair, ())):
            old = symbols[i]
            for p in _pairs(old):
                pair_count[p] -= counts[i]
                changed.add(p)
            new = _merge_word(old, pair)
            symbols[i] = new
            for p in _pairs(new):
                pair_count[p] += counts[i]
                where.setdefault(p, set()).add(i)
                changed.add(p)
        for p in changed:
            c = pair_count.get(p, 0)
            if c <= 0:
                pair_count.pop(p, None)
                where.pop(p, None)
            elif p != pair:
                heapq.heappush(heap, (-c, p))
    learned = [t for t in vocab if t not in SPECIAL_TOKENS]
    return list(SPECIAL_TOKENS) + sorted(learned)


def _bare_tokenizer(vocab: dict[str, int] | None = None):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    model = models.WordPiece(vocab=vocab or {t: i for i, t in enumerate(SPECIAL_TOKENS)}, unk_token="[UNK]",
                             max_input_chars_per_word=MAX_WORD_CHARS)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.WordPiece(prefix=PREFIX)
    return tok


def word_counts(texts: Sequence[str]) -> Counter[str]:
    """How often each word occurs in ``texts`` after the BERT normalizer and pre-tokenizer."""
    tok = _bare_tokenizer()
    out: Counter[str] = Counter()
    for text in texts:
        normalized = tok.normalizer.normalize_str(text)
        out.update(w for w, _span in tok.pre_tokenizer.pre_tokenize_str(normalized))
    return out


def train_wordpiece(texts: Sequence[str], vocab_size: int):
    """A lowercase WordPiece ``PreTrainedTokenizerFast`` learned from ``texts`` (see the module docstring).

    Digits are split one by one so numbers share tokens; an encoded text is ``[CLS] ... [SEP]``.
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    order = learn_vocab(word_counts(texts), vocab_size)
    tok = _bare_tokenizer({t: i for i, t in enumerate(order)})
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=4096,
    )
