"""Batched KV-cache decoding in JAX: greedy or temperature/top-p sampling.

Static shapes: the prompt length (bucketed by the caller) and `max_new_tokens`
fix the cache size, so each (batch, prompt bucket) compiles once. Rows stop at
EOS independently; the loop ends when every row has stopped. Prompts are
left-padded; positions come from the attention mask (the model's default).
Works from token ids or from ready-made input embeddings (the AuRA student
passes the spliced audio+text embeddings). `generate_whisper` does the same for
the cascade baseline's Whisper encoder + decoder; its pieces (`whisper_encode`,
`whisper_prefill`, `whisper_decode_step`) are plain functions of (graphdef,
state, ...) so each can be lowered on its own from abstract inputs.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aura_jax.inference.streaming import SpeechStream, StreamError
from aura_jax.models.layers import store_frozen_dot_weights
from aura_jax.models.lora import lora_modules, merge_lora
from aura_jax.models.qwen2 import KVCache, Qwen2ForCausalLM
from aura_jax.models.whisper import WhisperDecoder, WhisperDecoderCache, WhisperEncoder


def _sample(logits, rng, temperature: float, top_p: float):
    if temperature <= 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits.astype(jnp.float32) / temperature
    if top_p < 1.0:  # nucleus: keep the smallest set of tokens whose probability reaches top_p
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        cutoff_index = jnp.sum(cumulative < top_p, axis=-1, keepdims=True)
        cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(rng, logits, axis=-1)


def _decode_loop(model: Qwen2ForCausalLM, last_logits, cache: KVCache, eos_ids, pad_id, rng, *, max_new_tokens: int,
                 temperature: float, top_p: float):
    """From the prompt's last logits [batch, vocab] and its cache: new tokens [batch, max_new_tokens]."""
    b = last_logits.shape[0]
    rng, sub = jax.random.split(rng)
    first = _sample(last_logits, sub, temperature, top_p)
    tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)
    done = jnp.isin(first, eos_ids)

    def cond(carry):
        i, _, _, done, _ = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        i, tokens, cache, done, rng = carry
        previous = tokens[:, i - 1]
        step = model(previous[:, None], attention_mask=jnp.ones((b, 1), bool), cache=cache)
        rng, sub = jax.random.split(rng)
        nxt = _sample(step.logits[:, -1], sub, temperature, top_p)
        nxt = jnp.where(done, pad_id, nxt)
        tokens = tokens.at[:, i].set(nxt)
        return i + 1, tokens, step.cache, done | jnp.isin(nxt, eos_ids), rng

    _, tokens, _, done, _ = jax.lax.while_loop(cond, body, (jnp.int32(1), tokens, cache, done, rng))
    return tokens


def fold_float32_lora(model: Qwen2ForCausalLM) -> bool:
    """Fold the LoRA updates into their kernels (W + (α/r)·A B, as export does) when every adapted
    kernel is float32; True if it did. Called on the traced model inside a jitted generation: the
    prompt's prefill then runs no rank-r matmuls (9 % of the bench-cpu prefill's FLOPs, and slow
    ones) and each decode step reads one matrix per projection instead of three. Float32 changes
    only rounding; a bfloat16 kernel would absorb the update at bfloat16 precision, so those stay
    unmerged and generation computes what training computed."""
    modules = [module for _, _, module in lora_modules(model)]
    if not modules or any(module.base.kernel[...].dtype != jnp.float32 for module in modules):
        return False
    if any(module.audio_only for module in modules):  # per-position adapters have no merged kernel
        return False
    merge_lora(model)
    return True


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_p"))
def _decode(graphdef, state, embeds, mask, bidirectional, adapter_mask, eos_ids, pad_id, rng, *,
            max_new_tokens: int, temperature: float, top_p: float):
    model: Qwen2ForCausalLM = nnx.merge(graphdef, state)
    # bf16 dots: the weights rounded once per call, not in every decode step; the LoRA then stays unmerged
    # (its kernels are bf16), so generation computes what the training step computed.
    store_frozen_dot_weights(model)
    fold_float32_lora(model)
    b, t, _ = embeds.shape
    cache = KVCache.create(model.config, b, t + max_new_tokens, dtype=embeds.dtype)
    out = model(inputs_embeds=embeds, attention_mask=mask, cache=cache, bidirectional_mask=bidirectional,
                logits_to_keep=1, adapter_mask=adapter_mask)
    return _decode_loop(model, out.logits[:, -1], out.cache, eos_ids, pad_id, rng, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p)


