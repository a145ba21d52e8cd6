"""ChatTokenizer: parity with transformers' chat templating, target masks, the audio token."""

import json
import shutil

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from aura_jax.build import placeholder_token_id
from aura_jax.tokenizer import ChatTokenizer, TokenizerError

CONVERSATIONS = [
    [{"role": "user", "content": "<|audio|> Transcribe the speech."}, {"role": "assistant", "content": "one two"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Japan?"},
     {"role": "assistant", "content": "Tokyo is the capital of Japan."}],
    [{"role": "user", "content": "Héllo ünïcode «quotes» \"and\" tabs\tand\nnewlines"}],
]


@pytest.fixture(scope="module")
def hf(tiny_qwen2_dir):
    return AutoTokenizer.from_pretrained(str(tiny_qwen2_dir))


@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("gen", [False, True])
def test_same_ids_and_text_as_transformers(tokenizer, hf, conv, gen):
    messages = CONVERSATIONS[conv]
    ref = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
    ref = ref["input_ids"] if isinstance(ref, dict) or hasattr(ref, "keys") else ref
    assert tokenizer.render(messages, gen) == hf.apply_chat_template(messages, tokenize=False,
                                                                     add_generation_prompt=gen)
    assert tokenizer.encode(tokenizer.render(messages, gen)) == list(ref)
    if not gen:
        assert tokenizer.conversation_ids(messages)[0] == list(ref)


def test_special_ids_and_decode(tokenizer, hf, tiny_qwen2_dir):
    assert tokenizer.eos_token_id == hf.eos_token_id == hf.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.pad_token_id == hf.pad_token_id == hf.convert_tokens_to_ids("<|endoftext|>")
    assert tokenizer.audio_token_id == hf.convert_tokens_to_ids("<|audio|>")
    assert tokenizer.audio_token_id == placeholder_token_id(tiny_qwen2_dir, "<|audio|>", 512)
    ids = tokenizer.encode("<|audio|> one two three")
    assert ids.count(tokenizer.audio_token_id) == 1 and ids == hf.encode("<|audio|> one two three",
                                                                         add_special_tokens=False)
    assert tokenizer.decode(ids) == " one two three"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<|audio|> one two three"


def test_missing_audio_token_is_added_with_the_build_id(tmp_path, tiny_qwen2_dir):
    """Real Qwen2.5 has no audio token: it gets the next id, the same as build.placeholder_token_id."""
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_qwen2_dir / f, tmp_path / f)
    size = Tokenizer.from_file(str(tmp_path / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    tok = ChatTokenizer.from_pretrained(tmp_path, audio_token="<|AUDIO_NEW|>")
    assert tok.audio_token_id == size == placeholder_token_id(tmp_path, "<|AUDIO_NEW|>", 4096)
    ids = tok.encode("<|AUDIO_NEW|> Transcribe the speech.")
    assert ids[0] == size and ids.count(size) == 1


def test_template_inline_in_tokenizer_config(tmp_path, tiny_qwen2_dir, tokenizer):
    """Qwen2.5 keeps the template in tokenizer_config.json and tokens as AddedToken dicts."""
    shutil.copy(tiny_qwen2_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    config = {"chat_template": (tiny_qwen2_dir / "chat_template.jinja").read_text(),
              "eos_token": {"content": "<|im_end|>", "special": True}, "pad_token": None, "bos_token": None}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = ChatTokenizer.from_pretrained(tmp_path)
    assert tok.eos_token_id == tokenizer.eos_token_id
    assert tok.pad_token_id == tokenizer.pad_token_id  # falls back to <|endoftext|>
    assert tok.conversation_ids(CONVERSATIONS[1]) == tokenizer.conversation_ids(CONVERSATIONS[1])


def test_loss_mask_is_every_assistant_turn_and_its_end_token(tokenizer):
    messages = CONVERSATIONS[1]
    ids, mask = tokenizer.conversation_ids(messages)
    assert len(ids) == len(mask)
    spans, start = [], None
    for j, m in enumerate(mask + [False]):
        if m and start is None:
            start = j
        if not m and start is not None:
            spans.append(ids[start:j])
            start = None
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert [tokenizer.decode(s, skip_special_tokens=False) for s in spans] == [a + "<|im_end|>" for a in answers]
    assert all(s[-1] == tokenizer.eos_token_id for s in spans)


def test_template_that_rewrites_history_is_an_error(tiny_qwen2_dir):
    tok = Tokenizer.from_file(str(tiny_qwen2_dir / "tokenizer.json"))
    # Renders only the last message: a longer conversation does not extend the shorter one.
    template = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    bad = ChatTokenizer(tok, template, eos_token="<|im_end|>", pad_token="<|endoftext|>", audio_token="<|audio|>")
    with pytest.raises(TokenizerError, match="does not extend"):
        bad.conversation_ids(CONVERSATIONS[1])


def test_template_helpers_like_transformers(tiny_qwen2_dir):
    tok = Tokenizer.from_file(str(tiny_qwen2_dir / "tokenizer.json"))
    template = ("{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}"
                "{{ messages[0] | tojson }}")
    t = ChatTokenizer(tok, template, eos_token="<|im_end|>", pad_token=None, audio_token="<|audio|>")
    assert t.render([{"role": "user", "content": "é<b>"}]) == '{"role": "user", "content": "é<b>"}'
    with pytest.raises(Exception, match="one message only"):
        t.render(CONVERSATIONS[1])


def test_qwen2_5_template_parity_and_masks(tmp_path, tiny_qwen2_dir):
    """Qwen2.5-Instruct's own chat template (whitespace control, attribute access, default system)."""
    from pathlib import Path

    shutil.copy(tiny_qwen2_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    template = (Path(__file__).parent / "qwen2_5_chat_template.jinja").read_text()
    config = {"chat_template": template, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "bos_token": None, "tokenizer_class": "PreTrainedTokenizerFast"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours, ref = ChatTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    for messages in CONVERSATIONS:
        ids = ref.apply_chat_template(messages, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert ours.render(messages) == ref.apply_chat_template(messages, tokenize=False)
        assert ours.render(messages).startswith("<|im_start|>system\n")
        got, mask = ours.conversation_ids(messages)
        assert got == list(ids)
        answers = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
        assert ours.decode([i for i, m in zip(got, mask) if m], skip_special_tokens=False) == "".join(answers)
