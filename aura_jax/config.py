"""Configuration: a tree of typed dataclasses, loaded from YAML, overridden by
`key=value` (dotted keys, MaxText style), validated once with messages that name
the key. The resolved config is plain data (`to_dict`) and is saved with a run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad configuration value; the message names the key (and file)."""


# Frozen backbone: FSDP over "embed"-like dims, tensor parallel over heads/mlp/vocab.
# Trainables (LoRA ranks, audio tokens, heads) replicate on the axes they don't name.
DEFAULT_SHARDING_RULES = {
    "batch": ["data", "fsdp"],
    "embed": "fsdp",
    "vocab": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "norm": None,
    "conv_in": None,
    "lora_rank": None,
    "audio_patch": None,
    "audio_tokens": None,
    "head_mlp": "tensor",
    "teacher_embed": None,
}


@dataclasses.dataclass
class ModelConfig:
    llm: str = ""  # Hugging Face Qwen2 directory (the frozen student backbone)
    teacher: str = ""  # Hugging Face Whisper directory (the frozen teacher)
    param_dtype: str = "float32"  # frozen weights (bfloat16 at scale)
    compute_dtype: str = "float32"
    # "" (dots in the compute dtype) or "bfloat16": the frozen LLM's and teacher's weight dots take
    # bf16 operands and give f32 results, forward and backward (models/layers.py `bf16_dot`; on an
    # AVX512-BF16 CPU 2-3.8× an f32 dot). Activations, norms, softmax and the trainables stay f32.
    dot_dtype: str = ""
    # With dot_dtype=bfloat16, the training step's frozen dot weights are stored once in bf16 (the same
    # bits the step rounds them to; no per-step converts). false: keep them as loaded and round them in
    # every step (the slower, bit-identical step this replaced; for measurements).
    store_dot_weights: bool = True
    # "tiny": when model.llm / model.teacher do not exist yet, build random tiny checkpoints there
    # (for the tiny config and tests; real runs point at downloaded Hugging Face directories).
    random_init: str = ""
    # Speed features (docs/BENCHMARKS.md, "Speed features"); the defaults are the plain step.
    truncate_teacher: bool = True  # build the teacher only up to the deepest paired layer (false: all layers run)
    remat: str = "none"  # none | full | dots_saveable | dots_with_no_batch_dims_saveable: per student decoder layer
    # xla (explicit einsum softmax) | dot_product (jax.nn.dot_product_attention: cuDNN on GPU) |
    # looped (one example and kv head at a time: XLA:CPU keeps the scores in cache; serial elsewhere)
    attention: str = "xla"
    scan_layers: bool = False  # frozen decoder layers above K run as one lax.scan (experimental; see BENCHMARKS)


@dataclasses.dataclass
class AudioConfig:
    sampling_rate: int = 16000
    n_mels: int = 128
    num_frames: int = 3000  # mel frames the student sees (30 s)
    patch_frames: int = 10  # P: frames per audio token; N = num_frames / P
    teacher_segments: int = 1  # 30 s segments the teacher sees per sample (longer clips)
    # Mel frames of the teacher's window. Whisper was trained on 30 s windows only: 3000 is the
    # paper's. A teacher trained on short windows (the toy demo's) may run on fewer, and "bucket"
    # runs it on the student's own bucket (positions sliced, as whisper.cpp's audio_ctx does): the
    # teacher on a 30 s window is the padding-heavy part of a short clip's step (docs/DEMO.md).
    teacher_frames: int | str = 3000

    @property
    def num_audio_tokens(self) -> int:
        return self.num_frames // self.patch_frames


@dataclasses.dataclass
class LoraConfig:
    num_layers: int = 4  # K: adapt the first K decoder layers
    rank: int = 256
    alpha: float | None = None  # None → 2·rank
    # Beyond the paper (opt-in): the adapters act at audio positions only, so every text position
    # computes exactly what the base LLM computes (text answers stay the base's). No merged kernel
    # can express that: such a run is served by the JAX model, not exported (aura_jax.models.lora).
    audio_only: bool = False
    targets: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

    @property
    def scale_alpha(self) -> float:
        return float(2 * self.rank if self.alpha is None else self.alpha)


@dataclasses.dataclass
class DistillConfig:
    teacher_layers: Any = "low"  # low | mid | high | progressive | explicit list of 1-based teacher layers
    head_hidden: int | None = None  # None → teacher width
    bidirectional_audio: bool = False  # audio tokens attend to each other both ways (VoRA); paper: causal
    # With bidirectional_audio: 0 = across the whole audio span; C > 0 = only within chunks of C audio
    # tokens counted from the clip's first patch, so a stream that prefills C (or a multiple of C)
    # patches at a time computes exactly what training computed (beyond the paper, opt-in).
    bidirectional_chunk: int = 0


