"""Issue 43: a `lora.audio_only=true` run (the adapters act at the audio positions only) exports with
`--format adapter` and runs in `AuraSpeechLM`: PEFT's tensor names under files a plain `peft.PeftModel`
refuses; prompt logits equal the JAX model's; text-only prompts equal the base AutoModelForCausalLM bit
for bit; decoding is the base weights (greedy answers equal JAX's); the mask matters (mutation check)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

PROMPT = "Transcribe the speech."


@pytest.fixture(scope="module")
def audio_only_run(tiny_qwen2_dir, tiny_whisper_dir, tmp_path_factory):
    from aura_jax.config import load_config
    from aura_jax.training.train import train

    run_dir = tmp_path_factory.mktemp("audio-only-run")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = load_config(os.path.join(root, "configs", "tiny.yaml"), [
        f"model.llm={tiny_qwen2_dir}", f"model.teacher={tiny_whisper_dir}", f"run_dir={run_dir}", "steps=3",
        "lora.audio_only=true", "optim.warmup_steps=0", "optim.learning_rate=1e-2", "compilation_cache_dir=",
        f"data.cache_dir={tmp_path_factory.mktemp('audio-only-data')}"])
    train(config)
    return run_dir


@pytest.fixture(scope="module")
def exported(audio_only_run, tiny_qwen2_dir, tmp_path_factory):
    from aura_jax.torch.export import export

    lines = []
    out = export(audio_only_run, None, tmp_path_factory.mktemp("adapter") / "export", log=lines.append)
    assert any("--format adapter" in line for line in lines)  # the default for an audio-only run, said so
    return out


@pytest.fixture(scope="module")
def lm(exported):
    from aura_jax.torch import AuraSpeechLM

    return AuraSpeechLM.from_pretrained(exported, dtype="float32")


@pytest.fixture(scope="module")
def wave():
    from aura_jax.synth import synthesize

    return synthesize("one two three")


def test_the_export_holds_peft_names_under_its_own_files(exported, audio_only_run, tiny_qwen2_dir):
    from safetensors import safe_open

    from aura_jax.training.checkpoint import restore_student

    names = sorted(p.name for p in exported.iterdir())
    assert {"audio_lora.safetensors", "audio_lora_config.json", "audio_embed.safetensors", "aura_config.json",
            "tokenizer.json"} <= set(names)
    assert "adapter_config.json" not in names and "adapter_model.safetensors" not in names
    assert not any(n.endswith(".tmp") or ".tmp-" in n for n in os.listdir(exported.parent))
    aura = json.loads((exported / "aura_config.json").read_text())
    assert aura["kind"] == "adapter" and aura["lora"]["positions"] == "audio"
    assert aura["base_model"] == str(tiny_qwen2_dir) and aura["dtype"] == "float32"
    adapter = json.loads((exported / "audio_lora_config.json").read_text())
    assert adapter["positions"] == "audio" and adapter["peft_type"] == "LORA"
    config, model, _ = restore_student(audio_only_run)
    from aura_jax.models.lora import lora_modules

    expected = {}
    for i, name, module in lora_modules(model.llm):
        block = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
        prefix = f"base_model.model.model.layers.{i}.{block}.{name}"
        expected[f"{prefix}.lora_A.weight"] = np.asarray(module.lora_a[...]).T  # PEFT: [r, in]
        expected[f"{prefix}.lora_B.weight"] = np.asarray(module.lora_b[...]).T  # PEFT: [out, r]
    assert adapter["r"] == config.lora.rank and adapter["layers_to_transform"] == list(range(config.lora.num_layers))
    with safe_open(str(exported / "audio_lora.safetensors"), "np") as f:
        assert f.metadata()["aura_jax.positions"] == "audio"
        assert sorted(f.keys()) == sorted(expected)
        for k, v in expected.items():
            np.testing.assert_array_equal(f.get_tensor(k), v)


def test_a_plain_peft_load_fails_loudly(exported, tiny_qwen2_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir))
    with pytest.raises(ValueError, match="adapter_config.json"):
        PeftModel.from_pretrained(base, str(exported))


def test_other_formats_are_refused_for_an_audio_only_run_and_adapter_for_others(audio_only_run, tiny_run_dir,
                                                                               tmp_path):
    from aura_jax.config import ConfigError
    from aura_jax.torch.export import export

    for fmt in ("merged", "peft", "both"):
        with pytest.raises(ConfigError, match="use --format adapter"):
            export(audio_only_run, None, tmp_path / fmt, format=fmt)
    with pytest.raises(ConfigError, match="for lora.audio_only=true runs"):
        export(tiny_run_dir, None, tmp_path / "x", format="adapter")
    assert not list(tmp_path.iterdir())


def test_the_llm_stays_a_plain_causal_lm_with_wrapped_linears(lm):
    from transformers import Qwen2ForCausalLM

    from aura_jax.torch.model import AudioOnlyLoRALinear

    assert type(lm.model) is Qwen2ForCausalLM
    k, targets = lm.aura["lora"]["num_layers"], lm.aura["lora"]["targets"]
    wrapped = {n for n, m in lm.model.named_modules() if isinstance(m, AudioOnlyLoRALinear)}
    assert len(wrapped) == k * len(targets)
    assert all(int(n.split(".")[2]) < k for n in wrapped)


def _relative(ours, theirs) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(ours).max())


def test_prompt_logits_equal_the_jax_model(audio_only_run, exported, wave):
    """Independent reference: the run's JAX student (its own LoRALinear with adapter_mask)."""
    from aura_jax.torch.export_parity import check_export_parity

    report = check_export_parity(audio_only_run, exported, audio=wave)
    assert report["kind"] == "adapter" and report["dtype"] == "float32" and report["audio_tokens"] > 0
    assert report["max_abs_diff"] / report["logit_scale"] <= 1e-5, report
    assert report["argmax_agreement"] == 1.0


