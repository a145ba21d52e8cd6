"""`aura-jax check-parity --run RUN_DIR --exported OUT`: the JAX student restored
from a run and the exported PyTorch model see the same audio and prompt and must
give the same logits (fp32 export: ≤1e-4)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from aura_jax.audio import load_audio, log_mel_spectrogram


def jax_prompt_ids(tokenizer, config, prompt: str) -> list[int]:
    """The JAX side's ids, built as docs/EXPORT.md says (independently of the torch tokenizer)."""
    token = config.prompt.audio_token
    text = tokenizer.render([{"role": "system", "content": config.prompt.system},
                             {"role": "user", "content": f"{token} {prompt}"}], add_generation_prompt=True)
    before, after = text.split(token, 1)
    return tokenizer.encode(before) + [tokenizer.audio_token_id] + tokenizer.encode(after)


def check_export_parity(run_dir, exported, *, audio=None, prompt: str = "Transcribe the speech.",
                        step: int | None = None, variant: str | None = None) -> dict:
    from aura_jax.checkpoint import restore_student
    from aura_jax.synth import synthesize
    from aura_jax.tokenizer import ChatTokenizer
    from aura_jax.torch import AuraSpeechLM

    config, model, step = restore_student(run_dir, step)
    wave = synthesize("the quick brown fox") if audio is None else load_audio(audio, config.audio.sampling_rate)
    mel = log_mel_spectrogram(wave, config.audio.sampling_rate, config.audio.n_mels)[:, :config.audio.num_frames]
    tokenizer = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
    ids = jax_prompt_ids(tokenizer, config, prompt)
    torch_lm = AuraSpeechLM.from_pretrained(exported, variant=variant)
    torch_ids = torch_lm.prompt_ids(prompt)
    if torch_ids != ids:
        raise ValueError(f"token ids differ between the run's tokenizer and the export's: {ids} vs {torch_ids}")
    x = jnp.asarray([ids])
    ours = model.student(x, jnp.ones(x.shape, bool), jnp.zeros(x.shape, bool), jnp.asarray(mel[None])).logits
    theirs = torch_lm.logits(wave, prompt).float().numpy()
    diff = np.abs(np.asarray(ours, np.float32) - theirs)
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "tokens": int(diff.shape[1]),
            "step": step, "logit_scale": float(np.abs(theirs).max())}


def parity_main(args) -> int:
    report = check_export_parity(args.run, args.exported, audio=args.audio, prompt=args.prompt, step=args.step)
    ok = report["max_abs_diff"] <= args.tol
    print(f"{report['tokens']} positions (audio + prompt), step {report['step']}: "
          f"mean_abs_diff={report['mean_abs_diff']:.3e}, max |logit| {report['logit_scale']:.2f}")
    print(f"max_abs_diff={report['max_abs_diff']:.3e} (tolerance {args.tol:g}: {'OK' if ok else 'FAIL'})")
    return 0 if ok else 1
