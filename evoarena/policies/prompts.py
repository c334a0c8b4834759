"""Prompts of LLM-backed policies: the system message is the world's rules for the agent's role
(:func:`world_rules`, or ``policy.prompt``), the user message is the observation text, then the assistant turn
opens (:func:`chat_parts` splits the model's chat template around the observation); an answer ends with the
end-of-turn token (:func:`end_of_turn_ids`)."""

from __future__ import annotations

from typing import Any

OBS_MARK = "\u0001OBSERVATION\u0001"  #: stands for the observation when the chat template is split


def world_rules(env_id: str, role: str, env_kwargs: dict[str, Any] | None = None) -> str:
    """The rules of ``env_id`` for an agent of ``role``, as a short system message."""
    kw = dict(env_kwargs or {})
    if env_id == "dilemma_v0":
        from evoarena.envs.dilemma import GAMES

        g = GAMES[kw.get("game", "prisoners")]
        others = int(kw.get("num_agents", 2)) - 1
        who = "the other player" if others == 1 else f"each of the {others} other players"
        return (f"You play a repeated game for {kw.get('rounds', 20)} rounds against {who}. Each round you "
                f"choose cooperate or defect. Points per round: both cooperate {g['R']:g} each; both defect "
                f"{g['P']:g} each; if you defect and they cooperate you get {g['T']:g} and they get {g['S']:g}. "
                f"Score as many points as you can. Answer with one word: cooperate or defect.")
    if env_id == "negotiation_v0":
        return ("You split a pool of books, hats and balls with another player; each of you values the items "
                "privately, the whole pool is worth 10 to you. On your turn accept their offer or propose "
                "'take B book H hat L ball': the items you keep, they get the rest. With no deal by the last "
                "turn both get 0. Get as much value as you can. Answer with one action.")
    if env_id == "signaling_v0":
        if role == "speaker":
            return ("You describe a target object to a listener, one word per turn (a size, a colour or a "
                    "shape), so that they can pick it out from the other objects. You both score if they pick "
                    "the target. Answer with one word.")
        return ("A speaker describes one of the candidate objects with a few words. Pick the candidate the "
                "message describes; you both score if it is the target. Answer with the object.")
    return f"You are an agent of the multi-agent world {env_id}. Choose the best action."


def chat_parts(tokenizer, system: str) -> tuple[str, str]:
    """(the prompt text before the observation, the text after it) from the tokenizer's chat template
    (a plain ``system / observation / answer`` layout when it has none)."""
    if getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": OBS_MARK}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        before, _, after = text.partition(OBS_MARK)
        return before, after
    return f"{system}\n\n", "\nAnswer: "


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that close an assistant answer (``<|im_end|>`` for SmolLM2; eos otherwise; [] if none)."""
    for tok in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if tid is not None:
            return [int(tid)]
    return [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []


def llm_system_prompt(policy: Any) -> str | None:
    """The system message an LLM policy uses: ``policy.prompt`` or the world's rules for its role."""
    prompt = getattr(policy.cfg, "prompt", None)
    if prompt:
        return str(prompt)
    if not policy.env_id:
        return None
    return world_rules(policy.env_id, policy.role, policy.env_kwargs)
