"""The PyTorch runner (`aura_jax.torch.AuraSpeechLM`) on an exported tiny run:
features, audio embedding and prompt ids against the JAX side, JAX ↔ torch
logit parity (merged and PEFT), greedy generation, `infer_main`, `parity_main`."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

PROMPT = "Transcribe the speech."


@pytest.fixture(scope="module")
def exported(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory):
    from aura_jax.torch.export import export

    return export(tiny_run_dir, tiny_qwen2_dir, tmp_path_factory.mktemp("runner") / "both", format="both",
                  dtype="float32")


@pytest.fixture(scope="module")
def student(tiny_run_dir):
    from aura_jax.training.checkpoint import restore_student

    return restore_student(tiny_run_dir)


@pytest.fixture(scope="module")
def lm(exported):
    from aura_jax.torch import AuraSpeechLM

    return AuraSpeechLM.from_pretrained(exported)


@pytest.fixture(scope="module")
def peft_lm(exported):
    from aura_jax.torch import AuraSpeechLM

    return AuraSpeechLM.from_pretrained(exported, variant="peft")


@pytest.fixture(scope="module")
def wave():
    from aura_jax.synth import synthesize

    return synthesize("one two three")


@pytest.fixture(scope="module")
def clip(wave, tmp_path_factory):
    import soundfile as sf

    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")  # lossless: same features as the waveform
    return path


def test_import_needs_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import aura_jax, aura_jax.torch, aura_jax.torch.infer\n"
            "try:\n    aura_jax.torch.AuraSpeechLM\nexcept ImportError:\n    print('lazy')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "lazy", out.stderr


def test_features_are_the_whisper_log_mel(lm, wave, clip):
    from aura_jax.audio import log_mel_spectrogram

    expected = log_mel_spectrogram(wave, 16000, 128)[:, :3000]
    for got in (lm.features(wave), lm.features(clip), lm.features(str(clip))):
        assert got.shape == (128, 3000) and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    # A waveform at another rate is resampled to 16 kHz first, as on the JAX side.
    import soxr

    at_8k = soxr.resample(wave, 16000, 8000)
    np.testing.assert_array_equal(lm.features(at_8k, sampling_rate=8000), log_mel_spectrogram(at_8k, 8000, 128))


def test_audio_embedding_equals_jax_on_real_features(lm, student, wave):
    _, model, _ = student
    mel = lm.features(wave)[None]
    ours = np.asarray(model.audio_embed(mel))
    with torch.no_grad():
        theirs = lm.audio_embed(torch.as_tensor(mel)).numpy()
    assert theirs.shape == (1, 300, 64)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_prepare_ids_and_splice_follow_the_contract(lm, student, wave, tiny_qwen2_dir):
    from aura_jax.tokenizer import ChatTokenizer

    config, model, _ = student
    tok = ChatTokenizer.from_pretrained(tiny_qwen2_dir, audio_token=config.prompt.audio_token)
    text = tok.render([{"role": "system", "content": config.prompt.system},
                       {"role": "user", "content": f"{config.prompt.audio_token} {PROMPT}"}], add_generation_prompt=True)
    before, after = text.split(config.prompt.audio_token)
    expected = tok.encode(before) + [tok.audio_token_id] + tok.encode(after)

    embeds, mask, ids = lm.prepare(wave, PROMPT)
    assert ids.tolist() == [expected] and lm.audio_token_id == tok.audio_token_id
    t, n = len(expected), 300
    assert embeds.shape == (1, t + n - 1, 64) and mask.shape == (1, t + n - 1) and bool(mask.all())
    at = expected.index(tok.audio_token_id)
    table = lm.model.get_input_embeddings().weight
    with torch.no_grad():
        audio = lm.audio_embed(torch.as_tensor(lm.features(wave)[None]))[0]
    assert torch.equal(embeds[0, :at], table[expected[:at]])
    assert torch.equal(embeds[0, at:at + n], audio)
    assert torch.equal(embeds[0, at + n:], table[expected[at + 1:]])


def test_system_prompt_comes_from_aura_config(exported, tmp_path, tiny_qwen2_dir):
    from aura_jax.tokenizer import ChatTokenizer
    from aura_jax.torch import AuraSpeechLM

    copy = tmp_path / "system"
    shutil.copytree(exported / "merged", copy)
    aura = json.loads((copy / "aura_config.json").read_text())
    (copy / "aura_config.json").write_text(json.dumps({**aura, "prompt": {**aura["prompt"], "system": "Be brief."}}))
    tok = ChatTokenizer.from_pretrained(tiny_qwen2_dir)
    text = tok.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<|audio|> Hi"}],
                      add_generation_prompt=True)
    before, after = text.split("<|audio|>")
    assert AuraSpeechLM.from_pretrained(copy).prompt_ids("Hi") == tok.encode(before) + [tok.audio_token_id] + tok.encode(after)


def test_merged_export_matches_the_jax_run(tiny_run_dir, exported):
    from aura_jax.torch.export_parity import check_export_parity

    report = check_export_parity(tiny_run_dir, exported, audio=None)
    assert report["tokens"] == report["audio_tokens"] + report["text_tokens"] and report["audio_tokens"] == 300
    assert report["kind"] == "merged" and report["dtype"] == "float32"
    assert report["max_abs_diff"] <= 1e-4 and report["argmax_agreement"] == 1.0


def test_peft_export_matches_merged_and_the_jax_run(tiny_run_dir, exported, lm, peft_lm, wave):
    from peft import PeftModel

    from aura_jax.torch.export_parity import check_export_parity

    assert isinstance(peft_lm.model, PeftModel) and not isinstance(lm.model, PeftModel)
    a, b = lm.logits(wave, PROMPT), peft_lm.logits(wave, PROMPT)
    assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-4
    assert (a - b).abs().max().item() > 0  # really two different code paths
    report = check_export_parity(tiny_run_dir, exported, audio=wave, variant="peft")
    assert report["kind"] == "peft" and report["max_abs_diff"] <= 1e-4


def test_peft_dir_alone_loads_its_base(exported, lm, wave):
    from aura_jax.torch import AuraSpeechLM

    alone = AuraSpeechLM.from_pretrained(exported / "peft")
    assert (alone.logits(wave, PROMPT) - lm.logits(wave, PROMPT)).abs().max().item() <= 1e-4


def test_generate_is_a_greedy_loop_over_logits(lm, wave):
    steps = 5
    [ids] = lm.generate_ids([wave], [PROMPT], max_new_tokens=steps)
    embeds, mask, _ = lm.prepare(wave, PROMPT)
    table, manual = lm.model.get_input_embeddings(), []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(lm.model(inputs_embeds=embeds).logits[0, -1].argmax())
            if nxt in lm.eos_token_ids:
                break
            manual.append(nxt)
            embeds = torch.cat([embeds, table(torch.as_tensor([[nxt]]))], dim=1)
    assert ids == manual and len(ids) >= 1
    text = lm.generate(wave, PROMPT, max_new_tokens=steps)
    assert isinstance(text, str) and text == lm.tokenizer.decode(manual, skip_special_tokens=True)


def test_generation_stops_at_eos(lm, wave):
    eos = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert eos in lm.eos_token_ids
    with torch.no_grad():
        first = int(lm.logits(wave, PROMPT)[0, -1].argmax())
    # Make the first greedy token an eos: generation ends with nothing to say.
    ids = lm.generate_ids([wave], [PROMPT], max_new_tokens=4, eos_token_id=[first])
    assert ids == [[]]


def test_batch_is_left_padded_and_equals_single_clips(lm, wave, clip):
    from aura_jax.synth import synthesize

    other = synthesize("hello there")
    prompts = [PROMPT, "What is the capital of France? Answer the question in one sentence."]
    embeds, mask, ids = lm.prepare_batch([wave, other], prompts)
    singles = [lm.prepare(wave, prompts[0]), lm.prepare(other, prompts[1])]
    lengths = [s[0].shape[1] for s in singles]
    assert lengths[0] != lengths[1] and embeds.shape[1] == max(lengths)
    with torch.no_grad():
        batch_logits = lm.model(inputs_embeds=embeds, attention_mask=mask).logits
    for row, (e, m, i) in enumerate(singles):
        n = e.shape[1]
        assert mask[row].tolist() == [0] * (embeds.shape[1] - n) + [1] * n
        assert ids[row, ids.shape[1] - i.shape[1]:].tolist() == i[0].tolist()
        with torch.no_grad():
            single = lm.model(inputs_embeds=e, attention_mask=m).logits[0]
        assert (batch_logits[row, -n:] - single).abs().max().item() <= 1e-4
    batch = lm.generate_batch([wave, other], prompts, max_new_tokens=4)
    assert batch == [lm.generate(wave, prompts[0], max_new_tokens=4), lm.generate(other, prompts[1], max_new_tokens=4)]
    assert lm.generate_batch([clip, wave], PROMPT, max_new_tokens=2)[0] == lm.generate(clip, PROMPT, max_new_tokens=2)


def test_generate_text_without_audio(lm):
    ids = lm.prompt_ids("What is the capital of France?", with_audio=False)
    assert lm.audio_token_id not in ids
    assert isinstance(lm.generate_text("What is the capital of France?", max_new_tokens=3), str)


def test_bidirectional_export_is_refused(exported, tmp_path):
    from aura_jax.torch import AuraSpeechLM

    copy = tmp_path / "bidir"
    shutil.copytree(exported / "merged", copy)
    aura = json.loads((copy / "aura_config.json").read_text())
    (copy / "aura_config.json").write_text(json.dumps({**aura, "bidirectional_audio": True}))
    with pytest.raises(NotImplementedError, match="causal attention only"):
        AuraSpeechLM.from_pretrained(copy)
    with pytest.raises(ValueError, match="variant"):
        AuraSpeechLM.from_pretrained(exported, variant="fused")
    with pytest.raises(FileNotFoundError, match="aura_config.json"):
        AuraSpeechLM.from_pretrained(tmp_path)


def test_token_id_mismatch_is_reported(tiny_run_dir, exported, tmp_path):
    from aura_jax.torch.export_parity import ParityError, check_export_parity

    copy = tmp_path / "other-template"
    shutil.copytree(exported / "merged", copy)
    template = copy / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|im_start|>assistant\n", "<|im_start|>assistant\nSure:"))
    with pytest.raises(ParityError, match="token ids differ .* at position"):
        check_export_parity(tiny_run_dir, copy)


def test_infer_main_prints_the_answer(exported, lm, clip, capsys):
    from aura_jax.torch.infer import infer_main

    args = argparse.Namespace(exported=str(exported), audio=str(clip), prompt=PROMPT, max_new_tokens=3, device="cpu")
    assert infer_main(args) == 0
    assert capsys.readouterr().out == lm.generate(clip, PROMPT, max_new_tokens=3) + "\n"


def test_parity_main_prints_and_fails_above_tol(tiny_run_dir, exported, capsys):
    from aura_jax.torch.export_parity import parity_main

    args = argparse.Namespace(run=str(tiny_run_dir), exported=str(exported), audio=None, prompt=PROMPT, step=None,
                              tol=1e-12)
    assert parity_main(args) == 1
    out = capsys.readouterr().out
    value = float(out.split("max_abs_diff=")[1].split()[0])
    assert 0 < value <= 1e-4 and "FAIL" in out
    assert parity_main(argparse.Namespace(**{**vars(args), "tol": 1e-4})) == 0
    assert "OK" in capsys.readouterr().out
