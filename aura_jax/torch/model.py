"""AuraSpeechLM: audio patch embedding + a transformers causal LM, spliced at the
audio placeholder exactly as in training (docs/EXPORT.md, "Prompt and splice").

    lm = AuraSpeechLM.from_pretrained("exported/")           # merged, peft, or both (merged)
    lm.generate("clip.wav", "Transcribe the speech.")         # greedy, stops at eos

Only the audio front end (`aura_jax.audio`, numpy) and the patch embedding
below are aura_jax code; the LLM is a plain `AutoModelForCausalLM` (or base +
`peft.PeftModel`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from aura_jax.audio import load_audio, log_mel_spectrogram, num_valid_frames, to_mono_16k
from aura_jax.inference.streaming import padded_frames

EXPORT_FORMAT = "aura_jax.export/1"
VARIANTS = ("merged", "peft")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class AudioPatchEmbed(torch.nn.Module):
    """e_i = LayerNorm(W x_i + b) + positions[i], x_i = mel[:, i·P:(i+1)·P] flattened (bins major, frames minor)."""

    def __init__(self, weights: dict, patch_frames: int, eps: float):
        super().__init__()
        out_dim, in_dim = weights["proj.weight"].shape
        self.patch_frames = int(patch_frames)
        self.proj = torch.nn.Linear(in_dim, out_dim)
        self.norm = torch.nn.LayerNorm(out_dim, eps=eps)
        self.positions = torch.nn.Parameter(weights["positions"].detach().clone().float())
        with torch.no_grad():
            self.proj.weight.copy_(weights["proj.weight"])
            self.proj.bias.copy_(weights["proj.bias"])
            self.norm.weight.copy_(weights["norm.weight"])
            self.norm.bias.copy_(weights["norm.bias"])

    @classmethod
    def from_file(cls, path, patch_frames: int, eps: float) -> "AudioPatchEmbed":
        """From `audio_embed.safetensors` (float32, torch layouts)."""
        weights = load_file(str(path))
        missing = {"proj.weight", "proj.bias", "norm.weight", "norm.bias", "positions"} - set(weights)
        if missing:
            raise ValueError(f"{path}: missing tensors {sorted(missing)}")
        return cls(weights, patch_frames, eps)

    def forward(self, mel: torch.Tensor, first_patch: int = 0) -> torch.Tensor:
        """mel [batch, n_mels, frames] → audio tokens [batch, frames / P, hidden] (float32).
        `first_patch` (streaming): the clip's patch number of the first patch here."""
        b, m, length = mel.shape
        p = self.patch_frames
        if length % p:
            raise ValueError(f"{length} mel frames are not a multiple of patch_frames={p}")
        n = length // p
        if first_patch + n > self.positions.shape[0]:
            raise ValueError(f"{first_patch + n} audio tokens exceed the {self.positions.shape[0]} learned positions")
        x = mel.to(self.proj.weight.dtype)
        patches = x.reshape(b, m, n, p).permute(0, 2, 1, 3).reshape(b, n, m * p)
        return self.norm(self.proj(patches)) + self.positions[first_patch:first_patch + n]


