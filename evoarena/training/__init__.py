"""Supervised training stages (e.g. NER fine-tuning on CoNLL-2003)."""
