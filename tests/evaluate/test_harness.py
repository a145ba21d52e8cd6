"""`aura-jax eval` end to end on tiny models and fixture files in the hub layouts."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from aura_jax.cli import main
from aura_jax.evaluate.datasets import SDQA_DIALECTS
from aura_jax.synth import synthesize

AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def wav(text, voice="en-us"):
    buf = io.BytesIO()
    sf.write(buf, synthesize(text, voice=voice), 16000, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def sdqa_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdqa")
    questions = [("q1", "what is the capital of france", ["Paris"]), ("q2", "how many legs has a spider", ["eight", "8"])]
    cols = {d: pa.array([{"bytes": wav(q), "path": f"{i}-{d}.wav"} for i, (_, q, _) in enumerate(questions)], AUDIO)
            for d in SDQA_DIALECTS}
    pq.write_table(pa.table({"id": [q[0] for q in questions], "question": [q[1] for q in questions],
                             "answers": [q[2] for q in questions], **cols}), root / "dev-00000-of-00001.parquet")
    return root


def test_sdqa_aura_from_a_run_dir(tiny_run_dir, sdqa_dir, tmp_path, capsys):
    out = tmp_path / "sdqa"
    assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(sdqa_dir), "--batch-size", "8",
                 "--max-new-tokens", "6", "--out", str(out)]) == 0
    rows = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 22 and {r["dialect"] for r in rows} == set(SDQA_DIALECTS)
    assert set(rows[0]) == {"id", "dialect", "question", "prediction", "references", "scores"}
    table = (out / "results.md").read_text()
    header = table.splitlines()[0]
    assert all(d.upper() in header for d in SDQA_DIALECTS) and "| AVG |" in header and "latency" in header
    assert [l.split("|")[1].strip() for l in table.splitlines()[2:5]] == ["contains", "f1", "exact_match"]
    assert len(list(out.glob("*_outs.txt"))) == 11
    line = (out / "usa_outs.txt").read_text().splitlines()[0]
    assert line.startswith("q1[SEP_DIAL]\"\"\"") and line.rsplit("[SEP_DIAL]", 1)[1] in ("0.0", "1.0")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples_per_s"] > 0 and summary["instruction"] == "Give a simple one sentence answer."


def test_gold_and_cascade_baselines(tiny_run_dir, tiny_whisper_dir, sdqa_dir, tmp_path):
    for system, extra in (("gold", []), ("cascade", ["--whisper", str(tiny_whisper_dir)])):
        out = tmp_path / system
        assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(sdqa_dir), "--system", system,
                     "--limit", "4", "--batch-size", "4", "--max-new-tokens", "4", "--out", str(out), *extra]) == 0
        assert len((out / "predictions.jsonl").read_text().splitlines()) == 4
        assert (out / "results.csv").read_text().startswith("metric,")


def test_asr_on_an_export_reports_wer(tiny_run_dir, tiny_qwen2_dir, tmp_path):
    from aura_jax.torch.export import export
    from tests.data.datafiles import SENTENCES, mp3_bytes, speech, write_commonvoice

    cv = write_commonvoice(tmp_path / "cv", [(f"c{i}.mp3", s, mp3_bytes(speech(s))) for i, s in enumerate(SENTENCES[:2])])
    exported = export(tiny_run_dir, tiny_qwen2_dir, tmp_path / "exp", dtype="float32")
    out = tmp_path / "asr"
    assert main(["eval", str(exported), "--task", "asr", "--data", str(cv), "--batch-size", "2",
                 "--max-new-tokens", "4", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["table"]["wer"]["all"] > 0 and summary["instruction"] == "Transcribe the speech."


def test_bad_requests_are_one_line_errors(tiny_run_dir, sdqa_dir, capsys):
    assert main(["eval", str(tiny_run_dir), "--task", "asr", "--data", str(sdqa_dir), "--system", "gold"]) == 2
    assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(sdqa_dir), "--system", "cascade"]) == 2
    err = capsys.readouterr().err
    assert "gold needs text questions" in err and "cascade needs --whisper" in err


def test_cfm_and_pedants_columns_with_a_local_copy_of_qa_metrics_files(tiny_run_dir, sdqa_dir, qa_metrics_dir,
                                                                         tmp_path):
    out = tmp_path / "judged"
    assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(sdqa_dir), "--limit", "4",
                 "--batch-size", "4", "--max-new-tokens", "4", "--out", str(out),
                 "--qa-metrics-dir", str(qa_metrics_dir)]) == 0
    rows = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(set(r["scores"]) == {"cfm", "pedants", "contains", "f1", "exact_match"} for r in rows)
    assert all(r["scores"]["cfm"] in (0.0, 1.0) for r in rows)
    table = (out / "results.md").read_text()
    assert [l.split("|")[1].strip() for l in table.splitlines()[2:4]] == ["cfm", "pedants"]
    assert "CFM and PEDANTS by qa-metrics" in table
    first = rows[0]  # DiVA-Eval files carry the CFM judgment
    line = (out / f"{first['dialect']}_outs.txt").read_text().splitlines()[0]
    assert line.rsplit("[SEP_DIAL]", 1)[1] == str(first["scores"]["cfm"])


def test_without_qa_metrics_files_the_table_says_why_in_one_line(tiny_run_dir, sdqa_dir, tmp_path):
    out = tmp_path / "unjudged"
    assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(sdqa_dir), "--limit", "2",
                 "--batch-size", "2", "--max-new-tokens", "2", "--out", str(out)]) == 0
    note = [l for l in (out / "results.md").read_text().splitlines() if "CFM/PEDANTS not computed" in l]
    assert len(note) == 1


def test_streamed_eval_reports_the_front_end_difference_and_the_agreement_with_offline(tiny_run_dir, sdqa_dir,
                                                                                        tmp_path, capsys):
    offline, streamed = tmp_path / "offline", tmp_path / "streamed"
    common = ["--task", "sdqa", "--data", str(sdqa_dir), "--limit", "3", "--max-new-tokens", "4"]
    assert main(["eval", str(tiny_run_dir), *common, "--batch-size", "3", "--out", str(offline)]) == 0
    assert main(["eval", str(tiny_run_dir), *common, "--stream", "padded", "--chunk-patches", "7",
                 "--agree-with", str(offline), "--out", str(streamed)]) == 0
    summary = json.loads((streamed / "summary.json").read_text())
    st = summary["stream"]
    assert st["mode"] == "padded" and st["chunk_patches"] == 7 and summary["batch_size"] == 1
    assert st["log_mel_values_compared"] == 3 * 128 * 3000  # the tiny run's window: 128 mels × 3000 frames
    assert 0 < st["log_mel_values_differing"] < st["log_mel_values_compared"]  # espeak's leading silence
    ag = summary["agreement"]
    assert ag["compared"] == 3 and 0 <= ag["identical"] <= 3 and ag["with"] == str(offline)
    text = (streamed / "results.md").read_text()
    assert "the streaming log-mel differs from offline in" in text and "predictions identical" in text
    assert main(["eval", str(tiny_run_dir), *common, "--system", "gold", "--stream", "speech"]) == 2
    assert main(["eval", str(tiny_run_dir), *common, "--stream", "speech", "--agree-with", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "with --system aura" in err and "no predictions.jsonl there" in err


def test_a_run_trained_on_audio_buckets_hears_each_clip_at_its_bucket(tiny_run_dir, monkeypatch):
    """Offline eval pads a clip as training did: to the smallest of data.audio_buckets that holds it."""
    import numpy as np

    import aura_jax.inference.generate
    from aura_jax.audio import log_mel_spectrogram
    from aura_jax.evaluate.harness import JaxSystem, _decode, left_pad
    from aura_jax.inference.generate import generate_aura
    from aura_jax.tokenizer import audio_prompt_ids

    system = JaxSystem(str(tiny_run_dir), "aura", "Transcribe the speech.", 3, ["data.audio_buckets=[1000,3000]"])
    rng = np.random.default_rng(0)
    waves = [(rng.standard_normal(int(s * 16000)) * 0.1).astype(np.float32) for s in (12.0, 1.0)]
    heard = []
    monkeypatch.setattr(aura_jax.inference.generate, "generate_aura",
                        lambda model, ids, mask, mel, **kw: heard.append(mel.shape) or generate_aura(model, ids, mask,
                                                                                                  mel, **kw))
    got = system(waves, [None, None])
    monkeypatch.undo()
    assert heard == [(2, 128, 1000), (2, 128, 3000)]  # one call per bucket, at the batch's shape
    ids, mask = left_pad([audio_prompt_ids(system.tok, system.config, "Transcribe the speech.")], system.tok.pad_token_id)
    for wave, frames, answer in zip(waves, (3000, 1000), got):
        mel = log_mel_spectrogram(wave, 16000, 128)[None, :, :frames]
        out = generate_aura(system.model, ids, mask, mel, max_new_tokens=3, eos_token_id=[system.tok.eos_token_id],
                            pad_token_id=system.tok.pad_token_id)
        assert answer == _decode(system.tok, np.asarray(out)[0], system.tok.eos_token_id)


def test_the_eval_window_is_what_the_model_heard_in_training(tiny_run_dir):
    from aura_jax.evaluate.harness import resolve_target

    assert resolve_target(str(tiny_run_dir)).window_samples == 3000 * 160
    # trained on clips of at most 10 s: a longer clip is audio_too_long, not silently cut to 10 s
    assert resolve_target(str(tiny_run_dir), ["data.audio_buckets=[500,1000]"]).window_samples == 1000 * 160


def test_text_system_is_the_lora_adapted_llm_reading_the_question_and_gold_the_base_llm(tiny_run_dir, sdqa_dir,
                                                                                          tmp_path, monkeypatch):
    import aura_jax.inference.generate
    from aura_jax.evaluate.harness import JaxSystem

    used = []
    real = aura_jax.inference.generate.generate
    monkeypatch.setattr(aura_jax.inference.generate, "generate", lambda model, *a, **k: used.append(model) or real(model, *a, **k))
    item = type("Item", (), {"question": "what is the capital of france"})()
    text = JaxSystem(str(tiny_run_dir), "text", "Give a simple one sentence answer.", 2)
    gold = JaxSystem(str(tiny_run_dir), "gold", "Give a simple one sentence answer.", 2)
    text([None], [item]), gold([None], [item])
    assert used[0] is text.model.llm and used[1] is gold.base  # the student's LLM carries the LoRA adapters
    monkeypatch.undo()
    out = tmp_path / "text"
    assert main(["eval", str(tiny_run_dir), "--task", "sdqa", "--data", str(sdqa_dir), "--system", "text",
                 "--limit", "4", "--batch-size", "4", "--max-new-tokens", "4", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["system"] == "text"
    assert main(["eval", str(tiny_run_dir), "--task", "asr", "--data", str(sdqa_dir), "--system", "text"]) == 2