def _resolve_dir(path: Path, variant: str | None) -> Path:
    """The directory holding the model: `path`, or `path/merged|peft` for a format-"both" export."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: use one of {', '.join(VARIANTS)}")
    if (path / "merged").is_dir() or (path / "peft").is_dir():
        choice = variant or ("merged" if (path / "merged").is_dir() else "peft")
        if not (path / choice).is_dir():
            raise FileNotFoundError(f"{path}: this export has no {choice}/ directory")
        return path / choice
    return path


def _torch_dtype(dtype, aura: dict):
    if dtype is None:
        dtype = aura.get("dtype", "bfloat16")
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
        return _DTYPES[dtype]
    return dtype


class AuraSpeechLM:
    """An exported AuRA model: `model` (transformers causal LM), `tokenizer`, `audio_embed`, `aura` (aura_config)."""

    def __init__(self, model, tokenizer, audio_embed: AudioPatchEmbed, aura: dict, device: str = "cpu"):
        _check_causal(aura)
        self.model, self.tokenizer, self.audio_embed, self.aura = model, tokenizer, audio_embed, aura
        self.device = torch.device(device)
        self.audio_token, self.audio_token_id = aura["audio_token"], int(aura["audio_token_id"])
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_token_ids = _eos_ids(model, tokenizer)

    @classmethod
    def from_pretrained(cls, path, *, device: str = "cpu", dtype=None, base=None,
                        variant: str | None = None) -> "AuraSpeechLM":
        """Load an `aura-jax export` directory.

        merged (model weights in the directory): `AutoModelForCausalLM.from_pretrained(path)`;
        peft (`adapter_config.json`): `base` (default: aura_config's `base_model`) + `PeftModel`;
        both (`merged/` and `peft/`): merged unless `variant="peft"`.
        `dtype` (torch dtype or "float32"/"bfloat16"/"float16") defaults to the export's dtype.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = _resolve_dir(Path(path), variant)
        config_file = path / "aura_config.json"
        if not config_file.exists():
            raise FileNotFoundError(f"{path}: not an aura_jax export (no aura_config.json)")
        aura = json.loads(config_file.read_text())
        if aura.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{config_file}: format {aura.get('format')!r}, this runner reads {EXPORT_FORMAT!r}")
        _check_causal(aura)  # before loading gigabytes of weights
        torch_dtype = _torch_dtype(dtype, aura)
        if any((path / f).exists() for f in _WEIGHT_FILES):
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
        elif (path / "adapter_config.json").exists():
            from peft import PeftModel

            base_dir = base or aura.get("base_model")
            if not base_dir:
                raise ValueError(f"{path}: a PEFT export needs base=... (aura_config.json names no base_model)")
            if not os.path.exists(base_dir) and os.path.isabs(str(base_dir)):
                raise FileNotFoundError(f"base model {base_dir} (from {config_file}) does not exist; pass base=DIR")
            model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch_dtype)
            model = PeftModel.from_pretrained(model, str(path))
        else:
            raise FileNotFoundError(f"{path}: neither model weights (model.safetensors) nor adapter_config.json")
        model = model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        a = aura["audio"]
        embed = AudioPatchEmbed.from_file(path / "audio_embed.safetensors", a["patch_frames"],
                                          a.get("layer_norm_eps", 1e-5)).to(device).eval()
        return cls(model, tokenizer, embed, aura, device)

    # -- inputs ----------------------------------------------------------------
    def features(self, audio, sampling_rate: int | None = None) -> np.ndarray:
        """Whisper log-mel [n_mels, L] float32 of a path or a waveform ([T] or [T, C]; `sampling_rate`
        defaults to the export's, 16 kHz). L: the smallest training audio bucket holding the clip
        (aura_config audio.buckets; without it, or for the paper's recipe, the window num_frames)."""
        a = self.aura["audio"]
        if isinstance(audio, (str, os.PathLike)):
            wave, sampling_rate = load_audio(audio, a["sampling_rate"]), a["sampling_rate"]
        else:
            if isinstance(audio, torch.Tensor):
                audio = audio.detach().cpu().numpy()
            wave = np.asarray(audio, np.float32)
            sampling_rate = sampling_rate or a["sampling_rate"]
        wave = to_mono_16k(wave, sampling_rate, a["sampling_rate"])  # once: the length picks the bucket
        frames = padded_frames(num_valid_frames(len(wave)), a.get("buckets") or [a["num_frames"]])
        return log_mel_spectrogram(wave, a["sampling_rate"], a["n_mels"])[:, :frames]

    def render(self, prompt: str, with_audio: bool = True) -> str:
        """The chat template (system prompt, user turn "{audio_token} {prompt}", generation prompt)."""
        content = f"{self.audio_token} {prompt}" if with_audio else prompt
        messages = [{"role": "system", "content": self.aura["prompt"]["system"]}, {"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def prompt_ids(self, prompt: str, with_audio: bool = True) -> list[int]:
        """Token ids: the rendered prompt split at the audio token, sides tokenized apart (no special
        tokens added), joined with `audio_token_id`. Without audio: the rendered text's ids."""
        text = self.render(prompt, with_audio)
        if not with_audio:
            return self._encode(text)
        if text.count(self.audio_token) != 1:
            raise ValueError(f"the rendered prompt holds {text.count(self.audio_token)} audio tokens "
                             f"{self.audio_token!r}, expected 1 (does the prompt contain it?)")
        before, after = text.split(self.audio_token, 1)
        return self._encode(before) + [self.audio_token_id] + self._encode(after)

    def _row(self, ids: list[int], features: np.ndarray) -> torch.Tensor:
        """Spliced embeddings [T + N - 1, d] of one row."""
        embed_tokens = self.model.get_input_embeddings()
        with torch.no_grad():
            text = embed_tokens(torch.as_tensor(ids, device=self.device))
            audio = self.audio_embed(torch.as_tensor(features[None], device=self.device))[0]
        at = ids.index(self.audio_token_id)
        return torch.cat([text[:at], audio.to(text.dtype), text[at + 1:]])

    def prepare(self, audio, prompt: str, sampling_rate: int | None = None):
        """(inputs_embeds [1, T+N-1, d], attention_mask [1, T+N-1], input_ids [1, T]) for one clip."""
        ids = self.prompt_ids(prompt)
        embeds = self._row(ids, self.features(audio, sampling_rate))[None]
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
        return embeds, mask, torch.as_tensor([ids], device=self.device)

    def prepare_batch(self, audios, prompts, sampling_rate: int | None = None):
        """Left-padded batch (generation appends on the right): inputs_embeds [B, L, d] (zeros at
        padding), attention_mask [B, L], input_ids [B, T_max] (left-padded with pad_token_id).
        `prompts` is one string for every clip or one per clip."""
        audios = list(audios)
        prompts = [prompts] * len(audios) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(audios) or not audios:
            raise ValueError(f"{len(audios)} clips and {len(prompts)} prompts: need the same non-zero number")
        id_rows = [self.prompt_ids(p) for p in prompts]
        rows = [self._row(ids, self.features(a, sampling_rate)) for ids, a in zip(id_rows, audios)]
        length = max(r.shape[0] for r in rows)
        embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            embeds[i, length - r.shape[0]:] = r
            mask[i, length - r.shape[0]:] = 1
        width = max(map(len, id_rows))
        ids = torch.as_tensor([[self.pad_token_id] * (width - len(r)) + r for r in id_rows], device=self.device)
        return embeds, mask, ids

    # -- outputs ---------------------------------------------------------------
    def logits(self, audio, prompt: str, sampling_rate: int | None = None) -> torch.Tensor:
        """Next-token logits [1, T+N-1, vocab] over the spliced sequence (float32)."""
        embeds, mask, _ = self.prepare(audio, prompt, sampling_rate)
        with torch.no_grad():
            return self.model(inputs_embeds=embeds, attention_mask=mask).logits.float()

    def _generate(self, max_new_tokens: int, do_sample: bool, kwargs: dict, **inputs):
        """(model.generate output, the eos ids it stopped at)."""
        eos = kwargs.pop("eos_token_id", None)
        eos = self.eos_token_ids if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
        kwargs.setdefault("pad_token_id", self.pad_token_id)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                      eos_token_id=eos, **kwargs)
        return out, eos

    @staticmethod
    def _trim(row, eos: list[int]) -> list[int]:
        """New token ids up to (not including) the first eos."""
        out = []
        for t in row.tolist():
            if t in eos:
                break
            out.append(t)
        return out

    def generate_ids(self, audios, prompts, max_new_tokens: int = 64, do_sample: bool = False,
                     sampling_rate: int | None = None, **kwargs) -> list[list[int]]:
        """Generated token ids per clip (eos and what follows removed); greedy unless do_sample.
        Extra kwargs go to `model.generate` (e.g. eos_token_id, min_new_tokens)."""
        embeds, mask, _ = self.prepare_batch(audios, prompts, sampling_rate)
        # With inputs_embeds and no input_ids, generate returns only the new tokens.
        out, eos = self._generate(max_new_tokens, do_sample, kwargs, inputs_embeds=embeds, attention_mask=mask)
        return [self._trim(row, eos) for row in out]

    def generate_batch(self, audios, prompts, max_new_tokens: int = 64, do_sample: bool = False,
                       sampling_rate: int | None = None, **kwargs) -> list[str]:
        """One answer per clip (left-padded batch); `prompts` is one string or one per clip."""
        ids = self.generate_ids(audios, prompts, max_new_tokens, do_sample, sampling_rate, **kwargs)
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in ids]

    def generate(self, audio, prompt: str, max_new_tokens: int = 64, do_sample: bool = False,
                 sampling_rate: int | None = None, **kwargs) -> str:
        """The answer to `prompt` about one clip (path or waveform); greedy, stops at eos."""
        return self.generate_batch([audio], [prompt], max_new_tokens, do_sample, sampling_rate, **kwargs)[0]

    def stream(self, prompt: str, *, chunk_patches: int = 5, padded: bool = False, max_new_tokens: int = 64,
               min_new_tokens: int = 0, keep_logits: bool = False):
        """A `TorchAuraStream` for one spoken question: `feed_audio(samples)` while it is heard (each
        chunk of `chunk_patches` patches enters the KV cache at once), `finish()` → the answer
        (greedy). See `aura_jax.inference.streaming` for `padded` and the clamp."""
        from aura_jax.torch.stream import TorchAuraStream

        return TorchAuraStream(self, prompt, chunk_patches=chunk_patches, padded=padded,
                               max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                               keep_logits=keep_logits)

    def generate_text(self, prompt: str, max_new_tokens: int = 64, do_sample: bool = False, **kwargs) -> str:
        """Text-only answer (no audio): the LLM with its adapters, same chat template and system prompt."""
        ids = torch.as_tensor([self.prompt_ids(prompt, with_audio=False)], device=self.device)
        out, eos = self._generate(max_new_tokens, do_sample, kwargs, input_ids=ids,
                                  attention_mask=torch.ones_like(ids))
        return self.tokenizer.decode(self._trim(out[0, ids.shape[1]:], eos), skip_special_tokens=True)


def _check_causal(aura: dict) -> None:
    if aura.get("bidirectional_audio"):
        raise NotImplementedError(
            "this model was trained with bidirectional attention among the audio tokens "
            "(distill.bidirectional_audio=true); the PyTorch runner supports causal attention only. "
            "Use the JAX model (aura_jax.inference.generate) or retrain with distill.bidirectional_audio=false.")


def _eos_ids(model, tokenizer) -> list[int]:
    """Generation stops at any of the generation config's eos ids and the tokenizer's eos (<|im_end|>)."""
    ids = []
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    for value in (eos if isinstance(eos, (list, tuple)) else [eos]) + [tokenizer.eos_token_id]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return ids
