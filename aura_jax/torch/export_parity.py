"""`aura-jax check-parity --run RUN_DIR --exported OUT`: the JAX student restored
from a run and the exported PyTorch model see the same audio and prompt and must
give the same logits at every position (fp32 export: ≤1e-4).

The two sides build their inputs independently, each as docs/EXPORT.md
("Prompt and splice") says: JAX with `ChatTokenizer` on the run's LLM directory,
torch with the export's `transformers` tokenizer. Their token ids are compared
first; logits are only compared when the ids agree.
"""

from __future__ import annotations

import os
import sys

import numpy as np


class ParityError(ValueError):
    """The JAX run and the export disagree before any logits are compared (token ids, shapes)."""


def _describe_mismatch(ours: list[int], theirs: list[int], decode) -> str:
    i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    show = lambda ids: repr(decode(ids[max(0, i - 3):i + 3]))
    return (f"token ids differ between the run's tokenizer (JAX, {len(ours)} ids) and the export's "
            f"(torch, {len(theirs)} ids) at position {i}: JAX {ours[i:i + 6]} {show(ours)} vs torch "
            f"{theirs[i:i + 6]} {show(theirs)}. Check that --base/--exported carry the run's tokenizer "
            f"and chat template.")


def _waveform(audio, sampling_rate: int) -> np.ndarray:
    from aura_jax.audio import load_audio

    if audio is None:
        from aura_jax.synth import synthesize

        return synthesize("the quick brown fox", sampling_rate=sampling_rate)
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, sampling_rate)
    return np.asarray(audio, np.float32)  # a waveform at `sampling_rate`


def check_export_parity(run_dir, exported, *, audio=None, prompt: str = "Transcribe the speech.",
                        step: int | None = None, variant: str | None = None, device: str = "cpu") -> dict:
    """Logits of the run's JAX student vs the exported torch model on one clip + prompt.

    `audio`: a path, a 16 kHz waveform, or None (synthesized "the quick brown fox").
    `variant`: "merged" or "peft" for a format-"both" export. Raises ParityError if the
    two sides' token ids (or logit shapes) differ.
    Returns max_abs_diff, mean_abs_diff, tokens (positions compared), audio_tokens, text_tokens,
    step, kind, dtype, logit_scale (max |logit|), argmax_agreement (fraction of positions)."""
    from aura_jax.torch.infer import check_audio, check_exported

    check_exported(exported, variant)  # one-line errors before anything heavy is imported or restored
    if isinstance(audio, (str, os.PathLike)):
        check_audio(audio)

    import jax.numpy as jnp
    import torch

    from aura_jax.audio import log_mel_spectrogram, num_valid_frames
    from aura_jax.inference.streaming import padded_frames
    from aura_jax.tokenizer import ChatTokenizer, audio_prompt_ids
    from aura_jax.torch import AuraSpeechLM
    from aura_jax.training.checkpoint import restore_student

    config, model, step = restore_student(run_dir, step)
    a = config.audio
    wave = _waveform(audio, a.sampling_rate)
    tokenizer = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
    ids = audio_prompt_ids(tokenizer, config, prompt)

    lm = AuraSpeechLM.from_pretrained(exported, variant=variant, device=device)
    embeds, mask, torch_ids = lm.prepare(wave, prompt, a.sampling_rate)
    torch_ids = torch_ids[0].tolist()
    if torch_ids != ids:
        raise ParityError(_describe_mismatch(ids, torch_ids, tokenizer.decode))
    lm.arm(lm.audio_mask)  # an adapter export's adapters act at the audio positions (others ignore it)
    with torch.no_grad():
        theirs = lm.model(inputs_embeds=embeds, attention_mask=mask).logits.float().cpu().numpy()

    # as the export's runner does: the clip padded to the training bucket that holds it
    frames = padded_frames(num_valid_frames(len(wave)), config.data.audio_buckets)
    mel = log_mel_spectrogram(wave, a.sampling_rate, a.n_mels)[:, :min(a.num_frames, frames)]
    x = jnp.asarray([ids], dtype=jnp.int32)
    out = model.student(x, jnp.ones(x.shape, bool), jnp.zeros(x.shape, bool), jnp.asarray(mel[None]))
    ours = np.asarray(out.logits, np.float32)
    if ours.shape != theirs.shape:
        raise ParityError(f"logit shapes differ: JAX {ours.shape} vs torch {theirs.shape}")

    diff = np.abs(ours - theirs)
    n_audio = int(np.asarray(out.spliced.audio_mask).sum())
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "tokens": int(diff.shape[1]),
            "audio_tokens": n_audio, "text_tokens": len(ids) - 1, "step": int(step),
            "kind": lm.aura.get("kind"), "dtype": str(next(lm.model.parameters()).dtype).replace("torch.", ""),
            "logit_scale": float(np.abs(theirs).max()),
            "argmax_agreement": float((ours.argmax(-1) == theirs.argmax(-1)).mean())}


def parity_main(args) -> int:
    """CLI: prints the report and `max_abs_diff=<value>`; exit status 1 above `args.tol` (default 1e-4)."""
    tol = getattr(args, "tol", 1e-4)
    try:
        report = check_export_parity(args.run, args.exported, audio=getattr(args, "audio", None),
                                     prompt=getattr(args, "prompt", "Transcribe the speech."),
                                     step=getattr(args, "step", None), variant=getattr(args, "variant", None))
    except ParityError as exc:
        print(f"check-parity: {exc}", file=sys.stderr)
        return 1
    ok = report["max_abs_diff"] <= tol
    print(f"{report['tokens']} positions ({report['audio_tokens']} audio + {report['text_tokens']} prompt), "
          f"step {report['step']}, {report['kind']} export in {report['dtype']}: "
          f"mean_abs_diff={report['mean_abs_diff']:.3e}, max |logit| {report['logit_scale']:.2f}, "
          f"argmax agreement {report['argmax_agreement']:.4f}")
    print(f"max_abs_diff={report['max_abs_diff']:.3e} (tolerance {tol:g}: {'OK' if ok else 'FAIL'})")
    return 0 if ok else 1
