"""`aura-jax aot`: the program `Trainer` runs, compiled for TPU slices and NVIDIA GPUs that are not
here, from config.json alone; its report; and the plugins staying out of every other command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from aura_jax.config import ConfigError, load_config
from aura_jax.tools import aot, hlo_stats
from aura_jax.tools import targets as tg
from aura_jax.training import sharding as shd

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")
PAPER = str(ROOT / "configs" / "aura_qwen2.5-7b_whisper-large-v3.yaml")
IN_CI = os.environ.get("CI") == "true"


def plugin_installed(platform: str) -> bool:
    folder = tg.plugins_dir() / ("tpu" if platform == "tpu" else "cuda")
    ok = (folder / ("libtpu" if platform == "tpu" else "jax_plugins")).exists()
    if not ok and IN_CI:
        pytest.fail(f"{folder}: CI installs the AOT plugins (scripts/setup_env.sh --aot)")
    return ok


needs_tpu = pytest.mark.skipif(not plugin_installed("tpu"), reason="libtpu not installed: setup_env.sh --aot")
needs_cuda = pytest.mark.skipif(not plugin_installed("cuda"), reason="CUDA plugin not installed: setup_env.sh --aot")


@pytest.fixture(scope="module")
def tiny_dirs(tiny_qwen2_dir, tiny_whisper_dir):
    return [f"model.llm={tiny_qwen2_dir}", f"model.teacher={tiny_whisper_dir}"]


def run_aot(args, tmp_path, *, strace: bool = False, timeout=600):
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "aura_jax.cli", "aot", *args, "--json", str(out), "--cache", ""]
    trace = tmp_path / "connect.trace"
    if strace:
        cmd = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *cmd]
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}  # the command sets what it needs
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc, trace


def network_connects(trace: Path) -> list[str]:
    return [line for line in trace.read_text().splitlines() if "AF_INET" in line]


# ---------------------------------------------------------------------------
# The same program as Trainer
# ---------------------------------------------------------------------------
def test_the_aot_path_compiles_the_program_trainer_runs(tiny_dirs):
    """On this CPU: `TrainCompiler` (abstract model, no weight read) and a concrete `Trainer` compile
    the identical optimised program, gradient accumulation included."""
    from aura_jax.data.examples import batch_shapes
    from aura_jax.training.train import Trainer

    config = load_config(TINY, [*tiny_dirs, "batch_size=4", "grad_accum_steps=2"])
    shapes = batch_shapes(4, 128, 3000, n_mels=128, teacher_segments=1)
    host = {k: np.zeros(shape, dtype) for k, (shape, dtype) in shapes.items()}
    concrete = Trainer(config, log=lambda *a: None)
    ran = concrete.compiled_step(shd.global_batch(host, concrete.mesh, concrete.rules))

    target = tg.TARGETS["h100x1"]  # only its name: the devices are this CPU's
    compiler = aot.TrainCompiler(config, target, jax.devices(), log=lambda *a: None)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(compiler.trainer.frozen))
    compiled = compiler.trainer.compiled_step(compiler.trainer.batch_spec(shapes))
    text = hlo_stats.program_text(compiled)
    assert "all-reduce" in text or "while" in text  # a real program, with its accumulation loop
    assert text == hlo_stats.program_text(ran)


def test_every_batch_shape_the_pipeline_makes_is_listed():
    config = load_config(PAPER, ["data.audio_buckets=[1000,3000]"])
    assert aot.text_lengths(config) == [64, 128, 192, 256, 320, 384, 448, 512]
    tiny = load_config(TINY)
    assert aot.text_lengths(tiny) == [128]


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------
def test_targets_by_name_and_raw_topology():
    assert tg.resolve_target("tpu-v5e-16").topology == "v5e:4x4"
    raw = tg.resolve_target("tpu:v5p:2x2x2/2")
    assert (raw.platform, raw.chip, raw.topology, raw.num_slices) == ("tpu", "v5p", "v5p:2x2x2", 2)
    assert tg.resolve_target("h200:1x2x8") == tg.Target("h200:1x2x8", "cuda", "h200", "1x2x8")
    with pytest.raises(ConfigError, match="--target 'a100x8'"):
        tg.resolve_target("a100x8")


def test_gpu_target_descriptions_ship_with_the_package():
    for name in ("h100_sxm.txtpb", "h200.txtpb"):
        text = (tg.GPU_SPECS / name).read_text()
        fields = [line.split(":")[0].strip() for line in text.splitlines() if not line.startswith("#")]
        assert "Source: XLA" in text and "collective_memory_granularity" not in fields
    h100 = (tg.GPU_SPECS / "h100_sxm.txtpb").read_text()
    assert f"device_memory_size: {tg.CHIPS['h100'].hbm_bytes}" in h100


DEVICES_SCRIPT = """
import json, sys
from aura_jax.tools import targets as tg
out = {}
for name, t in tg.TARGETS.items():
    if t.platform == sys.argv[1]:
        devs = tg.target_devices(t)
        out[name] = [len(devs), devs[0].device_kind]