@dataclasses.dataclass
class LossConfig:
    ce_weight: float = 1.0  # 0 → distill-only ablation
    distill_weight: float = 1.0  # β; 0 → CE-only ablation
    lambda_cos: float = 1.0
    lambda_mse: float = 1.0
    # Soundwave's (arXiv 2502.12900) auxiliary CTC over the LLM's vocabulary on the layer-K audio
    # states (training/loss.py `audio_ctc`); not in the paper: 0 → the paper's recipe, unchanged.
    ctc_weight: float = 0.0
    # A text teacher (DiVA arXiv 2410.02678, BLSP-KD 2405.19041): KL from the frozen LLM reading the
    # spoken words as text to the student hearing them, at every target token (training/loss.py
    # `text_teacher_kl`); needs lora.audio_only. Not in the paper: 0 → the paper's recipe, unchanged.
    text_teacher_weight: float = 0.0


@dataclasses.dataclass
class PromptConfig:
    audio_token: str = "<|audio|>"
    system: str = "You are a helpful assistant."
    asr_instruction: str = "Transcribe the speech."


@dataclasses.dataclass
class SourceConfig:
    """One data source. type: commonvoice | parquet | qa_jsonl | synthetic."""

    type: str = ""
    path: str = ""  # commonvoice: release dir (TSV + clips/); parquet: file or dir; qa_jsonl: file
    tsv: str = "validated.tsv"  # commonvoice: which TSV inside `path`
    audio_column: str = "audio"  # parquet
    text_column: str = "sentence"  # parquet
    num_rows: int = 64  # synthetic: how many rows to make
    seed: int = 0  # synthetic: rows are a function of (seed, row), independent of the run seed
    limit: int | None = None  # use at most this many rows (after reading, before shuffling)
    # commonvoice: spoken instructions instead of ASR. Each clip is the user's question; the row's
    # prompt is "<audio> {instruction}" and its target is this TSV column (e.g. the LLM's own answer
    # to the question read as text). "" = ASR rows (the transcript is the target).
    answer_column: str = ""
    instruction: str = ""


@dataclasses.dataclass
class DataConfig:
    speech: list[SourceConfig] = dataclasses.field(default_factory=list)  # ASR pairs
    text: list[SourceConfig] = dataclasses.field(default_factory=list)  # text-only QA pairs
    speech_fraction: float | None = None  # share of speech rows in the mix; None → natural proportions
    max_text_tokens: int = 512  # prompt + answer tokens per row (longer rows are skipped, counted)
    text_bucket: int = 64  # text length is padded up to a multiple of this (few compiled shapes)
    audio_buckets: list[int] = dataclasses.field(default_factory=lambda: [3000])  # student mel frames per batch
    strict: bool = False  # bad rows are fatal instead of skipped-and-counted
    shuffle: bool = True
    cache_dir: str = ""  # where row scans (durations, bad rows) are cached; "" → run_dir/data_cache
    worker_threads: int = 4  # threads for the audio scan and for building batches
    prefetch_batches: int = 4  # batches built ahead (and at most this many built in parallel)


@dataclasses.dataclass
class PerturbConfig:
    """Speaker perturbation of each training clip (beyond the paper; all off by default). Drawn from
    (seed, step, row) alone, so a resumed run draws what it would have drawn, and every process the
    same; the student and the teacher hear the same perturbed clip (`aura_jax.data.perturb`)."""

    vtlp: float = 0.0  # VTLP: the mel filter bank's frequency axis warped by α ~ U[1 - vtlp, 1 + vtlp] (0.1: the paper's)
    pitch_semitones: float = 0.0  # pitch shifted by U[-s, s] semitones, duration kept
    freq_masks: int = 0  # SpecAugment: this many bands of up to freq_width mel bins set to the clip's mean
    freq_width: int = 0
    time_masks: int = 0  # ... and this many spans of up to time_width frames, within the clip's heard frames
    time_width: int = 0

    @property
    def active(self) -> bool:
        return bool(self.vtlp or self.pitch_semitones or (self.freq_masks and self.freq_width)
                    or (self.time_masks and self.time_width))


