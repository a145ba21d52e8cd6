"""Random Hugging Face checkpoints built locally with transformers (no hub access).

Tests, the demo and benchmarks use these where real weights cannot be
downloaded; they are ordinary HF directories, loaded by the same code path as
the genuine Qwen2.5 / Whisper checkpoints. Needs the `convert` extra (torch,
transformers).
"""

from __future__ import annotations

from pathlib import Path

AUDIO_TOKEN = "<|audio|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", AUDIO_TOKEN]
# Qwen2.5's chat template, reduced to what AuRA needs (system/user/assistant turns).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Transcribe the speech.", "What is the capital of France? Paris is the capital of France.",
    "The quick brown fox jumps over the lazy dog.", "one two three four five six seven eight nine ten",
    "You are a helpful assistant.", "Answer the question in one sentence.",
]


def make_tokenizer(out_dir: str | Path, vocab_size: int = 512):
    """A byte-level BPE tokenizer with Qwen-style special tokens and chat template, saved to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=CHAT_TEMPLATE, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", additional_special_tokens=[AUDIO_TOKEN])
    fast.save_pretrained(str(out_dir))
    return fast


def make_qwen2(out_dir: str | Path, *, vocab_size: int = 512, hidden_size: int = 64, intermediate_size: int = 128,
               num_hidden_layers: int = 4, num_attention_heads: int = 4, num_key_value_heads: int = 2,
               rope_theta: float = 10000.0, tie_word_embeddings: bool = True, max_shard_size: str | None = None,
               seed: int = 0, with_tokenizer: bool = True, dtype: str = "float32", embed_std: float = 0.25,
               config_only: bool = False, **extra) -> Path:
    """A random Qwen2ForCausalLM saved as a HF directory (sharded when `max_shard_size` is set).

    Token embeddings get std `embed_std`: with transformers' default 0.02 a tied
    tiny model's logits span less than ±2 after the final RMSNorm, so no
    adapter could ever make it confident (CE would plateau near log(vocab))."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                         num_key_value_heads=num_key_value_heads, rope_theta=rope_theta,
                         tie_word_embeddings=tie_word_embeddings, max_position_embeddings=4096, **extra)
    if config_only:
        return _save_config_only(config, out_dir)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype)).eval()
    # Random init gives tiny weights; widen them so layers visibly change the residual stream.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        model.model.embed_tokens.weight.normal_(0.0, embed_std)
    out = Path(out_dir)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(out), **kwargs)
    if with_tokenizer:
        make_tokenizer(out, vocab_size=min(vocab_size, 512))
    return out


def make_whisper(out_dir: str | Path, *, num_mel_bins: int = 128, d_model: int = 64, encoder_layers: int = 4,
                 encoder_attention_heads: int = 4, encoder_ffn_dim: int = 128, decoder_layers: int = 2,
                 vocab_size: int = 128, seed: int = 0, dtype: str = "float32", config_only: bool = False) -> Path:
    """A random WhisperForConditionalGeneration saved as a HF directory (encoder + decoder)."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=num_mel_bins, d_model=d_model, encoder_layers=encoder_layers,
        encoder_attention_heads=encoder_attention_heads, encoder_ffn_dim=encoder_ffn_dim,
        decoder_layers=decoder_layers, decoder_attention_heads=encoder_attention_heads,
        decoder_ffn_dim=encoder_ffn_dim, max_source_positions=1500, max_target_positions=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
        suppress_tokens=[], begin_suppress_tokens=[])
    if config_only:
        return _save_config_only(config, out_dir)
    model = WhisperForConditionalGeneration(config).to(getattr(torch, dtype)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn_like(p) * 0.02)
    out = Path(out_dir)
    model.save_pretrained(str(out))
    make_tokenizer(out)  # the cascade baseline decodes transcripts with it
    return out


# ---------------------------------------------------------------------------
# Random weights at the real shapes (benchmarks where real weights cannot be downloaded)
# ---------------------------------------------------------------------------
PRESETS = {
    "qwen2.5-7b-instruct": ("qwen2", dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                          num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                                          rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                          max_position_embeddings=32768)),
    "qwen2.5-3b-instruct": ("qwen2", dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008,
                                          num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                                          rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                          max_position_embeddings=32768)),
    "whisper-large-v3": ("whisper", dict(vocab_size=51866, num_mel_bins=128, d_model=1280, encoder_layers=32,
                                         decoder_layers=32, encoder_attention_heads=20, decoder_attention_heads=20,
                                         encoder_ffn_dim=5120, decoder_ffn_dim=5120, max_source_positions=1500,
                                         max_target_positions=448)),
    # The real pair's shapes (`aura-jax fetch-models` brings the real weights), and a Llama-3 with its RoPE scaling.
    "smollm2-135m-instruct": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                            num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                            head_dim=64, rope_theta=100000.0, rms_norm_eps=1e-5,
                                            tie_word_embeddings=True, max_position_embeddings=8192)),
    "llama-3.2-1b-instruct": ("llama", dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                                            num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                            head_dim=64, rope_theta=500000.0, rms_norm_eps=1e-5,
                                            tie_word_embeddings=True, max_position_embeddings=131072,
                                            rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                          "original_max_position_embeddings": 8192})),
    "whisper-tiny.en": ("whisper", dict(vocab_size=51864, num_mel_bins=80, d_model=384, encoder_layers=4,
                                        decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
                                        encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_source_positions=1500,
                                        max_target_positions=448)),
    # Compute-bound on a CPU (bench-train's JAX vs PyTorch step, configs/bench_cpu.yaml).
    "bench-cpu-qwen2": ("qwen2", dict(vocab_size=8192, hidden_size=512, intermediate_size=2048,
                                      num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                                      rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                      max_position_embeddings=4096)),
    "bench-cpu-whisper": ("whisper", dict(vocab_size=51866, num_mel_bins=128, d_model=384, encoder_layers=4,
                                          decoder_layers=1, encoder_attention_heads=6, decoder_attention_heads=6,
                                          encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_source_positions=1500,
                                          max_target_positions=448)),
    "tiny": ("qwen2", None),
    "tiny-whisper": ("whisper", None),
}


def _save_config_only(config, out_dir) -> Path:
    """config.json + the tokenizer, no weights: what ahead-of-time compilation reads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    make_tokenizer(out)
    return out


