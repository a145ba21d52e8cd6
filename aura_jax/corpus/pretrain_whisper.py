"""A tiny Whisper (encoder-decoder, transformers, torch CPU) trained for ASR on the corpus's
TRAIN voices, so the AuRA teacher's encoder layers carry real speech information and the
cascade baseline can transcribe.

The saved model is an ordinary Hugging Face Whisper directory at the real input shape
(128 mel bins by default, 3000 frames / 1500 encoder positions): `aura_jax.build.load_aura`
loads its encoder as the teacher, `aura_jax.torch.systems.CascadeSystem` transcribes with it.

Training is cheap because clips are short (< 4 s): most steps run the encoder on the first
W frames only (W just covers the longest clip plus silence; encoder positions are fixed
sinusoids, so positions 0..W/2 are the same as in the full model); the last
`full_length_steps` run at the full 3000 frames (30 s of padding, as at inference) so the
model also sees the long silent tail it will see in use. Log-mels are computed once and
cached as .npy in `OUT.work/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from aura_jax.audio import HOP_LENGTH, N_FFT, N_FRAMES, _hann_window, load_audio, mel_filters, num_valid_frames
from aura_jax.corpus.common import atomic_dir, cached, read_tsv, size_params, train_tokenizer, warmup_cosine, write_done

PAD, BOS, EOS, START = 0, 1, 2, 3  # <|endoftext|>, <|im_start|>, <|im_end|>, <|audio|> in the corpus tokenizer
SIZES = {  # default: ~0.25 s/step on 2 free cores; held-out WER ≈ 0.58 after 600 steps (ctc_weight 1, lr 3e-3)
    "default": dict(steps=1000, d_model=128, encoder_layers=3, decoder_layers=1, heads=4, batch_size=32,
                    full_length_steps=30),
    "quick": dict(steps=120, d_model=96, encoder_layers=2, decoder_layers=1, heads=4, batch_size=16,
                  full_length_steps=4),
}


def short_log_mel(wave: np.ndarray, n_mels: int, frames: int) -> np.ndarray:
    """The first `frames` columns of `aura_jax.audio.log_mel_spectrogram(wave)` (same numbers),
    computed without the 30 s of padding; valid while the clip ends 3+ frames before `frames`."""
    x = np.asarray(wave, np.float64)
    length = (frames + 3) * HOP_LENGTH
    x = x[:length] if x.shape[0] >= length else np.pad(x, (0, length - x.shape[0]))
    half = N_FFT // 2
    x = np.pad(x, (half, half), mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[: frames * HOP_LENGTH : HOP_LENGTH]
    spec = np.fft.rfft(win * _hann_window(), axis=-1)
    mel = mel_filters(n_mels) @ (spec.real**2 + spec.imag**2).T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    # The full window's peak is the clip's (its silent tail is at the 1e-10 floor).
    log_spec = np.maximum(log_spec, max(log_spec.max(), -10.0) - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def to_full_length(feats: np.ndarray) -> np.ndarray:
    """[..., mel, W] short features → [..., mel, 3000]: the silent tail repeats the last (silent) column."""
    pad = [(0, 0)] * (feats.ndim - 1) + [(0, N_FRAMES - feats.shape[-1])]
    return np.pad(feats, pad, mode="edge")


def _mels(paths: list[Path], n_mels: int, work: Path, workers: int, desc: str):
    """(features [N, mel, W] float16, W) for the clips, cached in `work`."""
    from tqdm import tqdm

    key = hashlib.sha256(json.dumps([n_mels] + [f"{p}:{p.stat().st_size}" for p in paths]).encode()).hexdigest()[:16]
    cache = work / f"mels-{desc}-{key}.npy"
    if cache.exists():
        feats = np.load(cache)
        return feats, feats.shape[-1]
    waves = [load_audio(p) for p in paths]
    longest = max(num_valid_frames(w.shape[0]) for w in waves)
    frames = min(N_FRAMES, int(math.ceil((longest + 8) / 16) * 16))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        feats = list(tqdm(pool.map(lambda w: short_log_mel(w, n_mels, frames), waves), total=len(waves),
                          desc=f"log-mel {desc}", leave=False))
    feats = np.stack(feats).astype(np.float16)
    work.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    tmp.rename(cache)
    return feats, frames


def _encode_short(model, feats):
    """The Whisper encoder on fewer than 3000 frames (transformers insists on 3000)."""
    import torch
    from torch.nn.functional import gelu

    enc = model.model.encoder
    x = gelu(enc.conv2(gelu(enc.conv1(feats)))).permute(0, 2, 1)
    x = x + enc.embed_positions.weight[: x.shape[1]]
    for layer in enc.layers:
        x = layer(x, None)
    return enc.layer_norm(x) if isinstance(x, torch.Tensor) else enc.layer_norm(x[0])


def transcribe(model, tokenizer, feats: np.ndarray, *, batch_size: int = 32, max_new_tokens: int = 40) -> list[str]:
    """Greedy transcripts of full-length features [N, mel, 3000] (transformers' Whisper generate)."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(feats), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(feats[s:s + batch_size], np.float32))
            ids = model.generate(x, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
            out += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def _wer(predictions: list[str], references: list[str]) -> float:
    from aura_jax.evaluate.metrics import asr_scores

    return float(asr_scores(predictions, references)["wer"])


def pretrain_whisper(corpus_dir, out_dir, *, steps: int | None = None, seed: int = 0, size: str = "default",
                     d_model: int | None = None, encoder_layers: int | None = None,
                     decoder_layers: int | None = None, heads: int | None = None, batch_size: int | None = None,
                     full_length_steps: int | None = None, num_mel_bins: int = 128, vocab_size: int = 512,
                     learning_rate: float = 3e-3, warmup_steps: int = 50, ctc_weight: float = 1.0,
                     max_eval: int = 200,
                     workers: int = 2, progress: bool = True) -> dict:
    """Train the tiny Whisper ASR model on `corpus_dir/asr_train`, save it to `out_dir`; returns (and
    writes as `out_dir/done.json`) params, final loss, train / held-out-voice WER and wall time.
    A second call with the same parameters returns the stored result at once."""
    args = dict(steps=steps, d_model=d_model, encoder_layers=encoder_layers, decoder_layers=decoder_layers,
                heads=heads, batch_size=batch_size, full_length_steps=full_length_steps)
    hp = size_params(SIZES, size, args)
    corpus, out = Path(corpus_dir), Path(out_dir)
    stamp = json.loads((corpus / "corpus.json").read_text())
    params = {"corpus": stamp["params"], "seed": int(seed), **hp, "num_mel_bins": num_mel_bins,
              "vocab_size": vocab_size, "learning_rate": learning_rate, "warmup_steps": warmup_steps, "ctc_weight": ctc_weight,
              "max_eval": max_eval, "version": 1}
    if (hit := cached(out, params)) is not None:
        return hit

    import torch
    from tqdm import tqdm
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
    from transformers.modeling_outputs import BaseModelOutput

    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    work = Path(str(out) + ".work")
    train_rows, test_rows = read_tsv(corpus / "asr_train"), read_tsv(corpus / "asr_test")
    feats, frames = _mels([p for p, _ in train_rows], num_mel_bins, work, workers, "train")

    with atomic_dir(out) as tmp:
        lm_text = (corpus / "lm_text.txt").read_text(encoding="utf-8").splitlines()
        tok = train_tokenizer([s for _, s in train_rows] + lm_text, tmp, vocab_size)
        max_target = 64
        labels = np.full((len(train_rows), max_target), -100, np.int64)
        for i, (_, text) in enumerate(train_rows):
            ids = tok.encode(text, add_special_tokens=False)[: max_target - 1] + [EOS]
            labels[i, :len(ids)] = ids
        label_len = int((labels != -100).sum(1).max())
        labels = labels[:, :label_len]

        config = WhisperConfig(
            vocab_size=vocab_size, num_mel_bins=num_mel_bins, d_model=hp["d_model"],
            encoder_layers=hp["encoder_layers"], encoder_attention_heads=hp["heads"],
            encoder_ffn_dim=4 * hp["d_model"], decoder_layers=hp["decoder_layers"],
            decoder_attention_heads=hp["heads"], decoder_ffn_dim=4 * hp["d_model"], max_source_positions=1500,
            max_target_positions=max_target, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
            decoder_start_token_id=START, suppress_tokens=[], begin_suppress_tokens=[], dropout=0.0)
        model = WhisperForConditionalGeneration(config)
        model.generation_config.decoder_start_token_id = START
        model.generation_config.eos_token_id = EOS
        model.generation_config.pad_token_id = PAD
        model.generation_config.max_length = max_target
        model.train()
        ctc_head = torch.nn.Linear(hp["d_model"], vocab_size)
        trained = [p for p in model.parameters() if p.requires_grad] + list(ctc_head.parameters())
        decay = [p for p in trained if p.ndim >= 2]
        no_decay = [p for p in trained if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=learning_rate, betas=(0.9, 0.98))
        total = hp["steps"]

        lr_at = warmup_cosine(learning_rate, warmup_steps, total, floor=0.1)

        losses, order, pos = [], rng.permutation(len(train_rows)), 0
        bar = tqdm(range(total), desc="whisper", disable=not progress)
        for step in bar:
            if pos + hp["batch_size"] > len(order):
                order, pos = rng.permutation(len(train_rows)), 0
            idx = np.sort(order[pos:pos + hp["batch_size"]])
            pos += hp["batch_size"]
            x = feats[idx].astype(np.float32)
            y = torch.from_numpy(labels[idx])
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            if step >= total - hp["full_length_steps"]:
                enc = model.model.encoder(input_features=torch.from_numpy(to_full_length(x))).last_hidden_state
            else:
                enc = _encode_short(model, torch.from_numpy(x))
            loss = model(encoder_outputs=BaseModelOutput(last_hidden_state=enc), labels=y).loss
            if ctc_weight > 0:  # auxiliary CTC on the encoder (not saved): aligns it to the text early
                log_probs = torch.log_softmax(ctc_head(enc[:, : frames // 2]), -1).transpose(0, 1)
                mask = (y != -100) & (y != EOS)
                ctc = torch.nn.functional.ctc_loss(
                    log_probs, y[mask], torch.full((len(idx),), log_probs.shape[0], dtype=torch.long),
                    mask.sum(1), blank=PAD, zero_infinity=True)
                loss = loss + ctc_weight * ctc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            opt.step()
            losses.append(float(loss.detach()))  # CE (+ CTC)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        train_seconds = time.perf_counter() - start
        model.eval()

        # WER at the full 3000 frames, as the cascade and the teacher see audio.
        n_train = min(max_eval, len(train_rows))
        train_pred = transcribe(model, tok, to_full_length(feats[:n_train].astype(np.float32)))
        test_feats, _ = _mels([p for p, _ in test_rows[:max_eval]], num_mel_bins, work, workers, "test")
        test_pred = transcribe(model, tok, to_full_length(test_feats.astype(np.float32)))
        test_refs = [s for _, s in test_rows[:max_eval]]
        result = {
            "params": params, "kind": "whisper", "out_dir": str(out),
            "initial_loss": float(np.mean(losses[:5])), "final_loss": float(np.mean(losses[-20:])),
            "loss_history": [round(float(np.mean(losses[i:i + 10])), 4) for i in range(0, len(losses), 10)],
            "train_wer": _wer(train_pred, [s for _, s in train_rows[:n_train]]),
            "heldout_wer": _wer(test_pred, test_refs),
            "heldout_voices": stamp["heldout_voices"], "frames_trained": frames,
            "examples": [{"reference": r, "prediction": p} for r, p in zip(test_refs[:5], test_pred[:5])],
            "num_parameters": int(sum(p.numel() for p in model.parameters())),
            "train_seconds": round(train_seconds, 1), "seconds": round(time.perf_counter() - start, 1),
        }
        model.save_pretrained(str(tmp))
        WhisperFeatureExtractor(feature_size=num_mel_bins).save_pretrained(str(tmp))
        write_done(tmp, result)
    return result