@dataclasses.dataclass
class OptimConfig:
    learning_rate: float = 1e-4
    warmup_steps: int = 100
    # After the warm-up: "constant" (the paper) or "cosine" (down to final_lr_ratio × learning_rate at the
    # run's last step).
    schedule: str = "constant"
    final_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0  # global-norm clipping; 0 disables
    # LoRA+ (arXiv 2402.12354), beyond the paper: LoRA's B matrices learn at this many times the
    # learning rate (A, the patch embedding and the heads at the rate itself). 1 = the paper's AdamW.
    lora_b_lr_ratio: float = 1.0
    # Beyond the paper: for this many first steps only the audio patch embedding moves (LoRA and the
    # distillation heads keep their initial values; their AdamW moments still see the gradients).
    patch_warmup_steps: int = 0
    max_consecutive_skips: int = 50  # non-finite steps in a row before the run stops with an error


@dataclasses.dataclass
class CurveConfig:
    """Learning curves during training (aura_jax.evaluate.curve): every `every` steps (0: off) the student
    transcribes the first `limit` usable clips of each named ASR set (as `aura-jax eval --task asr --data`
    reads them) and its WER goes to run_dir/curve.jsonl. patience > 0: stop once the first set's WER has
    not improved by `min_delta` points over `patience` evaluations."""

    every: int = 0
    sets: dict[str, str] = dataclasses.field(default_factory=dict)  # name → ASR set path
    limit: int = 48
    batch_size: int = 16
    max_new_tokens: int = 32
    patience: int = 0
    min_delta: float = 1.0


@dataclasses.dataclass
class DistributedConfig:
    """Multi-process JAX. Empty coordinator + enabled=false: single process.
    enabled=true with no coordinator: jax.distributed auto-detects (TPU pods, SLURM)."""

    enabled: bool = False
    coordinator_address: str = ""  # host:port of process 0
    num_processes: int | None = None
    process_id: int | None = None
    cpu_collectives: str = ""  # "gloo" for multi-process CPU (tests)


@dataclasses.dataclass
class MeshConfig:
    data: int = -1  # -1: fill with the remaining devices
    fsdp: int = 1
    tensor: int = 1


@dataclasses.dataclass
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    prompt: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    perturb: PerturbConfig = dataclasses.field(default_factory=PerturbConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    curve: CurveConfig = dataclasses.field(default_factory=CurveConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    # Logical axis name → mesh axis (or list of mesh axes, or null = replicated).
    sharding_rules: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SHARDING_RULES))
    run_dir: str = ""
    seed: int = 0
    steps: int | None = None  # total optimizer steps; overrides epochs
    epochs: float = 3.0
    batch_size: int = 128  # global batch (all processes): one optimizer step
    # Gradient accumulation: the step runs the global batch as this many micro-batches of
    # batch_size / grad_accum_steps rows (a lax.scan, one compiled program) and updates once;
    # the update equals the one-big-batch update. Data order and checkpoints are unaffected.
    grad_accum_steps: int = 1
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    # A resume whose latest checkpoint does not restore falls back to the newest one that does
    # (the broken one is moved to run_dir/checkpoints_unrestorable/, never deleted); false: stop.
    checkpoint_fallback: bool = True
    # Keys a resume may change on purpose although they change the optimisation (optim.*, loss.*,
    # the dtypes), e.g. resume_allow=[optim.learning_rate]. Keys that shape the state or the data
    # order can never change within a run (aura_jax.training.preflight).
    resume_allow: list[str] = dataclasses.field(default_factory=list)
    log_every: int = 1
    # Persistent XLA compilation cache ("" disables): a rerun or resume skips recompiling.
    compilation_cache_dir: str = "~/.cache/aura_jax/xla"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# dict/YAML → dataclasses
# ---------------------------------------------------------------------------
def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check/convert one value against its annotation; raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    return value


