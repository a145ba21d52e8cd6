"""Configuration (`aura_jax.config`) and the checks made when an AuRA model is built.

Defaults are the paper's setup; YAML files inherit with `base:`; `key=value`
overrides reach nested keys and lists; every bad key, type or value is one
`ConfigError` whose message names the key (and the file, for YAML).
"""

from __future__ import annotations

import json
import re

import pytest

from aura_jax.build import load_aura
from aura_jax.config import Config, ConfigError, load_config
from aura_jax.hf import CheckpointError


# ---------------------------------------------------------------------------
# Defaults = the SPEC
# ---------------------------------------------------------------------------
def test_defaults_are_the_papers_setup():
    c = load_config(None)
    assert c == Config()
    assert c.lora.num_layers == 4  # K
    assert c.lora.rank == 256  # r
    assert c.lora.alpha is None and c.lora.scale_alpha == 512  # alpha = 2r
    assert c.lora.targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert c.audio.patch_frames == 10  # P
    assert c.audio.num_frames == 3000 and c.audio.num_audio_tokens == 300  # N
    assert c.audio.n_mels == 128 and c.audio.sampling_rate == 16000
    assert c.loss.lambda_cos == 1.0 and c.loss.lambda_mse == 1.0
    assert c.loss.ce_weight == 1.0 and c.loss.distill_weight == 1.0
    assert c.loss.ctc_weight == 0.0  # the auxiliary CTC (not the paper's) is off
    assert c.distill.teacher_layers == "low"
    assert c.distill.bidirectional_audio is False


def test_alpha_follows_the_rank_unless_set():
    assert load_config(None, ["lora.rank=128"]).lora.scale_alpha == 256
    assert load_config(None, ["lora.rank=128", "lora.alpha=16"]).lora.scale_alpha == 16


def test_to_dict_round_trips():
    from aura_jax.config import from_dict

    c = load_config(None, ["lora.rank=64", "distill.teacher_layers=[2,4,6,8]"])
    assert from_dict(Config, c.to_dict()) == c


# ---------------------------------------------------------------------------
# YAML files and overrides
# ---------------------------------------------------------------------------
def test_yaml_base_inheritance_is_relative_to_the_file_and_deep_merges(tmp_path):
    (tmp_path / "base.yaml").write_text("lora:\n  rank: 64\n  num_layers: 2\naudio:\n  patch_frames: 20\nseed: 7\n")
    (tmp_path / "exp").mkdir()
    child = tmp_path / "exp" / "child.yaml"
    child.write_text("base: ../base.yaml\nlora:\n  rank: 32\nloss:\n  lambda_mse: 0.5\n")
    c = load_config(child)
    assert c.lora.rank == 32  # the child wins
    assert c.lora.num_layers == 2  # a sibling key kept from the base
    assert c.audio.patch_frames == 20 and c.seed == 7
    assert c.loss.lambda_mse == 0.5 and c.loss.lambda_cos == 1.0  # untouched keys keep their defaults


def test_overrides_beat_the_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lora:\n  rank: 64\n")
    assert load_config(path, ["lora.rank=128"]).lora.rank == 128


def test_dotted_overrides_scalars_and_lists():
    c = load_config(None, ["lora.rank=128", "lora.targets=[q_proj,v_proj]", "distill.teacher_layers=[1,3]",
                           "distill.bidirectional_audio=true", "loss.lambda_cos=0.5", "seed=3"])
    assert c.lora.rank == 128
    assert c.lora.targets == ["q_proj", "v_proj"]
    assert c.distill.teacher_layers == [1, 3]
    assert c.distill.bidirectional_audio is True
    assert c.loss.lambda_cos == 0.5 and c.seed == 3


def test_the_index_one_past_a_lists_end_appends_and_further_is_an_error():
    two = ["data.speech.0.type=commonvoice", "data.speech.0.path=a", "data.speech.1.type=commonvoice",
           "data.speech.1.path=b", "data.speech.1.answer_column=answer", "data.speech.1.instruction=Answer it."]
    c = load_config(None, ["data.speech=[]", *two])
    assert [s.path for s in c.data.speech] == ["a", "b"] and c.data.speech[1].instruction == "Answer it."
    with pytest.raises(ConfigError, match="'3' is not an index of a list of 2"):
        load_config(None, ["data.speech=[]", *two, "data.speech.3.path=c"])


def test_integer_for_a_float_key_is_accepted_as_float():
    c = load_config(None, ["loss.lambda_mse=2"])
    assert c.loss.lambda_mse == 2.0 and isinstance(c.loss.lambda_mse, float)


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match="optimizr"):
        load_config(None, ["optimizr=3"])


def test_unknown_nested_key_is_named_as_typed():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["lora.rnak=3"])
    assert "lora.rnak" in str(e.value)


def test_unknown_key_in_a_yaml_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lora:\n  rank: 8\nmodle:\n  llm: x\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(path) in str(e.value) and "modle" in str(e.value)


def test_a_bad_command_line_override_is_blamed_on_the_command_line_not_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lora:\n  rank: 8\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["lora.rnk=4"])
    assert str(e.value).startswith("command-line override: unknown config key 'lora.rnk'")
    assert str(path) not in str(e.value)
    path.write_text("lora:\n  rnk: 8\n")  # the same mistake in the file names the file
    with pytest.raises(ConfigError, match=rf"^{path}: unknown config key 'lora.rnk'"):
        load_config(path, ["lora.rank=4"])


@pytest.mark.parametrize("override,key", [
    ("lora.rank=abc", "lora.rank"),
    ("lora.rank=1.5", "lora.rank"),
    ("lora.rank=true", "lora.rank"),
    ("distill.bidirectional_audio=maybe", "distill.bidirectional_audio"),
    ("loss.lambda_cos=abc", "loss.lambda_cos"),
    ("lora.alpha=abc", "lora.alpha"),
    ("lora.targets=q_proj", "lora.targets"),
    ("model.llm=[a,b]", "model.llm"),
])
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, [override])


