"""Streaming speech input for an exported model (PyTorch): the audio enters the transformers
KV cache chunk by chunk while it is heard; `finish()` adds the prompt after the audio and decodes
greedily. The front end and the chunking are `aura_jax.inference.streaming`'s, shared with the JAX stream.

    stream = lm.stream("Answer the question.")
    for piece in microphone:              # 16 kHz float32 samples
        stream.feed_audio(piece)
    print(stream.finish())

Eager PyTorch needs no fixed shapes: the last chunk is prefilled at its true length, and each
slot's position is its index in the cache, as in one-shot prefill of the spliced sequence."""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import DynamicCache

from aura_jax.inference.streaming import SpeechStream, StreamError


class TorchAuraStream(SpeechStream):
    fixed_chunks = False  # eager: what is left at finish is prefilled in one call

    def __init__(self, lm, prompt: str, *, chunk_patches: int = 5, padded: bool = False,
                 max_new_tokens: int = 64, min_new_tokens: int = 0, keep_logits: bool = False):
        if lm.aura.get("bidirectional_audio"):
            raise StreamError("this model was trained with bidirectional attention among the audio tokens: it "
                              "cannot prefill audio before the clip ends")
        a = lm.aura["audio"]
        super().__init__(n_mels=a["n_mels"], patch_frames=a["patch_frames"], window_frames=a["num_frames"],
                         chunk_patches=chunk_patches, padded=padded, buckets=a.get("buckets"))
        self.lm, self.max_new_tokens, self.min_new_tokens = lm, max_new_tokens, min_new_tokens
        self.keep_logits = keep_logits
        ids = lm.prompt_ids(prompt)
        at = ids.index(lm.audio_token_id)
        self._suffix = ids[at + 1:]
        if not self._suffix:
            raise StreamError("the rendered prompt ends with the audio token; the answer starts after the "
                              "assistant turn that follows it")
        self.cache = DynamicCache()
        self._logits: list[torch.Tensor] = []
        self.answer_ids: list[int] | None = None
        if at:
            self._forward(input_ids=torch.as_tensor([ids[:at]], device=lm.device))

    def _forward(self, **inputs) -> torch.Tensor:
        """One prefill (or decode) step through the cache → logits of its last position [vocab]."""
        with torch.no_grad():
            out = self.lm.model(**inputs, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        if self.keep_logits:
            self._logits.append(out.logits[0].float())
        return out.logits[0, -1]

    def _prefill_chunk(self, frames: np.ndarray, valid_patches: int, first_patch: int) -> None:
        mel = torch.as_tensor(frames[None, :, :valid_patches * self.patch_frames], device=self.lm.device)
        with torch.no_grad():
            audio = self.lm.audio_embed(mel, first_patch)
        self.lm.arm(torch.ones(audio.shape[:2], dtype=torch.bool))  # audio: an adapter export's adapters act here
        self._forward(inputs_embeds=audio.to(self.lm.model.get_input_embeddings().weight.dtype))

    def _answer(self) -> str:
        return self.lm.tokenizer.decode(list(self._answer_ids()), skip_special_tokens=True)

    def _answer_ids(self):
        """The prompt after the audio, then greedy decoding: each id is yielded as soon as it is known."""
        eos, device = self.lm.eos_token_ids, self.lm.device
        logits = self._forward(input_ids=torch.as_tensor([self._suffix], device=device))
        keep, self.keep_logits = self.keep_logits, False  # logits() covers the prompt; decoding is not kept
        ids: list[int] = []
        try:
            token = self._pick(logits, ids)
            self.first_token_time = time.perf_counter()
            while token not in eos:
                ids.append(token)
                yield token
                if len(ids) == self.max_new_tokens:
                    break
                token = self._pick(self._forward(input_ids=torch.as_tensor([[token]], device=device)), ids)
        finally:  # also when the consumer stops early: the cache goes
            self.keep_logits, self.answer_ids, self.cache = keep, ids, None

    def _pick(self, logits: torch.Tensor, ids: list[int]) -> int:
        """Greedy; before `min_new_tokens`, the eos ids are excluded (as transformers' min_new_tokens does)."""
        if len(ids) < self.min_new_tokens:
            logits = logits.clone()
            logits[self.lm.eos_token_ids] = -float("inf")
        return int(torch.argmax(logits))

    def logits(self) -> torch.Tensor:
        """Logits [T + N − 1, vocab] of every prompt position (prefix, audio, suffix), float32."""
        if not self.keep_logits:
            raise StreamError("logits(): create the stream with keep_logits=True")
        return torch.cat(self._logits)
