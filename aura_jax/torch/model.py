"""AuraSpeechLM: audio patch embedding + a transformers causal LM, spliced at the
audio placeholder exactly as in training (docs/EXPORT.md, "Prompt and splice")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from aura_jax.audio import load_audio, log_mel_spectrogram


class AudioPatchEmbed(torch.nn.Module):
    """e_i = LayerNorm(W x_i + b) + p_i over P-frame patches of the log-mel (bins major, frames minor)."""

    def __init__(self, weights: dict, patch_frames: int, eps: float):
        super().__init__()
        out_dim, in_dim = weights["proj.weight"].shape
        self.patch_frames = patch_frames
        self.proj = torch.nn.Linear(in_dim, out_dim)
        self.norm = torch.nn.LayerNorm(out_dim, eps=eps)
        self.positions = torch.nn.Parameter(weights["positions"].clone())
        self.proj.weight.data.copy_(weights["proj.weight"])
        self.proj.bias.data.copy_(weights["proj.bias"])
        self.norm.weight.data.copy_(weights["norm.weight"])
        self.norm.bias.data.copy_(weights["norm.bias"])

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [batch, n_mels, frames] → [batch, frames / P, hidden]."""
        b, m, length = mel.shape
        n = length // self.patch_frames
        patches = mel.reshape(b, m, n, self.patch_frames).permute(0, 2, 1, 3).reshape(b, n, m * self.patch_frames)
        return self.norm(self.proj(patches)) + self.positions[:n]


class AuraSpeechLM:
    def __init__(self, model, tokenizer, audio_embed: AudioPatchEmbed, aura: dict, device: str):
        self.model, self.tokenizer, self.audio_embed, self.aura, self.device = model, tokenizer, audio_embed, aura, device
        if aura.get("bidirectional_audio"):
            raise NotImplementedError("this export trained with bidirectional audio attention; the PyTorch runner "
                                      "supports causal attention only")

    @classmethod
    def from_pretrained(cls, path, *, device: str = "cpu", dtype=None, base=None, variant: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if (path / "merged").is_dir() or (path / "peft").is_dir():  # format "both"
            path = path / (variant or "merged")
        aura = json.loads((path / "aura_config.json").read_text())
        dtype = dtype or (torch.float32 if aura.get("dtype") == "float32" else torch.bfloat16)
        if (path / "adapter_config.json").exists():
            from peft import PeftModel

            base_model = AutoModelForCausalLM.from_pretrained(str(base or aura["base_model"]), dtype=dtype)
            model = PeftModel.from_pretrained(base_model, str(path))
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        model = model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        a = aura["audio"]
        embed = AudioPatchEmbed(load_file(str(path / "audio_embed.safetensors")), a["patch_frames"],
                                a["layer_norm_eps"]).to(device=device, dtype=torch.float32).eval()
        return cls(model, tokenizer, embed, aura, device)

    # -- inputs ----------------------------------------------------------------
    def features(self, audio, sampling_rate: int | None = None) -> np.ndarray:
        """Whisper log-mel [n_mels, num_frames] of a path or a waveform."""
        a = self.aura["audio"]
        if isinstance(audio, (str, Path)):
            wave, sampling_rate = load_audio(audio, a["sampling_rate"]), a["sampling_rate"]
        else:
            wave = np.asarray(audio, np.float32)
            sampling_rate = sampling_rate or a["sampling_rate"]
        return log_mel_spectrogram(wave, sampling_rate, a["n_mels"])[:, :a["num_frames"]]

    def prompt_ids(self, prompt: str, with_audio: bool = True) -> list[int]:
        """Chat template around "{audio_token} {prompt}", split at the audio token, sides tokenized apart."""
        token = self.aura["audio_token"]
        content = f"{token} {prompt}" if with_audio else prompt
        messages = [{"role": "system", "content": self.aura["prompt"]["system"]}, {"role": "user", "content": content}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if not with_audio:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        before, after = text.split(token, 1)
        encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"] if s else []
        return encode(before) + [self.aura["audio_token_id"]] + encode(after)

    def prepare(self, audio, prompt: str, sampling_rate: int | None = None):
        """(inputs_embeds [1, T+N-1, d], attention_mask, input_ids [1, T]) for one clip."""
        embeds, mask, ids = self.prepare_batch([audio], [prompt], sampling_rate)
        return embeds, mask, ids

    def prepare_batch(self, audios, prompts, sampling_rate: int | None = None):
        """Left-padded batch of spliced embeddings (generation appends on the right)."""
        rows, id_rows = [], []
        embed_tokens = self.model.get_input_embeddings()
        for audio, prompt in zip(audios, prompts):
            ids = self.prompt_ids(prompt)
            mel = torch.as_tensor(self.features(audio, sampling_rate)[None], device=self.device)
            with torch.no_grad():
                audio_tokens = self.audio_embed(mel)[0]
                text = embed_tokens(torch.as_tensor(ids, device=self.device))
            at = ids.index(self.aura["audio_token_id"])
            rows.append(torch.cat([text[:at], audio_tokens.to(text.dtype), text[at + 1:]]))
            id_rows.append(ids)
        length = max(r.shape[0] for r in rows)
        embeds = torch.zeros(len(rows), length, rows[0].shape[1], dtype=rows[0].dtype, device=self.device)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            embeds[i, length - r.shape[0]:] = r
            mask[i, length - r.shape[0]:] = 1
        width = max(map(len, id_rows))
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.as_tensor([[pad] * (width - len(r)) + r for r in id_rows], device=self.device)
        return embeds, mask, ids

    # -- outputs ---------------------------------------------------------------
    def logits(self, audio, prompt: str, sampling_rate: int | None = None) -> torch.Tensor:
        embeds, mask, _ = self.prepare(audio, prompt, sampling_rate)
        with torch.no_grad():
            return self.model(inputs_embeds=embeds, attention_mask=mask).logits

    def generate_batch(self, audios, prompts, max_new_tokens: int = 64, **kwargs) -> list[str]:
        embeds, mask, _ = self.prepare_batch(audios, prompts)
        with torch.no_grad():
            out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in out]

    def generate(self, audio, prompt: str, max_new_tokens: int = 64, **kwargs) -> str:
        return self.generate_batch([audio], [prompt], max_new_tokens, **kwargs)[0]

    def generate_text(self, prompt: str, max_new_tokens: int = 64, **kwargs) -> str:
        ids = torch.as_tensor([self.prompt_ids(prompt, with_audio=False)], device=self.device)
        with torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
