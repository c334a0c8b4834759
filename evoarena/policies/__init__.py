"""Neural policies: text encoders, actor-critic heads, the MLP baseline and checkpoint folders.

``build_policy(cfg, env_id, agent=None)`` builds a policy for a world; ``save_checkpoint`` /
``load_policy`` write and read checkpoint folders; ``build_encoder`` and ``train_wordpiece``
give the text encoder alone (the pretrain stage uses them); ``world_corpus`` the worlds' text.
"""

from evoarena.policies.actor_critic import (
    MASKED_LOGIT,
    ActorCritic,
    ActOutput,
    BasePolicy,
    MLPPolicy,
    build_policy,
    env_spaces,
    make_policy,
    standardize,
)
from evoarena.policies.corpus import world_corpus
from evoarena.policies.encoder import EncoderLoadError, TextEncoder, build_encoder, train_wordpiece
from evoarena.policies.io import (
    CheckpointError,
    init_weights_from,
    load_optimizer_state,
    load_policy,
    load_trainer_state,
    read_policy_json,
    save_checkpoint,
)

__all__ = [
    "MASKED_LOGIT", "ActOutput", "ActorCritic", "BasePolicy", "CheckpointError", "EncoderLoadError",
    "MLPPolicy", "TextEncoder", "build_encoder", "build_policy", "env_spaces", "init_weights_from",
    "load_optimizer_state", "load_policy", "load_trainer_state", "make_policy", "read_policy_json",
    "save_checkpoint", "standardize", "train_wordpiece", "world_corpus",
]
