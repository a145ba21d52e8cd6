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
        self.lm.arm(self.lm.audio_mask)  # an adapter export: its adapters at the audio positions of the prefill
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
        self.llm.generation_config.max_length = None  # as for Whisper: max_new_tokens bounds each call
        self.tok = AutoTokenizer.from_pretrained(qwen_dir)
        self.english = {"language": "en", "task": "transcribe"} if hasattr(self.asr.generation_config, "lang_to_id") else {}
        self._torch = torch

    def asr_budget(self, asr_tokens: int) -> int:
        """`asr_tokens` capped so that Whisper's prompt plus the transcript fit its decoder
        (`max_target_positions`: 448 for the real models, 64 for the tests' tiny random Whisper; `generate`
        refuses a longer request). The prompt is <|startoftranscript|>, then <|en|><|transcribe|>
        <|notimestamps|> where the model knows languages."""
        prompt = 4 if self.english else 1 + len(getattr(self.asr.generation_config, "forced_decoder_ids", None) or [])
        room = int(self.asr.config.max_target_positions) - prompt
        if room < 1:
            raise ValueError(f"Whisper's decoder holds {self.asr.config.max_target_positions} positions, "
                             f"no room after its {prompt}-token prompt")
        return min(int(asr_tokens), room)

    def transcribe(self, clip, asr_tokens: int, fixed: bool) -> str:
        """Transcript of an audio path or a 16 kHz waveform."""
        torch = self._torch
        wave = load_audio(clip) if isinstance(clip, (str, Path)) else np.asarray(clip, np.float32)
        feats = log_mel_spectrogram(wave, 16000, self.asr.config.num_mel_bins)
        x = torch.as_tensor(feats[None], dtype=self.dtype, device=self.device)
        with torch.no_grad():
            ids = self.asr.generate(x, **self.english, **generate_kwargs(self.asr_budget(asr_tokens), fixed))
        ids = ids[0].tolist()
        vocab = len(self.asr_tok)
        return self.asr_tok.decode([i % vocab for i in ids], skip_special_tokens=True)  # (random weights: any id)

    def transcribe_batch(self, clips, asr_tokens: int) -> list[str]:
        """`transcribe` of several clips in one `generate` call (each row's encoder is its own; the
        decoder pads a finished row until the longest is done): what eval runs, a batch at a time."""
        torch = self._torch
        waves = [load_audio(c) if isinstance(c, (str, Path)) else np.asarray(c, np.float32) for c in clips]
        feats = np.stack([log_mel_spectrogram(w, 16000, self.asr.config.num_mel_bins) for w in waves])
        with torch.no_grad():
            ids = self.asr.generate(torch.as_tensor(feats, dtype=self.dtype, device=self.device), **self.english,
                                    **generate_kwargs(self.asr_budget(asr_tokens), False))
        vocab = len(self.asr_tok)
        return [self.asr_tok.decode([i % vocab for i in row.tolist()], skip_special_tokens=True) for row in ids]

    def answer_batch(self, transcripts: list[str], question: str, max_new_tokens: int) -> list[str]:
        """`answer` of several transcripts in one left-padded `generate` call."""
        torch = self._torch
        side, self.tok.padding_side = self.tok.padding_side, "left"
        try:
            texts = [self.tok.apply_chat_template([{"role": "user", "content": f"{t}\n{question}"}],
                                                  add_generation_prompt=True, tokenize=False) for t in transcripts]
            ids = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        finally:
            self.tok.padding_side = side
        with torch.no_grad():
            out = self.llm.generate(**ids, pad_token_id=self.tok.pad_token_id, **generate_kwargs(max_new_tokens, False))
        return [self.tok.decode(row, skip_special_tokens=True) for row in out[:, ids["input_ids"].shape[1]:]]

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

