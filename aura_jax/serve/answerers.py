"""The models behind the server. `load_aura(MODEL)` reads an export (PyTorch, `AuraSpeechLM`) or a
training run directory (JAX, `AuraStream`); both open one stream per utterance that prefills audio as
it arrives and then yields the answer's token ids as they are decoded. `Cascade` is the baseline the
page shows beside it: Whisper transcribes the whole clip, then the base LLM answers the transcript."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aura_jax.evaluate.harness import QA_INSTRUCTION

DEFAULT_PROMPT = QA_INSTRUCTION  # what eval asks with a spoken question ("Give a simple one sentence answer.")


class AuraAnswerer:
    """Common to both frameworks: `open(prompt)` → a SpeechStream (`feed_audio`, `finish_ids`)."""

    name = "aura"

    def __init__(self, max_new_tokens: int, chunk_patches: int, padded: bool):
        self.max_new_tokens, self.chunk_patches, self.padded = max_new_tokens, chunk_patches, padded

    window_seconds: float
    description: str
    asr_prompt: str  # what AuRA is asked for a transcript: its training's prompt.asr_instruction, as eval asks it

    def open(self, prompt: str):
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError


class TorchAura(AuraAnswerer):
    def __init__(self, export_dir: str, *, max_new_tokens: int = 64, chunk_patches: int = 5, padded: bool = False):
        from aura_jax.torch import AuraSpeechLM

        super().__init__(max_new_tokens, chunk_patches, padded)
        self.lm = AuraSpeechLM.from_pretrained(export_dir, dtype="float32")
        a = self.lm.aura["audio"]
        self.window_seconds = a["num_frames"] / 100.0
        self.asr_prompt = self.lm.aura["prompt"]["asr_instruction"]
        self.description = f"AuRA export {export_dir} (PyTorch)"

    def open(self, prompt: str):
        return self.lm.stream(prompt, chunk_patches=self.chunk_patches, padded=self.padded,
                              max_new_tokens=self.max_new_tokens)

    def decode(self, ids: list[int]) -> str:
        return self.lm.tokenizer.decode(ids, skip_special_tokens=True)


class JaxAura(AuraAnswerer):
    def __init__(self, run_dir: str, *, max_new_tokens: int = 64, chunk_patches: int = 5, padded: bool = False):
        from aura_jax.evaluate.harness import NO_RANDOM_INIT
        from aura_jax.tokenizer import ChatTokenizer
        from aura_jax.training.checkpoint import restore_student

        super().__init__(max_new_tokens, chunk_patches, padded)
        self.config, self.model, step = restore_student(run_dir, None, [NO_RANDOM_INIT])
        self.tok = ChatTokenizer.from_pretrained(self.config.model.llm, audio_token=self.config.prompt.audio_token)
        self.window_seconds = self.config.audio.num_frames / 100.0
        self.asr_prompt = self.config.prompt.asr_instruction
        self.description = f"AuRA run {run_dir}, step {step} (JAX)"

    def open(self, prompt: str):
        from aura_jax.inference.generate import AuraStream
        from aura_jax.tokenizer import audio_prompt_ids

        return AuraStream(self.model, audio_prompt_ids(self.tok, self.config, prompt), chunk_patches=self.chunk_patches,
                          padded=self.padded, max_new_tokens=self.max_new_tokens, eos_token_id=[self.tok.eos_token_id],
                          pad_token_id=self.tok.pad_token_id)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


def load_aura(model: str, **kwargs) -> AuraAnswerer:
    """A run directory (config.yaml: JAX) or an export (aura_config.json, or merged/ and peft/: PyTorch)."""
    path = Path(model)
    if (path / "config.yaml").is_file():
        return JaxAura(model, **kwargs)
    if (path / "aura_config.json").is_file() or (path / "merged" / "aura_config.json").is_file():
        return TorchAura(model, **kwargs)
    raise FileNotFoundError(f"{model}: neither a training run directory (config.yaml) nor an aura-jax export "
                            "(aura_config.json); e.g. runs/demo/run or runs/demo/export/merged")


def recorded_cascade(model: str) -> tuple[str, str]:
    """(Whisper, LLM) directories MODEL was trained with, for the cascade beside it: a run directory's
    config.yaml (model.teacher, model.llm); an export's aura_config.json (base_model, and the teacher in
    the config.yaml of the run it names). Relative paths count from here, as training read them. Any
    missing directory is one FileNotFoundError naming it and saying how to pass another."""
    from aura_jax.config import load_config

    path, how = Path(model), "pass --cascade WHISPER LLM to use others, or --no-cascade"
    if (path / "config.yaml").is_file():
        run, llm = path, None
    else:
        aura = _export_config(path)
        run, llm = Path(aura.get("run_dir", "")), aura.get("base_model")
        if not aura.get("run_dir") or not (run / "config.yaml").is_file():
            raise FileNotFoundError(f"{model}: the run it was exported from ({aura.get('run_dir') or 'not recorded'}) "
                                    f"has no config.yaml here, so its Whisper teacher is unknown; {how}")
    config = load_config(run / "config.yaml")
    pair = {"Whisper": (config.model.teacher, f"model.teacher of {run / 'config.yaml'}"),
            "LLM": (llm or config.model.llm, "base_model of its aura_config.json" if llm else
                    f"model.llm of {run / 'config.yaml'}")}
    for name, (where, source) in pair.items():
        if not where or not Path(where).is_dir():
            raise FileNotFoundError(f"the cascade's {name} {where or '(not set)'} ({source}) does not exist; {how}")
    return str(pair["Whisper"][0]), str(pair["LLM"][0])


def _export_config(path: Path) -> dict:
    import json

    for p in (path / "aura_config.json", path / "merged" / "aura_config.json", path / "peft" / "aura_config.json"):
        if p.is_file():
            return json.loads(p.read_text())
    raise FileNotFoundError(f"{path}: neither a training run directory (config.yaml) nor an aura-jax export "
                            "(aura_config.json)")


class Cascade:
    """Whisper → the base LLM, in PyTorch (`aura_jax.torch.systems.CascadeSystem`), greedy."""

    name = "cascade"

    def __init__(self, whisper_dir: str, llm_dir: str, *, max_new_tokens: int = 64, asr_tokens: int = 96):
        import torch

        from aura_jax.torch.systems import CascadeSystem

        self.system = CascadeSystem(whisper_dir, llm_dir, "cpu", torch.float32)
        self.max_new_tokens, self.asr_tokens = max_new_tokens, self.system.asr_budget(asr_tokens)
        self.pair = (whisper_dir, llm_dir)
        self.description = f"Whisper {whisper_dir} → {llm_dir} (PyTorch)"

    def transcribe(self, wave: np.ndarray) -> str:
        return self.system.transcribe(wave, self.asr_tokens, fixed=False).strip()

    def answer_ids(self, transcript: str, prompt: str):
        return self.system.answer_ids(transcript, prompt, self.max_new_tokens)

    def decode(self, ids: list[int]) -> str:
        return self.system.tok.decode(ids, skip_special_tokens=True)


class TextPieces:
    """Token ids → the text each one adds, for streaming: a piece is held back while it ends inside a
    multi-byte character (decoded as U+FFFD), and released with the next one."""

    def __init__(self, decode):
        self.decode, self.ids, self.sent = decode, [], ""

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        text = self.decode(self.ids)
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent):], text
        return piece

    @property
    def text(self) -> str:
        return self.decode(self.ids)
