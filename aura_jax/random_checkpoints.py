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
               **extra) -> Path:
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
                 vocab_size: int = 128, seed: int = 0, dtype: str = "float32") -> Path:
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
    model = WhisperForConditionalGeneration(config).to(getattr(torch, dtype)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn_like(p) * 0.02)
    out = Path(out_dir)
    model.save_pretrained(str(out))
    return out
