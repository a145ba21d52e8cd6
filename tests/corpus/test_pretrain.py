"""The tiny pretrained LM and Whisper: a few steps on the tiny corpus; the outputs load through the
project's own loaders (JAX Qwen2 / Whisper encoder, load_aura), loss goes down, second call is cached."""

import json

import numpy as np
import pytest

from aura_jax.corpus.pretrain_lm import gold_qa, pretrain_lm
from aura_jax.corpus.pretrain_whisper import pretrain_whisper, short_log_mel, to_full_length

LM = dict(steps=40, hidden_size=32, layers=2, heads=2, kv_heads=1, intermediate_size=64, batch_size=16,
          vocab_size=320, warmup_steps=2, eval_qa=False, progress=False, instruct_sentences=20)
WHISPER = dict(steps=14, d_model=32, encoder_layers=2, decoder_layers=1, heads=2, batch_size=4,
               full_length_steps=2, vocab_size=320, warmup_steps=2, max_eval=3, progress=False)


@pytest.fixture(scope="module")
def lm(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "llm"
    return out, pretrain_lm(tiny_corpus[0], out, **LM)


@pytest.fixture(scope="module")
def whisper(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("whisper") / "whisper"
    return out, pretrain_whisper(tiny_corpus[0], out, **WHISPER)


def test_lm_trains_loads_and_caches(tiny_corpus, lm):
    from aura_jax.hf import from_pretrained
    from aura_jax.tokenizer import ChatTokenizer

    out, result = lm
    assert result["final_loss"] < result["initial_loss"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "done.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2"
    tok = ChatTokenizer.from_pretrained(out)
    assert [tok.tokenizer.token_to_id(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio|>")] \
        == [0, 1, 2, 3]
    model = from_pretrained(out)
    assert model.config.vocab_size == 320
    scores = gold_qa(out, [("what is one plus one", "two")], max_new_tokens=2)
    assert scores["n"] == 1 and 0.0 <= scores["exact_match"] <= 1.0
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert pretrain_lm(tiny_corpus[0], out, **LM) == result
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime
    assert not list(out.parent.glob(".llm.tmp-*"))


def test_whisper_trains_loads_and_caches(tiny_corpus, whisper):
    from aura_jax.hf import from_pretrained

    out, result = whisper
    assert result["final_loss"] < result["initial_loss"]
    assert 0 <= result["heldout_wer"] and 0 <= result["train_wer"]
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "done.json"):
        assert (out / name).exists(), name
    encoder = from_pretrained(out, num_layers=1)
    assert encoder.config.num_mel_bins == 128 and encoder.config.num_input_frames == 3000
    assert pretrain_whisper(tiny_corpus[0], out, **WHISPER) == result
    assert list(out.parent.glob("whisper.work/mels-*.npy"))  # log-mels computed once, cached


def test_aura_loads_both_and_cascade_transcribes(lm, whisper, tiny_corpus):
    from aura_jax.build import load_aura
    from aura_jax.config import load_config
    from aura_jax.torch.systems import CascadeSystem

    config = load_config(None, [f"model.llm={lm[0]}", f"model.teacher={whisper[0]}", "lora.num_layers=2",
                                "lora.rank=4", "audio.n_mels=128"])
    model = load_aura(config)
    assert model.teacher is not None
    import torch

    cascade = CascadeSystem(str(whisper[0]), str(lm[0]), "cpu", torch.float32)
    clip = next((tiny_corpus[0] / "asr_test" / "clips").glob("*.wav"))
    assert isinstance(cascade.transcribe(str(clip), 8, False), str)


def test_short_log_mel_matches_the_full_features(tiny_corpus):
    from aura_jax.audio import load_audio, log_mel_spectrogram, num_valid_frames

    wave = load_audio(next((tiny_corpus[0] / "asr_train" / "clips").glob("*.wav")))
    frames = (num_valid_frames(len(wave)) // 16 + 2) * 16
    full = log_mel_spectrogram(wave, 16000, 128)
    short = short_log_mel(wave, 128, frames)
    np.testing.assert_allclose(short, full[:, :frames], atol=1e-6)
    np.testing.assert_allclose(to_full_length(short), full, atol=1e-6)


def test_the_lm_learns_the_asr_and_spoken_qa_prompts_with_the_text_where_the_audio_goes():
    """instruct_sentences: the tiny LM sees AuRA's prompts with the spoken words as text in the audio's
    place (what an instruction-tuned LLM already handles), so AuRA's LoRA only has to teach it to hear."""
    from aura_jax.config import PromptConfig
    from aura_jax.corpus.pretrain_lm import QA_INSTRUCTION, qa_conversations, transcribe_conversations
    from aura_jax.data.sources import asr_messages

    p = PromptConfig()
    (conv,) = transcribe_conversations(["anna has a cat"], p)
    want = asr_messages(p, "anna has a cat")  # AuRA's ASR row, its audio token replaced by the words
    want[-2] = dict(want[-2], content=want[-2]["content"].replace(p.audio_token, "anna has a cat"))
    assert conv == want
    spoken = qa_conversations("where does anna live", "paris", p, instructed=True)[-1]
    # eval's spoken-QA prompt is "{audio_token} {instruction}" (aura_jax.tokenizer.audio_prompt_ids)
    assert spoken[-2]["content"] == f"where does anna live {QA_INSTRUCTION}" and spoken[-1]["content"] == "paris"
    assert len(qa_conversations("q", "a", p)) == 2  # without: the text-QA and gold renderings only
