"""Training: the stages of the chain and what runs them.

- :mod:`~evoarena.training.protocol`: the one stage protocol (``StageKind``, ``StageContext``);
  :mod:`~evoarena.training.stages`: the registry of every stage; :mod:`~evoarena.training.pipeline`: the chain
  of stages in one run folder.
- The stages: :mod:`~evoarena.training.supervised` (``pretrain``, ``finetune:ner``, ``finetune:bc``),
  :mod:`~evoarena.training.rl` (``train``: PPO, league, SB3 backend) and :mod:`~evoarena.training.evaluate`.
- :mod:`~evoarena.training.infra`: run folders, progress lines and the config checks run before any work.
"""
