"""Model FLOPs of one AuRA training step, as the step actually computes them.

Pure arithmetic from the config shapes (no JAX, no weights). One multiply-add
is 2 FLOPs; a matmul [m, k] x [k, n] costs 2·m·k·n. Everything is counted at
the padded shapes the compiled step runs (padding tokens, text-only rows and
masked attention entries are computed, so they are counted). Elementwise work
(norms, activations, softmax, RoPE, masks, the optimizer update) is NOT counted:
it is small next to the matmuls at real sizes, and it is what separates this
count from XLA's own (`compiled.cost_analysis()['flops']`, checked in
tests/bench/test_train.py).

Notation: B rows, T text slots (input_ids width), N = L/P audio tokens, so the
student sequence is S = T + N − 1; LLM width d, MLP width I, ℓ layers, H query
heads and H_kv key/value heads of size h_d, vocabulary V; LoRA on the first K
layers with rank r on the chosen projections; heads d → d_h → D_t; teacher
width D, MLP width F, depth t_max (the deepest paired teacher layer: the only
part of Whisper the step runs), 3000 input frames → 1500 positions, B·G
sequences (G teacher segments per row).

Student forward (all ℓ layers over all S positions):
  matmuls     2·B·S·ℓ·P_layer + 2·B·(T−1)·d·V   P_layer = d·H·h_d + 2·d·H_kv·h_d + H·h_d·d + 3·d·I
              (the LM head only where a text token is predicted: T − 1 positions a row)
  attention   ℓ · 4·B·S²·H·h_d             QKᵀ and PV, causal mask applied, full S² computed
  LoRA        2·B·S·Σ_adapted r·(in + out)
  patch embed 2·B·N·(M·P)·d
  heads       K · 2·B·N·(d·d_h + d_h·D_t)
Student backward. The CE loss sits on top of layer ℓ and the patch embedding
under layer 1 is trainable, so activation gradients flow through EVERY layer
(not only the first K) and through the LM head; the heads add gradients into
the outputs of layers 1..K on the way down:
  activation gradients  = forward cost of the frozen matmuls, the LM head, LoRA
                          and the heads (dX = dY·Wᵀ costs what Y = X·W costs);
                          the attention core costs 2× its forward (dP = dO·Vᵀ,
                          dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q: both operands are
                          activations); the patch embedding input is data (no dX)
  weight gradients      ONLY for the trainables: LoRA A and B, patch embedding,
                          heads (dW = Xᵀ·dY costs what the forward did);
                          frozen weights get none
Teacher forward only (frozen, stop_gradient; no backward):
  conv stem   2·B·G·3000·(3·M)·D + 2·B·G·1500·(3·D)·D
  layers      t_max · [2·B·G·1500·(4·D² + 2·D·F) + 4·B·G·1500²·D]
  alignment   K · 2·B·N·G·1500·D               (dense [N, G·1500] weights, one einsum per paired layer)
"""

from __future__ import annotations

import dataclasses

TEACHER_FRAMES = 3000  # Whisper input frames per segment


@dataclasses.dataclass(frozen=True)
class StepShapes:
    batch: int  # B (global)
    text_len: int  # T: input_ids width
    audio_frames: int  # L: student mel frames
    teacher_segments: int  # G: 30 s segments per row the teacher sees
    # LLM
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    # audio / LoRA / heads
    n_mels: int
    patch_frames: int
    lora_layers: int
    lora_rank: int
    lora_targets: tuple[str, ...]
    # teacher (None: no distillation, CE only)
    teacher_width: int | None = None
    teacher_ffn: int | None = None
    teacher_depth: int = 0  # deepest paired teacher layer (layers actually run)
    teacher_frames: int = TEACHER_FRAMES  # mel frames of the teacher window (audio.teacher_frames)
    head_hidden: int | None = None

    @property
    def audio_tokens(self) -> int:
        return self.audio_frames // self.patch_frames

    @property
    def seq_len(self) -> int:
        return self.text_len + self.audio_tokens - 1

    @property
    def distill(self) -> bool:
        return self.teacher_width is not None and self.teacher_depth > 0


