"""The supervised stages: masked-LM pre-training (:mod:`.pretrain`), NER fine-tuning on CoNLL-2003 (:mod:`.ner`,
data in :mod:`.conll`) and behaviour cloning from expert play (:mod:`.bc`, demos in :mod:`.demos`), all through one
fit loop with one resumable state (:mod:`.loop`)."""