def generate(model: Qwen2ForCausalLM, input_ids=None, attention_mask=None, *, inputs_embeds=None,
             max_new_tokens: int = 64, eos_token_id=None, pad_token_id: int = 0, temperature: float = 0.0,
             top_p: float = 1.0, seed: int = 0, bidirectional_mask=None, adapter_mask=None) -> jax.Array:
    """New tokens [batch, max_new_tokens] for left-padded prompts; after a row's EOS come pad ids.

    Give `input_ids` or `inputs_embeds` (with `attention_mask`); `eos_token_id`
    may be an int or a list of ids. temperature 0 = greedy. `adapter_mask` [batch, t]: the prompt
    positions where audio-only LoRA acts (generated tokens are text: it acts on none of them).
    """
    if inputs_embeds is None:
        inputs_embeds = model.embed(jnp.asarray(input_ids))
    if attention_mask is None:
        attention_mask = jnp.ones(inputs_embeds.shape[:2], bool)
    eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    eos_ids = jnp.asarray(eos or [-1], jnp.int32)
    graphdef, state = nnx.split(model)
    return _decode(graphdef, state, inputs_embeds, jnp.asarray(attention_mask, bool), bidirectional_mask,
                   None if adapter_mask is None else jnp.asarray(adapter_mask, bool), eos_ids,
                   jnp.int32(pad_token_id), jax.random.key(seed), max_new_tokens=max_new_tokens,
                   temperature=float(temperature), top_p=float(top_p))


def generate_aura(model, input_ids, attention_mask, audio_features, **kwargs) -> jax.Array:
    """Generation for the AuRA student: audio tokens spliced at each row's placeholder
    (rows without one are text-only), then `generate` from the mixed embeddings."""
    from aura_jax.models.aura import splice_audio

    input_ids = jnp.asarray(input_ids)
    audio = model.audio_embed(jnp.asarray(audio_features))
    spliced = splice_audio(model.llm.embed(input_ids), input_ids, jnp.asarray(attention_mask, bool),
                           jnp.zeros(input_ids.shape, bool), audio, model.placeholder_id)
    bidirectional = model.audio_attention_groups(spliced)
    return generate(model.llm, inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask,
                    bidirectional_mask=bidirectional, adapter_mask=spliced.audio_mask, **kwargs)