print(json.dumps(out))
"""


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
def test_every_named_target_has_its_devices(platform):
    if not plugin_installed(platform):
        pytest.skip(f"{platform} plugin not installed: setup_env.sh --aot")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    proc = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT, platform], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {"tpu-v4-8": 4, "tpu-v5e-8": 8, "tpu-v5e-16": 16, "tpu-v5p-8": 4, "tpu-v6e-8": 8,
                "h100x1": 1, "h100x8": 8, "h200x1": 1, "h200x8": 8}
    for name, (count, kind) in found.items():
        assert count == expected[name], name
        assert kind.startswith(tg.TARGETS[name].spec.kind.split()[0]), (name, kind)
    assert set(found) == {n for n, t in tg.TARGETS.items() if t.platform == platform}


# ---------------------------------------------------------------------------
# The command, end to end, on a TPU slice and on GPUs
# ---------------------------------------------------------------------------
def check_train_report(report, *, devices, batch, accum=1):
    assert report["target"]["devices"] == devices and report["target"]["grad_accum_steps"] == accum
    (r,) = report["train"]
    m = r["memory"]
    for key in ("argument", "output", "temp", "alias", "total", "capacity", "headroom"):
        assert isinstance(m[key], int) and m[key] >= 0 or key == "headroom", key
    assert m["total"] == m["argument"] + m["output"] - m["alias"] + m["temp"] + m["code"]
    assert m["fits"] is True and m["headroom"] > 0
    assert r["batch"] == batch and r["text_tokens"] == 128 and r["audio_tokens"] == 300
    assert r["model_flops_per_step"] > 0 and r["xla"]["flops"] > 0
    assert r["model_flops_per_device"] == pytest.approx(r["model_flops_per_step"] / devices)
    e = r["estimate"]
    assert e["is_estimate"] is True and e["step_s"] > 0 and 0 < e["mfu"] < 1 and e["method"]
    return r


def needs_strace():
    if shutil.which("strace") is None:
        if IN_CI:
            pytest.fail("strace missing: scripts/setup_env.sh --aot installs it")
        pytest.skip("strace not installed")


@needs_tpu
def test_tpu_slice_report_without_any_network(tiny_dirs, tmp_path):
    needs_strace()
    report, proc, trace = run_aot([TINY, *tiny_dirs, "batch_size=16", "grad_accum_steps=2", "--target",
                                   "tpu-v5e-8"], tmp_path, strace=True)
    r = check_train_report(report, devices=8, batch=16, accum=2)
    assert report["target"]["device_kind"] == "TPU v5 lite" and report["target"]["mesh"]["data"] == 8
    assert r["collectives"]["all-reduce"]["count"] >= 1  # data-parallel gradient reduction
    assert "[est.]" in proc.stdout and "| text | audio |" in proc.stdout
    assert network_connects(trace) == []  # libtpu never looked for a metadata server


@needs_cuda
def test_gpu_report_and_inference_programs_without_any_network(tiny_dirs, tmp_path):
    needs_strace()
    report, proc, trace = run_aot([TINY, *tiny_dirs, "batch_size=8", "mesh.data=1", "mesh.fsdp=-1", "--target",
                                   "h100x8", "--inference", "--asr-tokens", "8", "--max-new-tokens", "4"], tmp_path,
                                  strace=True)
    assert network_connects(trace) == []
    r = check_train_report(report, devices=8, batch=8)
    assert "all-gather" in r["collectives"]  # FSDP gathers the frozen weights
    assert "roofline" in r["estimate"]["method"]
    inf = report["inference"]
    a, c = inf["aura"], inf["cascade"]
    llm_bytes = sum(int(np.prod(s)) * 4 for s in _llm_shapes(tiny_dirs))  # float32 tiny LLM
    h = 64  # the patch embedding (float32): projection of 128 mels x 10 frames, LayerNorm, 300 positions
    assert a["memory"]["weights"] == llm_bytes + 4 * (128 * 10 * h + h + 2 * h + 300 * h)  # no LoRA, no teacher
    assert c["weights"] == c["stages"]["whisper"]["memory"]["weights"] + c["stages"]["llm"]["memory"]["weights"]
    assert c["stages"]["llm"]["memory"]["weights"] == llm_bytes
    assert c["peak"] >= c["weights"] and inf["paper_gb"] == {"aura": 10.6, "cascade": 19.2}
    assert "AuRA (merged" in proc.stdout and "cascade (Whisper" in proc.stdout


def _llm_shapes(tiny_dirs):
    from aura_jax.hf import from_pretrained

    llm = from_pretrained(tiny_dirs[0].split("=", 1)[1], weights=False)
    from flax import nnx

    return [x.shape for x in jax.tree.leaves(nnx.state(llm))]


# ---------------------------------------------------------------------------
# Weightless directories for every preset; the plugins stay out of other commands
# ---------------------------------------------------------------------------
def test_config_only_presets_build_the_paper_model_abstractly(tmp_path):
    from aura_jax.random_checkpoints import PRESETS, make_random
    from aura_jax.training.train import Trainer

    for preset in PRESETS:
        out = make_random(preset, tmp_path / preset, config_only=True)
        assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
        assert not list(out.glob("*.safetensors")), preset
    config = load_config(PAPER, [f"model.llm={tmp_path / 'qwen2.5-7b-instruct'}",
                                 f"model.teacher={tmp_path / 'whisper-large-v3'}", "mesh.fsdp=1", "mesh.data=-1"])
    trainer = Trainer(config, abstract=True, devices=jax.devices()[:1], log=lambda *a: None)
    d, f, D, F = 3584, 18944, 1280, 5120
    whisper_layer = (4 * D * D + 3 * D) + (2 * D * F + F + D) + 2 * 2 * D  # attention, MLP, 2 LayerNorms
    whisper_stem = 128 * D * 3 + D + D * D * 3 + D + 1500 * D  # conv1, conv2, positions
    assert trainer.num_params["frozen"] == 7_615_616_512 + 4 * whisper_layer + whisper_stem  # Qwen2.5-7B + t(l)≤4
    lora = 256 * (2 * (d + d) + 2 * (d + 512) + 3 * (d + f))  # q, o; k, v (4 kv heads x 128); gate, up, down
    patch = 128 * 10 * d + d + 2 * d + 300 * d  # projection, LayerNorm, 300 positions
    head = d + (d * D + D) + (D * D + D)  # RMSNorm, Linear1, Linear2
    assert trainer.num_params["trainable"] == 4 * lora + patch + 4 * head == 122_876_416


def test_other_commands_never_see_the_plugins():
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "TPU_SKIP_MDS_QUERY")}
    proc = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend(), len(jax.devices()))"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0 and proc.stdout.split()[0] == "cpu"
    assert "TPU" not in proc.stderr and "libtpu" not in proc.stderr and "cuda" not in proc.stderr.lower()


def test_a_missing_plugin_or_unknown_target_is_one_line(tmp_path):
    env = dict(os.environ, AURA_AOT_PLUGINS=str(tmp_path / "none"))
    for target, message in (("tpu-v5e-8", "libtpu is not installed"), ("h200x8", "the jax CUDA plugin is not installed"),
                            ("a100x8", "--target 'a100x8'")):
        proc = subprocess.run([sys.executable, "-m", "aura_jax.cli", "aot", TINY, "--target", target],
                              capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert "setup_env.sh --aot" in proc.stderr or target == "a100x8"


def test_the_adapter_exports_inference_program_keeps_the_lora_and_its_audio_mask(tiny_dirs):
    """aot_inference's adapter variant (what a lora.audio_only run exports): the merged program's weights plus
    exactly K x sum over targets of r x (in + out) float32 LoRA values, counted from the LLM's config.json
    (compiled here for the CPU)."""
    import json as _json

    from aura_jax.tools import aot_inference as ai

    config = load_config(TINY, [*tiny_dirs, "model.random_init="])
    chip, cpu = tg.resolve_target("h100x8").spec, jax.devices("cpu")[0]
    shapes = ai.Shapes(prompt_tokens=16, max_new_tokens=2, audio_frames=config.audio.num_frames)
    merged = ai.compile_aura(config, cpu, shapes, chip, 0.9)
    adapter = ai.compile_aura(config, cpu, shapes, chip, 0.9, variant="adapter")
    c = _json.loads((Path(tiny_dirs[0].split("=", 1)[1]) / "config.json").read_text())
    h, f, heads, kv = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
    d = h // heads
    io = {"q_proj": (h, heads * d), "k_proj": (h, kv * d), "v_proj": (h, kv * d), "o_proj": (heads * d, h),
          "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}
    lora = config.lora.num_layers * sum(config.lora.rank * (i + o) for i, o in io.values()) * 4
    assert adapter["memory"]["weights"] - merged["memory"]["weights"] == lora > 0
    with pytest.raises(ValueError, match="variant"):
        ai.compile_aura(config, cpu, shapes, chip, 0.9, variant="peft")
