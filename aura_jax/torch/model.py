"""AuraSpeechLM: audio patch embedding + a transformers causal LM, spliced at the
audio placeholder exactly as in training (docs/EXPORT.md, "Prompt and splice").

    lm = AuraSpeechLM.from_pretrained("exported/")           # merged, peft, both (merged), or adapter
    lm.generate("clip.wav", "Transcribe the speech.")         # greedy, stops at eos

Only the audio front end (`aura_jax.audio`, numpy) and the patch embedding
below are aura_jax code; the LLM is a plain `AutoModelForCausalLM` (or base +
`peft.PeftModel`). An "adapter" export (a lora.audio_only run) keeps the plain
`AutoModelForCausalLM` and wraps the Linear modules of its first K layers in
`AudioOnlyLoRALinear`: y = W x + m ⊙ (α/r)·B A x, m the audio positions of the
prefill (`AudioGate`); every other call of the model (text-only prompts, the text
of a stream, each decoded token) runs the base weights exactly."""

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


class AudioGate:
    """Where the audio-only adapters act in the model's next call: `arm(mask [batch, time] bool)` before a
    prefill; the model's forward pre-hook moves it to `active` for that one call, and every later call
    (each decoded token) has it off, so decoding is the base weights exactly."""

    def __init__(self):
        self.pending: torch.Tensor | None = None
        self.active: torch.Tensor | None = None

    def arm(self, mask) -> None:
        self.pending = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)

    def hook(self, module, args, kwargs):
        self.active, self.pending = self.pending, None