def test_the_mask_matters_adapters_at_text_positions_do_not_match_jax(audio_only_run, lm, wave):
    """The mask is the point: the same adapters acting at every prompt position give other logits, far
    outside the tolerance above (so the parity test would catch a runner that ignored the mask)."""
    import jax.numpy as jnp

    from aura_jax.tokenizer import ChatTokenizer, audio_prompt_ids
    from aura_jax.training.checkpoint import restore_student

    config, model, _ = restore_student(audio_only_run)
    tok = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
    ids = audio_prompt_ids(tok, config, PROMPT)
    mel = lm.features(wave)
    x = jnp.asarray([ids], dtype=jnp.int32)
    ours = np.asarray(model.student(x, jnp.ones(x.shape, bool), jnp.zeros(x.shape, bool),
                                    jnp.asarray(mel[None])).logits, np.float32)
    embeds, mask, _ = lm.prepare(wave, PROMPT)
    with torch.no_grad():
        lm.arm(torch.ones_like(lm.audio_mask))  # the mutation: every position
        everywhere = lm.model(inputs_embeds=embeds, attention_mask=mask).logits.numpy()
        lm.arm(lm.audio_mask)
        right = lm.model(inputs_embeds=embeds, attention_mask=mask).logits.numpy()
        nowhere = lm.model(inputs_embeds=embeds, attention_mask=mask).logits.numpy()  # gate consumed: base
    assert _relative(ours, right) <= 1e-5
    assert _relative(ours, everywhere) > 1e-3 and _relative(ours, nowhere) > 1e-3


def test_text_only_prompts_are_the_base_model_bit_for_bit(lm, tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2_dir), dtype=torch.float32).eval()
    ids = torch.as_tensor([lm.prompt_ids("What is the capital of France?", with_audio=False)])
    with torch.no_grad():
        assert torch.equal(lm.model(input_ids=ids).logits, base(input_ids=ids).logits)
    n = 6
    with torch.no_grad():
        want = base.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             eos_token_id=lm.eos_token_ids, pad_token_id=lm.pad_token_id)[0, ids.shape[1]:]
    got = lm.generate_text("What is the capital of France?", n)
    assert got == lm.tokenizer.decode(lm._trim(want, lm.eos_token_ids), skip_special_tokens=True)