def test_override_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="lora.rank"):
        load_config(None, ["lora.rank"])


def test_patch_frames_must_divide_the_frames():
    with pytest.raises(ConfigError, match=r"audio\.patch_frames"):
        load_config(None, ["audio.patch_frames=7"])


@pytest.mark.parametrize("override,key", [
    ("lora.num_layers=0", "lora.num_layers"),
    ("lora.rank=0", "lora.rank"),
    ("lora.targets=[q_proj,qv_proj]", "lora.targets"),
    ("loss.lambda_cos=-1", "loss.lambda_cos"),
    ("distill.teacher_layers=lowest", "distill.teacher_layers"),
    ("model.param_dtype=float8", "model.param_dtype"),
    ("audio.num_frames=4000", "audio.num_frames"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, [override])


def test_both_loss_weights_zero_is_an_error():
    assert load_config(None, ["loss.ce_weight=0"]).loss.ce_weight == 0  # either alone is an ablation
    assert load_config(None, ["loss.distill_weight=0"]).loss.distill_weight == 0
    with pytest.raises(ConfigError, match=r"loss\.ce_weight.*loss\.distill_weight"):
        load_config(None, ["loss.ce_weight=0", "loss.distill_weight=0"])


@pytest.mark.parametrize("value", ["-0.1", "nan", "inf", ".inf"])
def test_ctc_weight_must_be_finite_and_non_negative(value):
    assert load_config(None, ["loss.ctc_weight=0.3"]).loss.ctc_weight == 0.3
    with pytest.raises(ConfigError, match=r"loss\.ctc_weight=.* must be a finite number >= 0"):
        load_config(None, [f"loss.ctc_weight={value}"])


def test_ctc_alone_is_something_to_train():
    assert load_config(None, ["loss.ce_weight=0", "loss.distill_weight=0", "loss.ctc_weight=1"]).loss.ctc_weight == 1
    with pytest.raises(ConfigError, match=r"loss\.ce_weight.*loss\.distill_weight.*loss\.ctc_weight"):
        load_config(None, ["loss.ce_weight=0", "loss.distill_weight=0", "loss.ctc_weight=0"])


def test_missing_yaml_file_names_the_path(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


def test_missing_base_file_names_the_base_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: missing-base.yaml\n")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "missing-base.yaml"))):
        load_config(path)


def test_base_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="base"):
        load_config(tmp_path / "a.yaml")


def test_invalid_yaml_message_includes_the_file_path(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("lora:\n  rank: [1, 2\n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


def test_yaml_whose_top_level_is_not_a_mapping_names_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


def test_wrong_type_in_a_yaml_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lora:\n  rank: abc\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(path) in str(e.value) and "lora.rank" in str(e.value)


# ---------------------------------------------------------------------------
# Checks made when the model is built (they need the checkpoints)
# ---------------------------------------------------------------------------
def build(tiny_aura_config, *overrides):
    return load_aura(load_config(None, [*tiny_aura_config, *overrides]))


def test_more_lora_layers_than_the_llm_has_names_lora_num_layers(tiny_aura_config, tiny_qwen2_dir):
    depth = json.loads((tiny_qwen2_dir / "config.json").read_text())["num_hidden_layers"]
    with pytest.raises(ConfigError) as e:
        build(tiny_aura_config, f"lora.num_layers={depth + 5}")
    rest = str(e.value).replace(str(tiny_qwen2_dir), "")  # the path may contain digits
    assert "lora.num_layers" in rest and re.search(rf"\b{depth}\b", rest)


def test_teacher_layer_beyond_the_teacher_names_the_layer_and_depth(tiny_aura_config, tiny_whisper_dir):
    depth = json.loads((tiny_whisper_dir / "config.json").read_text())["encoder_layers"]
    bad = depth + 3
    with pytest.raises(ConfigError) as e:
        build(tiny_aura_config, f"distill.teacher_layers=[1,{bad}]")
    message = str(e.value).replace(str(tiny_whisper_dir), "")  # the path may contain digits
    assert "distill.teacher_layers" in message
    assert re.search(rf"\b{bad}\b", message) and re.search(rf"\b{depth}\b", message)


def test_teacher_schedule_of_the_wrong_length_names_the_key(tiny_aura_config):
    with pytest.raises(ConfigError, match=r"distill\.teacher_layers"):
        build(tiny_aura_config, "distill.teacher_layers=[1,2,3]")  # K=2


def test_missing_llm_directory_names_the_path(tiny_aura_config):
    with pytest.raises((ConfigError, CheckpointError), match="/nonexistent"):
        build(tiny_aura_config, "model.llm=/nonexistent")


def test_missing_teacher_directory_names_the_path(tiny_aura_config):
    with pytest.raises((ConfigError, CheckpointError), match="/nonexistent-teacher"):
        build(tiny_aura_config, "model.teacher=/nonexistent-teacher")


def test_unset_llm_names_model_llm():
    with pytest.raises(ConfigError, match=r"model\.llm"):
        load_aura(load_config(None))


def test_distill_weight_zero_builds_without_a_teacher(tiny_aura_config):
    model = build(tiny_aura_config, "loss.distill_weight=0", "model.teacher=/nonexistent-teacher")
    assert model.teacher is None


def test_teacher_has_exactly_as_many_layers_as_the_deepest_paired_layer(tiny_aura_config):
    model = build(tiny_aura_config, "distill.teacher_layers=[1,3]")
    assert len(model.teacher.layers) == 3
    assert model.teacher.layer_norm is None  # a truncated encoder has no final norm
