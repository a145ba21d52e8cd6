"""`aura-jax infer OUT --audio clip.wav --prompt "..." [--max-new-tokens N] [--device cpu|cuda]`:
one greedy answer from an exported model (PyTorch, `aura_jax.torch.AuraSpeechLM`)."""

from __future__ import annotations


def add_infer_arguments(p) -> None:
    p.add_argument("exported", help="directory written by `aura-jax export`")
    p.add_argument("--audio", required=True, help="audio file (any format libsndfile/librosa reads)")
    p.add_argument("--prompt", default="Transcribe the speech.")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--variant", default=None, choices=["merged", "peft"], help="for a --format both export")


def infer_main(args) -> int:
    from aura_jax.torch import AuraSpeechLM

    lm = AuraSpeechLM.from_pretrained(args.exported, device=getattr(args, "device", "cpu"),
                                      variant=getattr(args, "variant", None))
    print(lm.generate(args.audio, getattr(args, "prompt", "Transcribe the speech."),
                      max_new_tokens=getattr(args, "max_new_tokens", 64)))
    return 0
