"""Neural policies: text encoders, actor-critic heads, the MLP baseline and checkpoint folders.

``build_policy(cfg, env_id, agent=None)`` builds a policy for a world; ``save_checkpoint`` /
``load_policy`` write and read checkpoint folders; ``build_encoder`` and ``train_wordpiece``
give the text encoder alone (the pretrain stage uses them); ``world_corpus`` the worlds' text.

Modules, each importing only those listed before it: ``numerics``, ``wordpiece``, ``corpus`` (the worlds'
text), ``hf_models`` (local Hugging Face models and tokenizers), ``text_encoder`` (:class:`TextEncoder`),
``llm_files`` and ``prompts`` (the LLM's model files and prompts), ``llm_encoder`` (:class:`LLMEncoder`),
``encoder`` (``build_encoder``), ``base`` (:class:`BasePolicy`), ``llm`` (the lm head), ``checkpoint_format``,
``transfer`` (``init_from``), ``actor_critic`` (``build_policy``), ``io`` (checkpoint folders); ``sb3`` adapts
an encoder to Stable-Baselines3.
"""

from evoarena.policies.actor_critic import ActorCritic, MLPPolicy, build_policy, env_spaces, make_policy
from evoarena.policies.base import MASKED_LOGIT, ActOutput, BasePolicy, standardize
from evoarena.policies.corpus import world_corpus
from evoarena.policies.encoder import build_encoder
from evoarena.policies.hf_models import EncoderLoadError
from evoarena.policies.io import (
    CheckpointError,
    init_weights_from,
    load_optimizer_state,
    load_policy,
    load_trainer_state,
    read_policy_json,
    save_checkpoint,
)
from evoarena.policies.text_encoder import TextEncoder
from evoarena.policies.wordpiece import train_wordpiece

__all__ = [
    "MASKED_LOGIT", "ActOutput", "ActorCritic", "BasePolicy", "CheckpointError", "EncoderLoadError",
    "MLPPolicy", "TextEncoder", "build_encoder", "build_policy", "env_spaces", "init_weights_from",
    "load_optimizer_state", "load_policy", "load_trainer_state", "make_policy", "read_policy_json",
    "save_checkpoint", "standardize", "train_wordpiece", "world_corpus",
]
