"""`aura_jax.convert.gguf`: a tiny Llama GGUF, written here with the `gguf` package the way llama.cpp's
converter lays one out (q/k rows permuted, F16 matrices, F32 norms, a byte-level BPE vocabulary, a
chat template), becomes a plain float32 Hugging Face directory holding the very weights the file
holds and the file's tokenizer; what cannot be converted is one error naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from aura_jax.convert.gguf import GgufError, convert_gguf

LAYERS, HIDDEN, HEADS, KV_HEADS, FFN = 2, 32, 4, 2, 64
HEAD_DIM = HIDDEN // HEADS
ROPE_THETA, RMS_EPS = 5000.0, float(np.float32(1e-6))  # not LlamaConfig's defaults; GGUF keeps float32
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MERGES = ["h e", "l l", "he ll", "hell o"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_alphabet() -> list[str]:
    """GPT-2's printable spelling of the 256 bytes, in byte order."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelling = bytes_to_unicode()
    return [spelling[b] for b in range(256)]


TOKENS = byte_alphabet() + ["he", "ll", "hell", "hello"] + SPECIALS
VOCAB = len(TOKENS)
EOT, IM_START, IM_END = (TOKENS.index(t) for t in SPECIALS)


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The q/k row order llama.cpp's converter writes: per head, the two rotary halves of the Hugging Face
    layout interleaved row by row (written here from that definition)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_weights(tied: bool) -> dict[str, np.ndarray]:
    """Random float32 weights in the Hugging Face Llama layout, each exactly representable in F16."""
    rng = np.random.default_rng(0)

    def mat(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float16).astype(np.float32)

    def norm():
        return (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(VOCAB, HIDDEN), "model.norm.weight": norm()}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w |= {p + "self_attn.q_proj.weight": mat(HEADS * HEAD_DIM, HIDDEN),
              p + "self_attn.k_proj.weight": mat(KV_HEADS * HEAD_DIM, HIDDEN),
              p + "self_attn.v_proj.weight": mat(KV_HEADS * HEAD_DIM, HIDDEN),
              p + "self_attn.o_proj.weight": mat(HIDDEN, HEADS * HEAD_DIM),
              p + "mlp.gate_proj.weight": mat(FFN, HIDDEN),
              p + "mlp.up_proj.weight": mat(FFN, HIDDEN),
              p + "mlp.down_proj.weight": mat(HIDDEN, FFN),
              p + "input_layernorm.weight": norm(),
              p + "post_attention_layernorm.weight": norm()}
    if not tied:
        w["lm_head.weight"] = mat(VOCAB, HIDDEN)
    return w


def gguf_tensors(hf: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same weights under llama.cpp's names and layout: q/k permuted, matrices F16, norms F32."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    leaves = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for i in range(LAYERS):
        names |= {f"model.layers.{i}.{hf_leaf}.weight": f"blk.{i}.{leaf}.weight" for hf_leaf, leaf in leaves.items()}
    out = {}
    for name, w in hf.items():
        if name.endswith("q_proj.weight"):
            w = llama_cpp_permute(w, HEADS)
        elif name.endswith("k_proj.weight"):
            w = llama_cpp_permute(w, KV_HEADS)
        out[names[name]] = w.astype(np.float16) if w.ndim == 2 else w
    return out


def write_gguf(path, tied: bool = True, chat_template: str | None = CHAT_TEMPLATE):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(VOCAB)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(TOKENS)
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in TOKENS])
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(IM_START)
    writer.add_eos_token_id(IM_END)
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, w in gguf_tensors(hf_weights(tied)).items():
        writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def converted(request, tmp_path_factory):
    """(the GGUF, its conversion, whether its embeddings are tied)."""
    root = tmp_path_factory.mktemp("gguf")
    path = write_gguf(root / "tiny-llama-f16.gguf", tied=request.param)
    return path, convert_gguf(path, root / "hf"), request.param


def test_llama_cpp_s_q_k_permutation_moves_rows_here():
    """The q/k row permutation is not the identity here, so a loader that skips undoing it shows."""
    w = hf_weights(tied=True)["model.layers.0.self_attn.k_proj.weight"]
    assert not np.array_equal(llama_cpp_permute(w, KV_HEADS), w)


def test_the_converted_weights_are_the_ones_the_file_holds(converted):
    """float32 safetensors, tensor for tensor the Hugging Face weights the GGUF was written from."""
    from safetensors.numpy import load_file

    _, out, tied = converted
    saved = load_file(out / "model.safetensors")
    expected = hf_weights(tied)
    if tied:  # saved or not, it is the embedding
        saved.pop("lm_head.weight", None)
    assert set(saved) == set(expected)
    for name, value in expected.items():
        assert saved[name].dtype == np.float32, name
        np.testing.assert_array_equal(saved[name], value, err_msg=name)


def test_the_config_is_the_llama_the_file_describes(converted):
    from transformers import AutoConfig

    _, out, tied = converted
    c = AutoConfig.from_pretrained(out)
    assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.intermediate_size) == ("llama", LAYERS, HIDDEN, FFN)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.vocab_size) == (HEADS, KV_HEADS, HEAD_DIM, VOCAB)
    assert c.rms_norm_eps == RMS_EPS and c.rope_parameters["rope_theta"] == ROPE_THETA
    assert c.tie_word_embeddings is tied
    assert not hasattr(c, "quantization_config")


def test_the_converted_model_computes_what_the_gguf_loaded_one_does(converted):
    """Same logits as transformers' own GGUF loading, and as a Llama built from the weights by hand."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    path, out, tied = converted
    ids = torch.tensor([[IM_START, 104, 101, 108, VOCAB - 5, 111, IM_END, 7]])
    plain = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    from_gguf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    by_hand = LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, rms_norm_eps=RMS_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA}, tie_word_embeddings=tied)).eval()
    missing, unexpected = by_hand.load_state_dict({k: torch.from_numpy(v) for k, v in hf_weights(tied).items()},
                                                  strict=False)
    assert unexpected == [] and missing == (["lm_head.weight"] if tied else [])
    with torch.no_grad():
        logits = [m(ids).logits for m in (plain, from_gguf, by_hand)]
    assert logits[0].shape == (1, ids.shape[1], VOCAB) and logits[0].abs().max() > 0.1
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[0], logits[2], atol=1e-5, rtol=0)


def test_the_tokenizer_keeps_the_vocabulary_and_the_chat_template(converted):
    from transformers import AutoTokenizer

    _, out, _ = converted
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == CHAT_TEMPLATE
    assert tok("hello", add_special_tokens=False).input_ids == [TOKENS.index("hello")]
    chat = [{"role": "user", "content": "hello"}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    nl, a = TOKENS.index("\u010a"), TOKENS.index("a")
    assert ids[:5] == [IM_START, TOKENS.index("u"), TOKENS.index("s"), TOKENS.index("e"), TOKENS.index("r")]
    assert ids[5:9] == [nl, TOKENS.index("hello"), IM_END, nl] and ids[9:11] == [IM_START, a]
    assert tok.decode(ids) == text


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(GgufError, match=r"nowhere\.gguf: missing"):
        convert_gguf(tmp_path / "nowhere.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_without_the_gguf_magic_is_named(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(GgufError, match=r"model\.gguf: not a GGUF file"):
        convert_gguf(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_gguf_without_a_chat_template_is_refused_by_name(tmp_path):
    path = write_gguf(tmp_path / "base-model.gguf", chat_template=None)
    with pytest.raises(GgufError, match=r"base-model\.gguf: holds no chat template"):
        convert_gguf(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
