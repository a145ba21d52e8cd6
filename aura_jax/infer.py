"""`aura-jax infer OUT --audio clip.wav --prompt "..."`: one answer from an exported model (PyTorch)."""

from __future__ import annotations


def infer_main(args) -> int:
    from aura_jax.torch import AuraSpeechLM

    lm = AuraSpeechLM.from_pretrained(args.exported, device=args.device)
    print(lm.generate(args.audio, args.prompt, max_new_tokens=args.max_new_tokens))
    return 0
