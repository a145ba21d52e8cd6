"""The LLM's tokenizer and chat template, without transformers.

`tokenizer.json` is read with the `tokenizers` library; the chat template is
rendered with jinja2 exactly as `transformers.apply_chat_template` does
(sandboxed, trim_blocks/lstrip_blocks, `raise_exception`, `tojson`).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Tokenizer


class TokenizerError(ValueError):
    """A tokenizer directory or chat template that cannot be used."""


def _token_text(value) -> str | None:
    """tokenizer_config.json stores special tokens as strings or AddedToken dicts."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # jinja's own tojson HTML-escapes; transformers replaces it with plain json.dumps.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def compile_template(source: str) -> jinja2.Template:
    """A chat template compiled in transformers' jinja environment."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(source)


class ChatTokenizer:
    """Encode/decode text and render/tokenize chat conversations with target masks."""

    def __init__(self, tokenizer: Tokenizer, chat_template: str, *, eos_token: str, pad_token: str | None,
                 audio_token: str, special_tokens: dict[str, str] | None = None):
        self.tokenizer = tokenizer
        self.template = compile_template(chat_template)
        self.special_tokens = {k: v for k, v in (special_tokens or {}).items() if v is not None}
        self.audio_token = audio_token
        audio_id = tokenizer.token_to_id(audio_token)
        if audio_id is None:
            # Real Qwen2.5 has no audio token: give it the next free id, as
            # aura_jax.build.placeholder_token_id does for the embedding row.
            audio_id = tokenizer.get_vocab_size(with_added_tokens=True)
            tokenizer.add_special_tokens([AddedToken(audio_token, special=True, normalized=False)])
            if tokenizer.token_to_id(audio_token) != audio_id:
                raise TokenizerError(f"audio token {audio_token!r} got id {tokenizer.token_to_id(audio_token)}, "
                                     f"expected {audio_id}")
        self.audio_token_id = audio_id
        self.eos_token_id = self._id(eos_token, "eos_token")
        self.pad_token_id = self._id(pad_token, "pad_token") if pad_token else self.eos_token_id

    def _id(self, token: str, what: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise TokenizerError(f"{what} {token!r} is not in the vocabulary")
        return token_id

    @classmethod
    def from_pretrained(cls, llm_dir, audio_token: str = "<|audio|>") -> "ChatTokenizer":
        """Load `tokenizer.json`, `tokenizer_config.json` and the chat template from a HF directory."""
        d = Path(llm_dir)
        if not (d / "tokenizer.json").exists():
            raise TokenizerError(f"{d / 'tokenizer.json'}: missing (the LLM directory needs its tokenizer)")
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        cfg = json.loads((d / "tokenizer_config.json").read_text()) if (d / "tokenizer_config.json").exists() else {}
        template = cfg.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = {t["name"]: t["template"] for t in template}.get("default")
        if not template and (d / "chat_template.jinja").exists():
            template = (d / "chat_template.jinja").read_text()
        if not template:
            raise TokenizerError(f"{d}: no chat template (tokenizer_config.json 'chat_template' or chat_template.jinja)")
        eos = _token_text(cfg.get("eos_token")) or "<|endoftext|>"
        pad = _token_text(cfg.get("pad_token"))
        if pad is None and tok.token_to_id("<|endoftext|>") is not None:
            pad = "<|endoftext|>"
        special = {k: _token_text(cfg.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        return cls(tok, template, eos_token=eos, pad_token=pad, audio_token=audio_token, special_tokens=special)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (special-token strings map to their ids; no BOS/EOS added)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The chat template applied to `messages` ({"role", "content"} dicts)."""
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                    **self.special_tokens)

    def conversation_ids(self, messages: list[dict]) -> tuple[list[int], list[bool]]:
        """Token ids of the rendered conversation and a mask that is True on every assistant
        turn's content and its end-of-turn token (the CE targets)."""
        pieces: list[tuple[str, bool]] = []
        done = ""  # text rendered so far

        def extend(text: str, upto: int) -> str:
            if not text.startswith(done):
                raise TokenizerError(f"chat template output for the first {upto} messages does not extend "
                                     f"the rendering of the earlier ones; cannot mark targets")
            return text[len(done):]

        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:i], add_generation_prompt=True)
            pieces.append((extend(prompt, i), False))
            done = prompt
            turn = self.render(messages[:i + 1])
            pieces.append((extend(turn, i + 1), True))
            done = turn
        pieces.append((extend(self.render(messages), len(messages)), False))

        ids, mask = [], []
        for text, target in pieces:
            piece = self.encode(text) if text else []
            n = len(piece)
            if target and self.eos_token_id in piece:
                # Targets end at the end-of-turn token; template glue after it (Qwen's "\n") is not predicted.
                n = len(piece) - piece[::-1].index(self.eos_token_id)
            ids += piece
            mask += [target] * n + [False] * (len(piece) - n)
        return ids, mask


def audio_prompt_ids(tokenizer, config, prompt: str) -> list[int]:
    """The JAX side's ids: chat template around "{audio_token} {prompt}" (system prompt, generation
    prompt), split at the audio token, sides encoded apart, joined with the placeholder id."""
    token = config.prompt.audio_token
    text = tokenizer.render([{"role": "system", "content": config.prompt.system},
                             {"role": "user", "content": f"{token} {prompt}"}], add_generation_prompt=True)
    before, after = text.split(token, 1)
    encode = lambda s: tokenizer.encode(s) if s else []
    return encode(before) + [tokenizer.audio_token_id] + encode(after)