def projection_dims(s: StepShapes) -> dict[str, tuple[int, int]]:
    """(in, out) of every linear in a Qwen2 decoder layer."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    d, i = s.hidden, s.intermediate
    return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
            "gate_proj": (d, i), "up_proj": (d, i), "down_proj": (i, d)}


def step_flops(s: StepShapes) -> dict[str, float]:
    """FLOPs of one training step by part; 'total' is what MFU divides by."""
    b, S, n = s.batch, s.seq_len, s.audio_tokens
    dims = projection_dims(s)
    p_layer = sum(i * o for i, o in dims.values())
    tokens = b * S

    # the LM head runs only at the T − 1 positions that predict a text token (models/aura.py)
    frozen_mm = 2.0 * tokens * s.layers * p_layer + 2.0 * b * (s.text_len - 1) * s.hidden * s.vocab
    attention = s.layers * 4.0 * b * S * S * s.heads * s.head_dim
    lora = s.lora_layers * 2.0 * tokens * sum(s.lora_rank * (dims[t][0] + dims[t][1]) for t in s.lora_targets)
    patch = 2.0 * b * n * s.n_mels * s.patch_frames * s.hidden
    heads = 0.0
    teacher = align = 0.0
    if s.distill:
        dt = s.teacher_width
        dh = s.head_hidden or dt
        heads = s.lora_layers * 2.0 * b * n * (s.hidden * dh + dh * dt)
        bt = b * s.teacher_segments
        tf, tp = s.teacher_frames, s.teacher_frames // 2
        conv = 2.0 * bt * (tf * 3 * s.n_mels * dt + tp * 3 * dt * dt)
        layer = (2.0 * bt * tp * (4 * dt * dt + 2 * dt * s.teacher_ffn)
                 + 4.0 * bt * tp ** 2 * dt)
        teacher = conv + s.teacher_depth * layer
        align = s.lora_layers * 2.0 * b * n * s.teacher_segments * tp * dt

    forward = frozen_mm + attention + lora + patch + heads
    backward_act = frozen_mm + 2.0 * attention + lora + heads
    backward_weight = lora + patch + heads
    total = forward + backward_act + backward_weight + teacher + align
    return {"student_forward": forward, "student_backward_activations": backward_act,
            "student_backward_weights": backward_weight, "teacher_forward": teacher, "alignment": align,
            "attention_forward": attention, "lora_forward": lora, "total": total}


def shapes_from_config(config, batch_shapes: dict[str, tuple]) -> StepShapes:
    """StepShapes from a Config and the step's batch shapes ({key: shape}), reading only config.json
    of the LLM and the teacher (no weights)."""
    from aura_jax.build import teacher_depth
    from aura_jax.hf import WhisperEncoderConfig, read_config
    from aura_jax.models.qwen2 import Qwen2Config

    llm = Qwen2Config.from_hf(read_config(config.model.llm))
    b, t = batch_shapes["input_ids"]
    frames = batch_shapes["audio_features"][-1]
    segments = batch_shapes["teacher_features"][1] if "teacher_features" in batch_shapes else 1
    kw = {}
    if config.loss.distill_weight > 0 and config.model.teacher:
        teacher = WhisperEncoderConfig.from_hf(read_config(config.model.teacher))
        kw = dict(teacher_width=teacher.d_model, teacher_ffn=teacher.encoder_ffn_dim,
                  teacher_depth=teacher_depth(config), head_hidden=config.distill.head_hidden,
                  teacher_frames=batch_shapes.get("teacher_features", (0, 0, 0, frames))[-1])
    return StepShapes(batch=b, text_len=t, audio_frames=frames, teacher_segments=segments,
                      hidden=llm.hidden_size, intermediate=llm.intermediate_size, layers=llm.num_hidden_layers,
                      heads=llm.num_attention_heads, kv_heads=llm.num_key_value_heads, head_dim=llm.head_dim,
                      vocab=llm.vocab_size, n_mels=config.audio.n_mels, patch_frames=config.audio.patch_frames,
                      lora_layers=config.lora.num_layers, lora_rank=config.lora.rank,
                      lora_targets=tuple(config.lora.targets), **kw)


# Dense peak TFLOP/s per device for the compute dtype (no sparsity).
PEAK_TFLOPS = {
    ("h100", "bfloat16"): 989.0, ("h200", "bfloat16"): 989.0, ("a100", "bfloat16"): 312.0,
    ("tpu v4", "bfloat16"): 275.0, ("tpu v5 lite", "bfloat16"): 197.0, ("tpu v5e", "bfloat16"): 197.0,
    ("tpu v5p", "bfloat16"): 459.0, ("tpu v5", "bfloat16"): 459.0,  # v5p reports 'TPU v5', v5e 'TPU v5 lite'
    ("tpu v6 lite", "bfloat16"): 918.0, ("tpu v6e", "bfloat16"): 918.0, ("tpu v6", "bfloat16"): 918.0,
    # float32 matmuls on GPUs run as TF32 by default in XLA: TF32 dense peaks
    ("h100", "float32"): 494.5, ("h200", "float32"): 494.5, ("a100", "float32"): 156.0,
}


def known_peak_tflops(device_kind: str, dtype: str = "bfloat16") -> float | None:
    """Per-device dense peak for a `jax.Device.device_kind` (e.g. 'NVIDIA H100 80GB HBM3', 'TPU v5 lite');
    None when unknown (CPU: pass --peak-tflops)."""
    kind = device_kind.lower()
    if dtype == "float16":
        dtype = "bfloat16"  # same dense peak on these parts
    # longest key first: 'tpu v5 lite' before 'tpu v5'
    for (name, dt), peak in sorted(PEAK_TFLOPS.items(), key=lambda kv: -len(kv[0][0])):
        if dt == dtype and name in kind:
            return peak
    return None


def hlo_matmul_flops(hlo_text: str) -> float:
    """2·(output elements)·(contracted size) summed over every `dot` and `convolution` of an HLO module
    (text of `jax.jit(f).lower(...).compiler_ir('hlo').as_hlo_text()`): the matmul part of what XLA's
    cost analysis counts, without the elementwise ops. Checks `step_flops` exactly (tests)."""
    return sum(hlo_matmul_flops_by_dtype(hlo_text).values())


def hlo_matmul_flops_by_dtype(hlo_text: str) -> dict[str, float]:
    """`hlo_matmul_flops` split by operand and result types, e.g. {"bf16×bf16→f32": …, "f32×f32→f32": …}
    (a convolution's key starts "conv "). Works on a lowered module and on a compiled one's optimized
    text (`compiled.as_text()`, fusion bodies included: names are unique module-wide), which is where
    one sees what a bf16-dot step still runs in float32 (issue 33)."""
    import math
    import re
    from collections import defaultdict

    shape_re = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*([a-z0-9]+)\[([0-9,]*)\]")
    shapes, ops = {}, []
    for line in hlo_text.splitlines():
        m = shape_re.match(line)
        if not m:
            continue
        shapes[m.group(1)] = (m.group(2), [int(x) for x in m.group(3).split(",") if x])
        if " dot(" in line or " convolution(" in line:
            ops.append((m.group(1), line))
    totals = defaultdict(float)
    for name, line in ops:
        out_type, out_shape = shapes[name]
        out = math.prod(out_shape)
        lhs_name, rhs_name = re.search(r"(?:dot|convolution)\(%?([^,)]+), %?([^,)]+)\)", line).groups()
        (lt, lhs), (rt, rhs) = shapes[lhs_name.strip()], shapes[rhs_name.strip()]
        if " dot(" in line:
            dims = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", line).group(1)
            totals[f"{lt}×{rt}→{out_type}"] += 2.0 * out * math.prod(lhs[int(i)] for i in dims.split(",") if i)
        else:  # kernel elements per output feature = window × input features (per group)
            kernel_labels = re.search(r"dim_labels=\w+_(\w+)->", line).group(1)
            totals[f"conv {lt}×{rt}→{out_type}"] += 2.0 * out * math.prod(rhs) / rhs[kernel_labels.index("o")]
    return dict(totals)
