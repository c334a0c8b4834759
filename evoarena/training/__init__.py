"""Training: the stages of the chain (pretrain, finetune:ner, finetune:bc, train, evaluate), one protocol
(:mod:`~evoarena.training.protocol`), their registry (:mod:`~evoarena.training.stages`) and the pipeline that
runs them in one run folder (:mod:`~evoarena.training.pipeline`)."""