def from_dict(cls, data: dict | None, prefix: str = ""):
    """Build dataclass `cls` from `data`; unknown keys and bad types are errors naming the key."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where + unknown[0]!r} (known: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name)
              for name, value in data.items()}
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=3' → (['a', 'b'], 3); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}: cannot parse value {raw!r} ({e})") from None
    return key.strip().split("."), value


def merge_override(data: dict, path: list[str], value: Any) -> None:
    """Set data[path] = value; a numeric part indexes a list (data.speech.0.path=...), and the index
    one past its end appends (data.speech.1.type=commonvoice adds a second speech source)."""
    node = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) > len(node):
                raise ConfigError(f"override {'.'.join(path)}: {part!r} is not an index of a list of {len(node)} "
                                  f"(nor {len(node)}, which appends)")
            if int(part) == len(node):
                node.append({})
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {'.'.join(path)}: {path[i - 1]!r} is not a section")


def load_config(path: str | Path | None = None, overrides: list[str] = (), cls=Config):
    """Load YAML (with optional `base: other.yaml`, relative to the file), apply overrides, validate."""
    data = _load_yaml(Path(path)) if path is not None else {}
    try:  # the file alone first, so that an error is blamed on the file only when it is in the file
        from_dict(cls, copy.deepcopy(data))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    for text in overrides:
        merge_override(data, *parse_override(text))
    try:
        config = from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"command-line override: {e}") from None
    validate(config)
    return config


def _load_yaml(path: Path, seen: tuple = ()) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / base).resolve()
    if base_path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to {base_path}")
    merged = _load_yaml(base_path, seen + (base_path,))
    _deep_update(merged, data)
    return merged


def _deep_update(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value


REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
ATTENTION_IMPLS = ("xla", "dot_product", "looped")  # the model's attention kernels (models/qwen2.py, whisper.py)


def validate(config: Config) -> None:
    """Checks that need no model files (those that do happen when models load)."""
    if config.model.remat not in REMAT_POLICIES:
        raise ConfigError(f"model.remat={config.model.remat!r}: use one of {', '.join(REMAT_POLICIES)}")
    if config.model.attention not in ATTENTION_IMPLS:
        raise ConfigError(f"model.attention={config.model.attention!r}: use one of {', '.join(ATTENTION_IMPLS)}")
    pt = config.perturb
    if not 0 <= pt.vtlp < 0.5:
        raise ConfigError(f"perturb.vtlp={pt.vtlp}: the warp factor's half-range, in [0, 0.5) (0.1: α in [0.9, 1.1])")
    if not 0 <= pt.pitch_semitones <= 12:
        raise ConfigError(f"perturb.pitch_semitones={pt.pitch_semitones}: in [0, 12]")
    for key in ("freq_masks", "freq_width", "time_masks", "time_width"):
        if getattr(pt, key) < 0:
            raise ConfigError(f"perturb.{key}={getattr(pt, key)}: must be >= 0")
    if pt.freq_width >= config.audio.n_mels:
        raise ConfigError(f"perturb.freq_width={pt.freq_width}: must be below audio.n_mels={config.audio.n_mels}")
    a = config.audio
    if a.patch_frames < 1 or a.num_frames % a.patch_frames:
        raise ConfigError(f"audio.patch_frames={a.patch_frames} must divide audio.num_frames={a.num_frames}")
    if a.num_frames > 3000 or a.num_frames < 1:
        raise ConfigError(f"audio.num_frames={a.num_frames} must be in 1..3000 (30 s at 100 frames/s)")
    if a.sampling_rate != 16000:
        raise ConfigError(f"audio.sampling_rate={a.sampling_rate}: Whisper features need 16000")
    if a.teacher_frames == "bucket":
        odd = [b for b in config.data.audio_buckets if b % 2] + ([a.num_frames] if a.num_frames % 2 else [])
        if odd:
            raise ConfigError(f"audio.teacher_frames=bucket needs even buckets (Whisper's stem halves them): {odd}")
        if a.teacher_segments > 1:
            raise ConfigError("audio.teacher_frames=bucket needs audio.teacher_segments=1 (segments are 30 s windows)")
    elif isinstance(a.teacher_frames, str):
        raise ConfigError(f"audio.teacher_frames={a.teacher_frames!r}: a number of mel frames or 'bucket'")
    elif not 2 <= a.teacher_frames <= 3000 or a.teacher_frames % 2:
        raise ConfigError(f"audio.teacher_frames={a.teacher_frames} must be even and in 2..3000")
    elif a.teacher_frames < 3000 and a.teacher_segments > 1:
        raise ConfigError("audio.teacher_frames < 3000 needs audio.teacher_segments=1 (segments are 30 s windows)")
    if a.teacher_segments < 1:
        raise ConfigError(f"audio.teacher_segments={a.teacher_segments} must be >= 1")
    if config.lora.num_layers < 1:
        raise ConfigError(f"lora.num_layers={config.lora.num_layers} must be >= 1")
    if config.lora.rank < 1:
        raise ConfigError(f"lora.rank={config.lora.rank} must be >= 1")
    allowed = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    bad = [t for t in config.lora.targets if t not in allowed]
    if bad or not config.lora.targets:
        raise ConfigError(f"lora.targets: unknown projection {bad[0] if bad else '(empty)'!r} "
                          f"(allowed: {', '.join(sorted(allowed))})")
    tl = config.distill.teacher_layers
    if not (tl in ("low", "mid", "high", "progressive") or
            (isinstance(tl, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in tl))):
        raise ConfigError(f"distill.teacher_layers={tl!r}: use low, mid, high, progressive or a list of integers")
    dc = config.distill
    if dc.bidirectional_chunk < 0 or (dc.bidirectional_chunk and not dc.bidirectional_audio):
        raise ConfigError(f"distill.bidirectional_chunk={dc.bidirectional_chunk}: a number of audio tokens >= 1 "
                          "with distill.bidirectional_audio=true (0: the whole span)")
    lo = config.loss
    for name in ("ce_weight", "distill_weight", "lambda_cos", "lambda_mse"):
        if getattr(lo, name) < 0:
            raise ConfigError(f"loss.{name}={getattr(lo, name)} must be >= 0")
    # (`< 0` alone would let nan through, and an infinite weight makes every step non-finite)
    if not (math.isfinite(lo.ctc_weight) and lo.ctc_weight >= 0):
        raise ConfigError(f"loss.ctc_weight={lo.ctc_weight} must be a finite number >= 0 (0: no CTC, the paper's loss)")
    if not (math.isfinite(lo.text_teacher_weight) and lo.text_teacher_weight >= 0):
        raise ConfigError(f"loss.text_teacher_weight={lo.text_teacher_weight} must be a finite number >= 0 "
                          "(0: no text teacher, the paper's loss)")
    if lo.text_teacher_weight > 0 and not config.lora.audio_only:
        raise ConfigError("loss.text_teacher_weight > 0 needs lora.audio_only=true: the text teacher is the frozen "
                          "LLM reading the words, and adapters that act at every position change the LLM that reads text")
    if lo.ce_weight == 0 and lo.distill_weight == 0 and lo.ctc_weight == 0 and lo.text_teacher_weight == 0:
        raise ConfigError("loss.ce_weight, loss.distill_weight, loss.ctc_weight and loss.text_teacher_weight are all "
                          "0: nothing to train")
    if not (math.isfinite(config.optim.lora_b_lr_ratio) and config.optim.lora_b_lr_ratio > 0):
        raise ConfigError(f"optim.lora_b_lr_ratio={config.optim.lora_b_lr_ratio} must be a finite number > 0 "
                          "(1: the paper's single learning rate)")
    if config.optim.patch_warmup_steps < 0:
        raise ConfigError(f"optim.patch_warmup_steps={config.optim.patch_warmup_steps} must be >= 0 (0: off)")
    if config.steps is not None and config.steps < 1:
        raise ConfigError(f"steps={config.steps} must be >= 1 (or null to use epochs)")
    if config.epochs <= 0:
        raise ConfigError(f"epochs={config.epochs} must be > 0")
    for name in ("batch_size", "grad_accum_steps", "checkpoint_every", "keep_checkpoints", "log_every"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}={getattr(config, name)} must be >= 1")
    if config.batch_size % config.grad_accum_steps:
        raise ConfigError(f"grad_accum_steps={config.grad_accum_steps} must divide batch_size={config.batch_size}")
    d = config.data
    if any(b < 1 or b > a.num_frames or b % a.patch_frames for b in d.audio_buckets) or not d.audio_buckets:
        raise ConfigError(f"data.audio_buckets={d.audio_buckets}: each must be a multiple of audio.patch_frames="
                          f"{a.patch_frames} in 1..audio.num_frames={a.num_frames}")
    if d.speech_fraction is not None and not 0 < d.speech_fraction <= 1:
        raise ConfigError(f"data.speech_fraction={d.speech_fraction} must be in (0, 1]")
    for kind, sources in (("speech", d.speech), ("text", d.text)):
        for i, src in enumerate(sources):
            if src.answer_column and (kind != "speech" or src.type != "commonvoice"):
                raise ConfigError(f"data.{kind}.{i}.answer_column: only commonvoice speech sources take one")
            if bool(src.answer_column) != bool(src.instruction.strip()):
                raise ConfigError(f"data.{kind}.{i}: answer_column and instruction go together (a spoken "
                                  f"question needs the instruction its answer follows)")
    if lo.ctc_weight > 0 and any(src.answer_column for src in d.speech):
        raise ConfigError("loss.ctc_weight > 0 with a spoken-question source (data.speech.*.answer_column): CTC's "
                          "labels are the CE targets, which there are answers, not transcripts")
    if config.model.random_init not in ("", "tiny"):
        raise ConfigError(f"model.random_init={config.model.random_init!r}: use '' or 'tiny'")
    for name in ("param_dtype", "compute_dtype"):
        if getattr(config.model, name) not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.{name}={getattr(config.model, name)!r}: use float32, bfloat16 or float16")
    if config.model.dot_dtype not in ("", "bfloat16"):
        raise ConfigError(f"model.dot_dtype={config.model.dot_dtype!r}: use '' (the compute dtype) or bfloat16")