def make_random(preset: str, out_dir: str | Path, *, seed: int = 0, dtype: str = "bfloat16",
                max_shard_bytes: int = 5 * 2**30, shape_overrides: dict | None = None,
                config_only: bool = False, fast: bool = False) -> Path:
    """Random weights at a preset's real shapes, written shard by shard (a 7B never sits in memory
    twice), with the tiny BPE tokenizer so the pipeline runs end to end. `shape_overrides`
    shrinks a preset (tests exercise the same writer on small shapes). `config_only` writes
    config.json and the tokenizer alone (seconds, bytes): enough for `aura-jax aot`. `fast` cuts
    each weight from one shared block of 2^24 random values at a random offset instead of drawing
    every value (a 7B in seconds rather than a minute: for timing, where the values do not matter)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    kind, shape = PRESETS[preset]
    if shape is not None and shape_overrides:
        shape = {**shape, **shape_overrides}
    out = Path(out_dir)
    if shape is None:  # the small presets: built and saved by transformers directly
        make = make_qwen2 if kind == "qwen2" else make_whisper
        return make(out, seed=seed, config_only=config_only)
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, WhisperConfig,
                              WhisperForConditionalGeneration)

    if kind == "qwen2":
        config, cls = Qwen2Config(**shape), Qwen2ForCausalLM
    elif kind == "llama":
        config, cls = LlamaConfig(**shape), LlamaForCausalLM
    else:
        config = WhisperConfig(**shape, pad_token_id=50256, bos_token_id=50257, eos_token_id=50257,
                               decoder_start_token_id=50258, suppress_tokens=[], begin_suppress_tokens=[])
        cls = WhisperForConditionalGeneration
    torch_dtype = getattr(torch, dtype)
    config.dtype = torch_dtype
    if config_only:
        return _save_config_only(config, out)
    with torch.device("meta"):  # names and shapes only, no memory
        skeleton = cls(config)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    pool = (torch.randn(2**24, generator=gen) * 0.02).to(torch_dtype) if fast else None
    shards, current, size = [], {}, 0
    tied = getattr(config, "tie_word_embeddings", False) or kind == "whisper"
    for name, p in skeleton.state_dict().items():
        if tied and name in ("lm_head.weight", "proj_out.weight"):
            continue
        current[name] = _random_tensor(name, tuple(p.shape), gen, torch_dtype, pool)
        size += current[name].numel() * current[name].element_size()
        if size >= max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
    if current:
        shards.append(current)
    weight_map, total = {}, 0
    for i, tensors in enumerate(shards):
        name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        for key, t in tensors.items():
            weight_map[key] = name
            total += t.numel() * t.element_size()
    if len(shards) > 1:
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config.save_pretrained(str(out))
    if kind in ("qwen2", "llama"):
        make_tokenizer(out)
    else:
        from transformers import GenerationConfig

        GenerationConfig(decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50256).save_pretrained(str(out))
        make_tokenizer(out)
    return out


def _random_tensor(name: str, shape: tuple, gen, dtype, pool=None):
    import math

    import torch

    if name.endswith("norm.weight") or "layer_norm.weight" in name or name.endswith("layernorm.weight"):
        return torch.ones(shape, dtype=dtype)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=dtype)
    if pool is not None:  # one pass of copies from the pool, starting at a random offset
        n, src = math.prod(shape), int(torch.randint(len(pool), (1,), generator=gen))
        out, pos = torch.empty(n, dtype=pool.dtype), 0
        while pos < n:
            take = min(n - pos, len(pool) - src)
            out[pos:pos + take] = pool[src:src + take]
            pos, src = pos + take, 0
        return out.reshape(shape)
    return (torch.randn(shape, generator=gen, dtype=torch.float32) * 0.02).to(dtype)