def test_greedy_batched_answers_equal_jax_and_decoding_is_the_base(audio_only_run, lm, wave):
    """Batched greedy generation (left-padded, two clips of different lengths) against the JAX
    `generate_aura` of the run, whose decode steps carry no adapter mask (base weights)."""
    import jax.numpy as jnp

    from aura_jax.inference.generate import generate_aura
    from aura_jax.synth import synthesize
    from aura_jax.tokenizer import ChatTokenizer, audio_prompt_ids
    from aura_jax.training.checkpoint import restore_student

    waves = [wave, synthesize("seven")]
    n = 8
    ours = lm.generate_ids(waves, PROMPT, max_new_tokens=n, min_new_tokens=n)
    config, model, _ = restore_student(audio_only_run)
    tok = ChatTokenizer.from_pretrained(config.model.llm, audio_token=config.prompt.audio_token)
    ids = audio_prompt_ids(tok, config, PROMPT)
    for w, row in zip(waves, ours):
        mel = lm.features(w)
        x = jnp.asarray([ids], jnp.int32)
        jax_ids = np.asarray(generate_aura(model, x, jnp.ones(x.shape, bool), jnp.asarray(mel[None]),
                                           max_new_tokens=n, eos_token_id=[], pad_token_id=0))[0].tolist()
        assert row == jax_ids
        assert row == lm.generate_ids([w], PROMPT, max_new_tokens=n, min_new_tokens=n)[0]  # batch = alone


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_the_stream_in_uneven_pieces_gives_the_offline_logits_and_answer(lm, chunk):
    """The torch stream arms the gate for each audio chunk only (prefix, suffix, decoding: base weights):
    its logits and greedy answer are one-shot prefill's with the audio mask (itself checked against JAX)."""
    frames = np.random.default_rng(chunk).standard_normal((lm.aura["audio"]["n_mels"], 130)).astype(np.float32)
    stream = lm.stream(PROMPT, chunk_patches=chunk, max_new_tokens=8, keep_logits=True)
    for i in range(0, 130, 11):  # pieces unrelated to patches (10 frames) or chunks
        stream.feed_features(frames[:, i:i + 11])
    answer = stream.finish()
    ids = lm.prompt_ids(PROMPT)
    row, audio = lm._row_and_mask(ids, frames)
    with torch.no_grad():
        lm.arm(audio[None])
        logits = lm.model(inputs_embeds=row[None]).logits[0].float()
        lm.arm(audio[None])
        out = lm.model.generate(inputs_embeds=row[None], attention_mask=torch.ones((1, row.shape[0]), dtype=torch.long),
                                max_new_tokens=8, do_sample=False, eos_token_id=lm.eos_token_ids,
                                pad_token_id=lm.pad_token_id)
    want = lm._trim(out[0], lm.eos_token_ids)
    torch.testing.assert_close(stream.logits(), logits, atol=1e-5 * float(logits.abs().max()), rtol=0)
    assert stream.answer_ids == want and answer == lm.tokenizer.decode(want, skip_special_tokens=True)
    assert stream.chunks_prefilled == -(-13 // chunk)


def test_serve_export_and_serve_run_give_the_same_answer(audio_only_run, exported):
    """`aura-jax serve EXPORT` (PyTorch, AudioOnlyLoRALinear) and `serve RUN` (JAX, AuraStream) answer the
    same spoken question with the same token ids (greedy, 6 tokens)."""
    from aura_jax.serve.answerers import DEFAULT_PROMPT, JaxAura, TorchAura, load_aura

    rng = np.random.default_rng(3)
    wave = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    answers = {}
    for model in (exported, audio_only_run):
        aura = load_aura(str(model), max_new_tokens=6, chunk_patches=5)
        stream = aura.open(DEFAULT_PROMPT)
        for i in range(0, wave.size, 3000):  # uneven pieces, as a microphone sends them
            stream.feed_audio(wave[i:i + 3000])
        answers[type(aura)] = list(stream.finish_ids())
    assert set(answers) == {TorchAura, JaxAura}
    assert answers[TorchAura] == answers[JaxAura] and len(answers[TorchAura]) > 0, answers


def test_the_unmerged_bench_times_the_runners_answer_beside_a_merged_export(audio_only_run, exported, lm, wave,
                                                                             tmp_path):
    """bench-infer --against (aura_jax/bench/unmerged.py): its prefill arms the adapters (the adapter side's
    first logits are the runner's, each row; it decodes the runner's greedy ids, from `generate`); its
    in-memory merge is the merged export of the same adapters (JAX's merge_lora, `lora.audio_only=false`)
    to 1e-5; both sides are timed at each batch size."""
    from aura_jax.bench.unmerged import answer_timed, merged_in_memory, run_unmerged_benchmark
    from aura_jax.torch import AuraSpeechLM
    from aura_jax.torch.export import export
    from aura_jax.torch.model import AudioOnlyLoRALinear

    merged = export(audio_only_run, None, tmp_path / "merged", format="merged", dtype="float32",
                    overrides=["lora.audio_only=false"])
    twin = AuraSpeechLM.from_pretrained(exported, dtype="float32")
    merged_in_memory(twin)
    assert twin.gate is None and not any(isinstance(m, AudioOnlyLoRALinear) for m in twin.model.modules())
    reference = AuraSpeechLM.from_pretrained(merged, dtype="float32")
    ours, theirs = (m.logits(wave, PROMPT).numpy() for m in (twin, reference))
    assert _relative(ours, theirs) <= 1e-5
    assert _relative(lm.logits(wave, PROMPT).numpy(), theirs) > 1e-3  # the audio-only model is another model

    one = answer_timed(lm, wave, PROMPT, 2, 2, "cpu")  # the prefill's next-token logits: the runner's, armed
    want = lm.logits(wave, PROMPT)[0, -1]
    assert all(_relative(row.numpy(), want.numpy()) <= 1e-6 for row in one["first_logits"])
    r = run_unmerged_benchmark(str(exported), str(merged), batch_sizes=(1, 2), n=1, warmup=0, max_new_tokens=4,
                               question=PROMPT, wave=wave)
    want = lm.generate_ids([wave], PROMPT, max_new_tokens=4, min_new_tokens=4)[0]
    assert r["ids"]["adapter"]["1"] == [want] and r["ids"]["adapter"]["2"] == [want, want]
    for side in ("adapter", "merged"):
        for b in ("1", "2"):
            x = r["sides"][side][b]
            assert 0 < x["prefill_s"] <= x["ttft_s"] <= x["total_s"] and x["decode_s_per_token"] > 0
    assert set(r["ratio"]) == set(r["paired_ratio"]) == {"1", "2"} and r["against"] == str(merged)