class AudioOnlyLoRALinear(torch.nn.Module):
    """A Linear plus a LoRA update added only where the gate's mask is on: y = W x + m ⊙ (α/r)·B A x.
    With the mask off it returns `base(x)` itself (bit for bit the base model)."""

    def __init__(self, base: torch.nn.Linear, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float,
                 gate: AudioGate):
        super().__init__()
        r, d_in = lora_a.shape
        if d_in != base.in_features or lora_b.shape != (base.out_features, r):
            raise ValueError(f"LoRA A {tuple(lora_a.shape)} / B {tuple(lora_b.shape)} do not fit a Linear "
                             f"{base.in_features} → {base.out_features}")
        self.base, self.scale, self.gate = base, float(scale), gate
        self.lora_A = torch.nn.Parameter(lora_a.detach().clone().float(), requires_grad=False)
        self.lora_B = torch.nn.Parameter(lora_b.detach().clone().float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        m = self.gate.active
        if m is None:
            return y
        if tuple(m.shape) != tuple(x.shape[:-1]):
            raise ValueError(f"the audio mask {tuple(m.shape)} does not match the input {tuple(x.shape[:-1])}")
        dtype = self.base.weight.dtype
        update = (x.to(dtype) @ self.lora_A.to(dtype).T) @ self.lora_B.to(dtype).T
        update = torch.where(m.to(x.device)[..., None], update, torch.zeros((), dtype=update.dtype, device=x.device))
        return y + self.scale * update


def wrap_audio_only(model, path: Path, adapter: dict) -> AudioGate:
    """Wrap the Linear modules named in `audio_lora.safetensors` (PEFT names) in `AudioOnlyLoRALinear`;
    the model stays a plain AutoModelForCausalLM. Returns the gate its prefill arms."""
    from aura_jax.torch.export import ADAPTER_WEIGHTS

    tensors = load_file(str(path / ADAPTER_WEIGHTS))
    scale = float(adapter["lora_alpha"]) / float(adapter["r"])
    gate, prefix, done = AudioGate(), "base_model.model.", set()
    for name, a in tensors.items():
        if not name.endswith(".lora_A.weight"):
            continue
        module_name = name[len(prefix):-len(".lora_A.weight")] if name.startswith(prefix) else None
        b = tensors.get(name.replace(".lora_A.", ".lora_B."))
        parent_name, _, child = (module_name or "").rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
        except AttributeError:
            parent = None
        base = getattr(parent, child, None) if parent is not None else None
        if b is None or not isinstance(base, torch.nn.Linear):
            raise ValueError(f"{path / ADAPTER_WEIGHTS}: {name} names no Linear of the base model (or lacks lora_B)")
        setattr(parent, child, AudioOnlyLoRALinear(base, a, b.to(a.dtype), scale, gate))
        done.add(module_name)
    expected = len(adapter["layers_to_transform"]) * len(adapter["target_modules"])
    if len(done) != expected:
        raise ValueError(f"{path / ADAPTER_WEIGHTS}: {len(done)} adapters, its config names {expected}")
    model.register_forward_pre_hook(gate.hook, with_kwargs=True)
    return gate


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
        self.gate: AudioGate | None = None  # an "adapter" export: where its audio-only adapters act

    def arm(self, audio_mask) -> None:
        """The audio positions [batch, time] of the model's next call (adapter exports; others ignore it)."""
        if self.gate is not None:
            self.gate.arm(audio_mask)

    @classmethod
    def from_pretrained(cls, path, *, device: str = "cpu", dtype=None, base=None,
                        variant: str | None = None) -> "AuraSpeechLM":
        """Load an `aura-jax export` directory.

        merged (model weights in the directory): `AutoModelForCausalLM.from_pretrained(path)`;
        peft (`adapter_config.json`): `base` (default: aura_config's `base_model`) + `PeftModel`;
        both (`merged/` and `peft/`): merged unless `variant="peft"`;
        adapter (`audio_lora_config.json`, a lora.audio_only run): `base` + `AudioOnlyLoRALinear` wrappers.
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
        from aura_jax.torch.export import ADAPTER_CONFIG

        gate = None
        if aura.get("kind") == "adapter" or (path / ADAPTER_CONFIG).exists():
            if not (path / ADAPTER_CONFIG).exists():
                raise FileNotFoundError(f"{path}: an adapter export without {ADAPTER_CONFIG}")
            adapter = json.loads((path / ADAPTER_CONFIG).read_text())
            if adapter.get("positions") != "audio":
                raise ValueError(f"{path / ADAPTER_CONFIG}: positions {adapter.get('positions')!r}, expected 'audio'")
            model = AutoModelForCausalLM.from_pretrained(_base_dir(base, aura, path, config_file), dtype=torch_dtype)
            gate = wrap_audio_only(model, path, adapter)
        elif any((path / f).exists() for f in _WEIGHT_FILES):
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
        elif (path / "adapter_config.json").exists():
            from peft import PeftModel

            model = AutoModelForCausalLM.from_pretrained(_base_dir(base, aura, path, config_file), dtype=torch_dtype)
            model = PeftModel.from_pretrained(model, str(path))
        else:
            raise FileNotFoundError(f"{path}: neither model weights (model.safetensors) nor adapter_config.json")
        model = model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        a = aura["audio"]
        embed = AudioPatchEmbed.from_file(path / "audio_embed.safetensors", a["patch_frames"],
                                          a.get("layer_norm_eps", 1e-5)).to(device).eval()
        lm = cls(model, tokenizer, embed, aura, device)
        lm.gate = gate
        return lm

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
        return self._row_and_mask(ids, features)[0]

    def _row_and_mask(self, ids: list[int], features: np.ndarray):
        """(spliced embeddings [T + N - 1, d], audio positions [T + N - 1] bool) of one row."""
        embed_tokens = self.model.get_input_embeddings()
        with torch.no_grad():
            text = embed_tokens(torch.as_tensor(ids, device=self.device))
            audio = self.audio_embed(torch.as_tensor(features[None], device=self.device))[0]
        at = ids.index(self.audio_token_id)
        row = torch.cat([text[:at], audio.to(text.dtype), text[at + 1:]])
        mask = torch.zeros(row.shape[0], dtype=torch.bool, device=self.device)
        mask[at:at + audio.shape[0]] = True
        return row, mask

    def prepare(self, audio, prompt: str, sampling_rate: int | None = None):
        """(inputs_embeds [1, T+N-1, d], attention_mask [1, T+N-1], input_ids [1, T]) for one clip.
        (`audio_mask(...)` gives where its audio is, for the adapters of an "adapter" export.)"""
        ids = self.prompt_ids(prompt)
        row, audio = self._row_and_mask(ids, self.features(audio, sampling_rate))
        embeds = row[None]
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
        self._audio_mask = audio[None]
        return embeds, mask, torch.as_tensor([ids], device=self.device)

    @property
    def audio_mask(self) -> torch.Tensor:
        """The audio positions [B, L] bool of the last `prepare` / `prepare_batch`."""
        return self._audio_mask

    def prepare_batch(self, audios, prompts, sampling_rate: int | None = None):
        """Left-padded batch (generation appends on the right): inputs_embeds [B, L, d] (zeros at
        padding), attention_mask [B, L], input_ids [B, T_max] (left-padded with pad_token_id).
        `prompts` is one string for every clip or one per clip."""
        audios = list(audios)
        prompts = [prompts] * len(audios) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(audios) or not audios:
            raise ValueError(f"{len(audios)} clips and {len(prompts)} prompts: need the same non-zero number")
        id_rows = [self.prompt_ids(p) for p in prompts]
        pairs = [self._row_and_mask(ids, self.features(a, sampling_rate)) for ids, a in zip(id_rows, audios)]
        rows = [r for r, _ in pairs]
        length = max(r.shape[0] for r in rows)
        embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        audio = torch.zeros(len(rows), length, dtype=torch.bool, device=self.device)
        for i, (r, m) in enumerate(pairs):
            embeds[i, length - r.shape[0]:] = r
            mask[i, length - r.shape[0]:] = 1
            audio[i, length - r.shape[0]:] = m
        self._audio_mask = audio
        width = max(map(len, id_rows))
        ids = torch.as_tensor([[self.pad_token_id] * (width - len(r)) + r for r in id_rows], device=self.device)
        return embeds, mask, ids

    # -- outputs ---------------------------------------------------------------
    def logits(self, audio, prompt: str, sampling_rate: int | None = None) -> torch.Tensor:
        """Next-token logits [1, T+N-1, vocab] over the spliced sequence (float32)."""
        embeds, mask, _ = self.prepare(audio, prompt, sampling_rate)
        self.arm(self.audio_mask)
        with torch.no_grad():
            return self.model(inputs_embeds=embeds, attention_mask=mask).logits.float()

    def _generate(self, max_new_tokens: int, do_sample: bool, kwargs: dict, **inputs):
        """(model.generate output, the eos ids it stopped at). An armed gate is consumed by the prefill."""
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
        self.arm(self.audio_mask)  # the prefill's audio positions; the decoding steps run with the gate off
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


def _base_dir(base, aura: dict, path: Path, config_file: Path) -> str:
    base_dir = base or aura.get("base_model")
    if not base_dir:
        raise ValueError(f"{path}: this export needs base=... (aura_config.json names no base_model)")
    if not os.path.exists(base_dir) and os.path.isabs(str(base_dir)):
        raise FileNotFoundError(f"base model {base_dir} (from {config_file}) does not exist; pass base=DIR")
    return str(base_dir)


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
