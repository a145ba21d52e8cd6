"""The two PyTorch answer systems an exported AuRA model is judged against and timed beside:
`AuraSystem` (the export: audio in, text out) and `CascadeSystem` (Whisper transcribes, then the
base LLM answers the transcript). Evaluation (`aura_jax.evaluate.harness`) and the inference
benchmarks (`aura_jax.bench`) both use them. Needs the `convert` extra."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aura_jax.audio import load_audio, log_mel_spectrogram


def sync(device: str) -> None:
    """Wait for the device, so a timer read after it covers the work."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def generate_kwargs(max_new_tokens: int, fixed: bool) -> dict:
    """Greedy `generate` arguments; `fixed` makes it decode exactly `max_new_tokens` (equal work to time)."""
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False}
    if fixed:
        kwargs["min_new_tokens"] = max_new_tokens
    return kwargs


class AuraSystem:
    name = "AuRA"

    def __init__(self, exported: str, device: str, dtype):
        from aura_jax.torch import AuraSpeechLM

        self.lm = AuraSpeechLM.from_pretrained(exported, device=device, dtype=dtype)

    def __call__(self, clip: str, question: str, max_new_tokens: int, fixed: bool, asr_tokens: int) -> str:
        import torch

        embeds, mask, _ = self.lm.prepare(clip, question)
        with torch.no_grad():
            out = self.lm.model.generate(inputs_embeds=embeds, attention_mask=mask,
                                         **generate_kwargs(max_new_tokens, fixed))
        return self.lm.tokenizer.decode(out[0], skip_special_tokens=True)


class CascadeSystem:
    name = "Cascade"

    def __init__(self, whisper_dir: str, qwen_dir: str, device: str, dtype):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, WhisperForConditionalGeneration

        self.device, self.dtype = device, dtype
        self.asr = WhisperForConditionalGeneration.from_pretrained(whisper_dir, dtype=dtype).to(device).eval()
        self.asr.generation_config.max_length = None  # max_new_tokens bounds each call (else a warning per clip)
        self.asr_tok = AutoTokenizer.from_pretrained(whisper_dir)
        self.llm = AutoModelForCausalLM.from_pretrained(qwen_dir, dtype=dtype).to(device).eval()
        self.tok = AutoTokenizer.from_pretrained(qwen_dir)
        self.english = {"language": "en", "task": "transcribe"} if hasattr(self.asr.generation_config, "lang_to_id") else {}
        self._torch = torch

    def transcribe(self, clip, asr_tokens: int, fixed: bool) -> str:
        """Transcript of an audio path or a 16 kHz waveform."""
        torch = self._torch
        wave = load_audio(clip) if isinstance(clip, (str, Path)) else np.asarray(clip, np.float32)
        feats = log_mel_spectrogram(wave, 16000, self.asr.config.num_mel_bins)
        x = torch.as_tensor(feats[None], dtype=self.dtype, device=self.device)
        with torch.no_grad():
            ids = self.asr.generate(x, **self.english, **generate_kwargs(asr_tokens, fixed))
        ids = ids[0].tolist()
        vocab = len(self.asr_tok)
        return self.asr_tok.decode([i % vocab for i in ids], skip_special_tokens=True)  # (random weights: any id)

    def __call__(self, clip, question: str, max_new_tokens: int, fixed: bool, asr_tokens: int) -> str:
        return self.answer(self.transcribe(clip, asr_tokens, fixed), question, max_new_tokens, fixed)

    def _prompt(self, transcript: str, question: str):
        messages = [{"role": "user", "content": f"{transcript}\n{question}"}]
        return self.tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"].to(self.device)

    def answer_ids(self, transcript: str, question: str, max_new_tokens: int):
        """`answer`'s greedy ids one at a time through a KV cache, each yielded as soon as it is known."""
        from transformers import DynamicCache

        from aura_jax.torch.model import _eos_ids

        torch, eos = self._torch, _eos_ids(self.llm, self.tok)
        inputs, cache, n = {"input_ids": self._prompt(transcript, question)}, DynamicCache(), 0
        with torch.no_grad():
            while n < max_new_tokens:
                out = self.llm(**inputs, past_key_values=cache, use_cache=True)
                cache, token = out.past_key_values, int(torch.argmax(out.logits[0, -1]))
                if token in eos:
                    return
                n += 1
                yield token
                inputs = {"input_ids": torch.as_tensor([[token]], device=self.device)}

    def answer(self, transcript: str, question: str, max_new_tokens: int, fixed: bool = False) -> str:
        torch = self._torch
        ids = self._prompt(transcript, question)
        with torch.no_grad():
            out = self.llm.generate(ids, attention_mask=torch.ones_like(ids),
                                    **generate_kwargs(max_new_tokens, fixed))
        return self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