# ---------------------------------------------------------------------------
# Streaming: audio enters the KV cache while it is heard (aura_jax.inference.streaming)
# ---------------------------------------------------------------------------
def _bucketed(ids: list[int], bucket: int, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """[1, ceil(len/bucket)·bucket] ids, left-padded (masked slots: positions skip them)."""
    width = max(1, -(-len(ids) // bucket)) * bucket
    row = [pad_id] * (width - len(ids)) + list(ids)
    return jnp.asarray([row], jnp.int32), jnp.asarray([[False] * (width - len(ids)) + [True] * len(ids)])


@functools.partial(jax.jit, static_argnames=("graphdef", "keep_logits"), donate_argnames=("cache",))
def _stream_text(graphdef, state, ids, mask, cache, *, keep_logits: bool):
    """Prefill text ids [1, t] into the cache → (cache, logits [1, t, vocab] or None, last logits [1, vocab])."""
    llm: Qwen2ForCausalLM = nnx.merge(graphdef, state)
    out = llm(ids, attention_mask=mask, cache=cache, logits_to_keep=None if keep_logits else 1)
    return out.cache, out.logits if keep_logits else None, out.logits[:, -1]


@functools.partial(jax.jit, static_argnames=("graphdef", "embed_graphdef", "keep_logits", "group_patches"),
                   donate_argnames=("cache",))
def _stream_audio(graphdef, state, embed_graphdef, embed_state, frames, valid, first_patch, cache, *,
                  keep_logits: bool, group_patches: int = 0):
    """Prefill one chunk of audio: frames [1, mel, C·P], of which `valid` patches are real.
    group_patches > 0: the patches attend both ways within groups of that many (distill.bidirectional_chunk)."""
    llm: Qwen2ForCausalLM = nnx.merge(graphdef, state)
    audio = nnx.merge(embed_graphdef, embed_state)(frames, first_patch).astype(llm.dtype)
    index = jnp.arange(audio.shape[1])
    mask = (index < valid)[None]
    groups = jnp.where(mask, (first_patch + index) // group_patches, -1) if group_patches else None
    out = llm(inputs_embeds=audio, attention_mask=mask, cache=cache, adapter_mask=mask,  # every slot is audio
              bidirectional_mask=groups)
    return out.cache, out.logits if keep_logits else None


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_p"))
def _stream_decode(graphdef, state, last_logits, cache, eos_ids, pad_id, rng, *, max_new_tokens: int,
                   temperature: float, top_p: float):
    return _decode_loop(nnx.merge(graphdef, state), last_logits, cache, eos_ids, pad_id, rng, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p)


class AuraStream(SpeechStream):
    """One spoken question streamed into the AuRA student (JAX, batch 1).

        stream = AuraStream(model, prompt_ids, chunk_patches=5)
        for piece in microphone:          # 16 kHz float samples, any length
            stream.feed_audio(piece)      # each complete chunk of 5 patches (0.5 s) is prefilled now
        answer_ids = stream.finish()      # last chunk, the prompt after the audio, greedy decoding

    `prompt_ids` holds the placeholder once (as for `generate_aura`): the ids before it are
    prefilled at construction, the ids after it at `finish`. Compiled shapes are fixed per stream
    configuration: text padded to multiples of `text_bucket`, audio in chunks of `chunk_patches`
    (the last one padded and masked), one cache sized for the whole window. Learned audio
    positions are indexed by patch number, so a chunk's tokens are the ones one-shot prefill
    computes. `keep_logits` keeps the logits of every real position (`logits()`, for checks).
    """

    def __init__(self, model, prompt_ids, *, chunk_patches: int = 5, padded: bool = False,
                 max_new_tokens: int = 64, eos_token_id=None, pad_token_id: int = 0, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, text_bucket: int = 16, keep_logits: bool = False):
        d = model.config.distill
        if d.bidirectional_audio and not d.bidirectional_chunk:
            raise StreamError("this model was trained with distill.bidirectional_audio=true: its audio tokens "
                              "attend to later ones, so audio cannot be prefilled before the clip ends; "
                              "use generate_aura, or train with distill.bidirectional_chunk=C (attention both "
                              "ways within chunks of C tokens, which stream exactly) or bidirectional_audio=false")
        if d.bidirectional_audio and chunk_patches % d.bidirectional_chunk:
            raise StreamError(f"chunk_patches={chunk_patches}: this model's audio tokens attend both ways within "
                              f"chunks of {d.bidirectional_chunk} (distill.bidirectional_chunk); stream a multiple "
                              f"of {d.bidirectional_chunk} patches at a time")
        self.group_patches = d.bidirectional_chunk if d.bidirectional_audio else 0
        a = model.config.audio
        super().__init__(n_mels=a.n_mels, patch_frames=a.patch_frames, window_frames=a.num_frames,
                         chunk_patches=chunk_patches, padded=padded, buckets=model.config.data.audio_buckets)
        ids = [int(i) for i in prompt_ids]
        if ids.count(model.placeholder_id) != 1:
            raise StreamError(f"prompt_ids hold the audio placeholder {model.placeholder_id} "
                              f"{ids.count(model.placeholder_id)} times; expected once")
        at = ids.index(model.placeholder_id)
        if at == len(ids) - 1:
            raise StreamError("prompt_ids end with the audio placeholder: the answer starts after the prompt that "
                              "follows the audio (the chat template's assistant turn)")
        self._suffix, self.keep_logits, self.pad_token_id = ids[at + 1:], keep_logits, int(pad_token_id)
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.eos_ids = eos
        prefix_ids, prefix_mask = _bucketed(ids[:at], text_bucket, pad_token_id)
        self._suffix_ids, self._suffix_mask = _bucketed(self._suffix, text_bucket, pad_token_id)
        chunks = -(-self.window_patches // chunk_patches)
        slots = prefix_ids.shape[1] + chunks * chunk_patches + self._suffix_ids.shape[1] + max_new_tokens
        self.graphdef, self.state = nnx.split(model.llm)  # (the AuraModel's own graphdef holds its Config: unhashable)
        self.embed_graphdef, self.embed_state = nnx.split(model.audio_embed)
        cache = KVCache.create(model.llm.config, 1, slots, dtype=model.llm.dtype)
        self._cache, logits, _ = _stream_text(self.graphdef, self.state, prefix_ids, prefix_mask, cache,
                                              keep_logits=keep_logits)
        self._logits = [] if not keep_logits else [logits[0, -len(ids[:at]):] if at else logits[0, :0]]
        self.tokens = None

    def _prefill_chunk(self, frames, valid_patches: int, first_patch: int) -> None:
        self._cache, logits = _stream_audio(self.graphdef, self.state, self.embed_graphdef, self.embed_state,
                                            jnp.asarray(frames)[None],
                                            jnp.int32(valid_patches), jnp.int32(first_patch), self._cache,
                                            keep_logits=self.keep_logits, group_patches=self.group_patches)
        if self.keep_logits:
            self._logits.append(logits[0, :valid_patches])

    def wait(self) -> None:
        if self._cache is not None:
            jax.block_until_ready(self._cache)

    def _answer(self) -> list[int]:
        self._cache, logits, last = _stream_text(self.graphdef, self.state, self._suffix_ids, self._suffix_mask,
                                                 self._cache, keep_logits=self.keep_logits)
        if self.keep_logits:
            self._logits.append(logits[0, logits.shape[1] - len(self._suffix):])
        last.block_until_ready()
        self.first_token_time = time.perf_counter()  # the first token is the argmax of `last`, on device
        tokens = _stream_decode(self.graphdef, self.state, last, self._cache, jnp.asarray(self.eos_ids or [-1], jnp.int32),
                                jnp.int32(self.pad_token_id), jax.random.key(self.seed),
                                max_new_tokens=self.max_new_tokens, temperature=float(self.temperature),
                                top_p=float(self.top_p))
        self._cache = None
        self.tokens = [int(t) for t in np.asarray(tokens)[0]]
        stop = next((i for i, t in enumerate(self.tokens) if t in self.eos_ids), len(self.tokens))
        return self.tokens[:stop]

    def _answer_ids(self):
        """Greedy decoding one compiled step per token, each id yielded as soon as it is on the host
        (a server streams them); `_answer`'s fused loop is faster when the whole answer is wanted."""
        if self.temperature > 0:
            raise StreamError("finish_ids() decodes greedily; this stream was made with temperature > 0")
        self._cache, logits, last = _stream_text(self.graphdef, self.state, self._suffix_ids, self._suffix_mask,
                                                 self._cache, keep_logits=False)
        self.tokens = []
        try:
            token = int(jnp.argmax(last[0]))
            self.first_token_time = time.perf_counter()
            while token not in self.eos_ids:
                self.tokens.append(token)
                yield token
                if len(self.tokens) == self.max_new_tokens:
                    break
                self._cache, step = _stream_step(self.graphdef, self.state, jnp.int32(token), self._cache)
                token = int(jnp.argmax(step))
        finally:  # also when the consumer stops early: the cache goes
            self._cache = None

    def logits(self) -> jax.Array:
        """Logits [T + N − 1, vocab] at every real position (prefix, audio, suffix), as one-shot prefill
        of the spliced sequence gives them; needs `keep_logits=True`."""
        if not self.keep_logits:
            raise StreamError("logits(): create the stream with keep_logits=True")
        return jnp.concatenate(self._logits, axis=0)


@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("cache",))
def _stream_step(graphdef, state, token, cache):
    """One decoded token into the cache → (cache, next-token logits [vocab])."""
    llm: Qwen2ForCausalLM = nnx.merge(graphdef, state)
    out = llm(token.reshape(1, 1), attention_mask=jnp.ones((1, 1), bool), cache=cache)
    return out.cache, out.logits[0, -1]


# ---------------------------------------------------------------------------
# Whisper (the cascade baseline's transcriber): encoder once, then the decoder with a cache
# ---------------------------------------------------------------------------
def whisper_encode(graphdef, state, features: jax.Array) -> jax.Array:
    """Encoder forward: features [batch, mel, frames] → hidden states [batch, frames // 2, d_model]."""
    encoder: WhisperEncoder = nnx.merge(graphdef, state)
    return encoder(features).last_hidden_state


def whisper_prefill(graphdef, state, decoder_input_ids: jax.Array, encoder_hidden_states: jax.Array,
                    max_len: int) -> tuple[jax.Array, WhisperDecoderCache]:
    """Cache creation (cross K/V of the encoder output) + the forced prompt ids [batch, t] →
    (logits of the last prompt position [batch, vocab], cache with t slots filled)."""
    decoder: WhisperDecoder = nnx.merge(graphdef, state)
    cache = WhisperDecoderCache.create(decoder, encoder_hidden_states, max_len)
    out = decoder(decoder_input_ids, cache=cache)
    return out.logits[:, -1], out.cache


def whisper_decode_step(graphdef, state, token: jax.Array, cache: WhisperDecoderCache
                        ) -> tuple[jax.Array, WhisperDecoderCache]:
    """One token per row [batch] → (next-token logits [batch, vocab], cache advanced by one slot)."""
    decoder: WhisperDecoder = nnx.merge(graphdef, state)
    out = decoder(token[:, None], cache=cache)
    return out.logits[:, -1], out.cache


@functools.partial(jax.jit, static_argnames=("encoder_graphdef", "decoder_graphdef", "max_new_tokens"))
def _decode_whisper(encoder_graphdef, encoder_state, decoder_graphdef, decoder_state, features, prompt, eos_ids,
                    pad_id, *, max_new_tokens: int):
    hidden = whisper_encode(encoder_graphdef, encoder_state, features)
    b, t = prompt.shape
    logits, cache = whisper_prefill(decoder_graphdef, decoder_state, prompt, hidden, t + max_new_tokens)
    first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)
    done = jnp.isin(first, eos_ids)

    def cond(carry):
        i, _, _, done = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        i, tokens, cache, done = carry
        logits, cache = whisper_decode_step(decoder_graphdef, decoder_state, tokens[:, i - 1], cache)
        nxt = jnp.where(done, pad_id, jnp.argmax(logits, axis=-1).astype(jnp.int32))
        return i + 1, tokens.at[:, i].set(nxt), cache, done | jnp.isin(nxt, eos_ids)

    _, tokens, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(1), tokens, cache, done))
    return tokens


def generate_whisper(encoder: WhisperEncoder, decoder: WhisperDecoder, features, *, decoder_input_ids,
                     max_new_tokens: int, eos_token_id=None, pad_token_id: int | None = None) -> jax.Array:
    """Greedy transcription: new tokens [batch, max_new_tokens] after the forced prompt.

    `features` [batch, mel, frames] (log-mel); `decoder_input_ids` the forced prompt, [t] for every
    row or [batch, t] (e.g. <|startoftranscript|><|en|><|transcribe|><|notimestamps|>).
    `eos_token_id` an int or a list; after a row's EOS come `pad_token_id` (default: the first
    EOS id, as Whisper's generation config has it). Compiles once per (batch, frames, t, max_new_tokens).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: generate at least one token")
    if not encoder.is_complete:
        raise ValueError(f"generate_whisper needs the whole encoder ({encoder.config.encoder_layers} layers, final "
                         f"LayerNorm); this one was truncated to {encoder.num_layers}")
    features = jnp.asarray(features)
    prompt = jnp.asarray(decoder_input_ids, jnp.int32)
    if prompt.ndim == 1:
        prompt = jnp.broadcast_to(prompt, (features.shape[0], prompt.shape[0]))
    if prompt.ndim != 2 or prompt.shape[0] != features.shape[0] or prompt.shape[1] == 0:
        raise ValueError(f"decoder_input_ids must be [t] or [batch={features.shape[0]}, t] with t >= 1, "
                         f"got {tuple(prompt.shape)}")
    eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    encoder_graphdef, encoder_state = nnx.split(encoder)
    decoder_graphdef, decoder_state = nnx.split(decoder)
    return _decode_whisper(encoder_graphdef, encoder_state, decoder_graphdef, decoder_state, features, prompt,
                           jnp.asarray(eos or [-1], jnp.int32), jnp.int32(pad), max_new_tokens=max_new_tokens)
