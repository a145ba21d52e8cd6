"""The AuRA training step in PyTorch, as a reference for `aura-jax bench-train --torch-reference`.

Same configuration, same Hugging Face directories, same math as
`aura_jax.training.train` + `aura_jax.training.loss`:

* student: `transformers.Qwen2ForCausalLM` (frozen) + `peft` LoRA with the
  config's rank / alpha / target projections on the first K layers
  (`layers_to_transform`), dropout 0;
* audio: the patch embedding `aura_jax.torch.model.AudioPatchEmbed`
  (LayerNorm(W x + b) + positions) spliced at the placeholder exactly like
  `aura_jax.models.aura.splice_audio` (sequence grows by N − 1, text-only rows
  padded at the end), positions `cumsum(mask) − 1`;
* teacher: `transformers` `WhisperEncoder` built with only the layers up to
  the deepest paired one (final LayerNorm only if the encoder is complete,
  as in `aura_jax.models.whisper`), frozen, under `no_grad`; valid frames
  regrouped and aligned to N with `adaptive_avg_pool1d` / `interpolate`;
* heads: Linear2(GELU(Linear1(RMSNorm(s)))) per adapted layer, reading the
  outputs of layers 1..K at the audio positions (forward hooks);
* loss: ce_weight·CE(assistant targets) + β·mean_l[λ_cos(1−cos) + λ_mse·MSE],
  averaged over audio rows;
* AdamW (torch) with the same warm-up schedule, global-norm clipping, and a
  non-finite step skipped.

Trainable initial values can be copied from the JAX model (`trainables=`,
the flat dict of `aura_jax.bench.step.trainable_arrays`), so step 0 computes
the same loss as JAX (tests/torch/test_reference_step.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aura_jax.build import placeholder_token_id, teacher_depth
from aura_jax.hf import read_config

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class RMSNorm(torch.nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x.float()
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class DistillHead(torch.nn.Module):
    def __init__(self, hidden: int, head_hidden: int, teacher_width: int):
        super().__init__()
        self.norm = RMSNorm(hidden, 1e-6)
        self.fc1 = torch.nn.Linear(hidden, head_hidden)
        self.fc2 = torch.nn.Linear(head_hidden, teacher_width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.norm(x)), approximate="none"))


def load_truncated_whisper_encoder(directory, depth: int, dtype=torch.float32):
    """transformers' WhisperEncoder with only its first `depth` layers, weights read from `directory`
    (model.encoder.* or encoder.*); the final LayerNorm is kept only when depth is the full encoder."""
    from safetensors import safe_open
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig.from_pretrained(str(directory))
    full = config.encoder_layers
    config.encoder_layers = depth
    encoder = WhisperEncoder(config).to(dtype)
    if depth < full:
        encoder.layer_norm = torch.nn.Identity()
    wanted = set(encoder.state_dict())
    state = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                for prefix in ("model.encoder.", "encoder."):
                    if key.startswith(prefix) and key[len(prefix):] in wanted:
                        state[key[len(prefix):]] = f.get_tensor(key).to(dtype)
    missing = wanted - set(state)
    if missing:
        raise ValueError(f"{directory}: encoder weights missing: {sorted(missing)[:5]}")
    encoder.load_state_dict(state)
    encoder.requires_grad_(False)
    return encoder.eval()


def whisper_hidden_states(encoder, features):
    """[0] = conv stem + positions, [i] = output of layer i (the last one LayerNorm'd if complete)."""
    x = F.gelu(encoder.conv1(features))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    states = [x]
    for layer in encoder.layers:
        x = layer(x, None)
        x = x[0] if isinstance(x, tuple) else x
        states.append(x)
    states[-1] = encoder.layer_norm(states[-1])
    return states


def regroup_and_align(hidden, mel_valid_frames, n: int):
    """hidden [B, G, F, D], valid mel frames [B, G] → [B, n, D] (valid teacher frames = ceil(v/2) of each
    segment, concatenated, adaptive-avg-pooled (T ≥ n) or linearly interpolated (T < n) to n; 0 if none)."""
    b, g, f, d = hidden.shape
    out = hidden.new_zeros(b, n, d)
    valid = np.minimum(-(-np.asarray(mel_valid_frames) // 2), f)
    for i in range(b):
        parts = [hidden[i, s, : int(valid[i, s])] for s in range(g) if valid[i, s] > 0]
        if not parts:
            continue
        x = torch.cat(parts).T[None]  # [1, D, T]
        if x.shape[-1] >= n:
            out[i] = F.adaptive_avg_pool1d(x, n)[0].T
        else:
            out[i] = F.interpolate(x, size=n, mode="linear", align_corners=False)[0].T
    return out


def distill_loss(preds, targets, has_audio, lambda_cos: float, lambda_mse: float):
    mask = has_audio.float()
    per_row = 0.0
    for p, t in zip(preds, targets):
        dot = (p * t).sum(-1)
        sq = (p * p).sum(-1) * (t * t).sum(-1)
        cos = (1.0 - dot / torch.sqrt(torch.clamp(sq, min=1e-16))).mean(-1)
        mse = (p - t).pow(2).mean((-2, -1))
        per_row = per_row + lambda_cos * cos + lambda_mse * mse
    per_row = torch.where(has_audio, per_row / len(preds), torch.zeros_like(per_row))
    return per_row.sum() / torch.clamp(mask.sum(), min=1.0)


class ReferenceStep(torch.nn.Module):
    """The AuRA model + loss + AdamW step in PyTorch for a `Config`."""

    def __init__(self, config, *, device: str = "cpu", trainables: dict | None = None,
                 attn_implementation: str = "sdpa"):
        super().__init__()
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        from aura_jax.torch.model import AudioPatchEmbed

        if config.distill.bidirectional_audio:
            raise NotImplementedError("the PyTorch reference supports causal attention only")
        if config.lora.audio_only:
            raise NotImplementedError("the PyTorch reference (PEFT) has adapters at every position: lora.audio_only "
                                      "is checked against the JAX model's own base path (tests/models/test_lora.py)")
        self.config = config
        dtype = _DTYPES[config.model.param_dtype]
        lo, a = config.lora, config.audio
        llm = AutoModelForCausalLM.from_pretrained(config.model.llm, dtype=dtype,
                                                   attn_implementation=attn_implementation)
        llm.requires_grad_(False)
        peft_config = LoraConfig(r=lo.rank, lora_alpha=lo.scale_alpha, target_modules=list(lo.targets),
                                 layers_to_transform=list(range(lo.num_layers)), lora_dropout=0.0, bias="none")
        self.llm = get_peft_model(llm, peft_config)
        self.layers = self.llm.base_model.model.model.layers
        hidden = llm.config.hidden_size
        self.placeholder_id = placeholder_token_id(config.model.llm, config.prompt.audio_token, llm.config.vocab_size)
        n_tokens = a.num_frames // a.patch_frames
        self.audio_embed = AudioPatchEmbed({"proj.weight": torch.zeros(hidden, a.n_mels * a.patch_frames),
                                            "proj.bias": torch.zeros(hidden), "norm.weight": torch.ones(hidden),
                                            "norm.bias": torch.zeros(hidden),
                                            "positions": torch.randn(n_tokens, hidden) * 0.02},
                                           a.patch_frames, 1e-5)
        torch.nn.init.kaiming_uniform_(self.audio_embed.proj.weight, a=math.sqrt(5))
        self.teacher, self.teacher_layers = None, []
        if config.loss.distill_weight > 0 and config.model.teacher:
            from aura_jax.distill import teacher_layer_schedule

            depth = teacher_depth(config)
            self.teacher = load_truncated_whisper_encoder(config.model.teacher, depth, dtype)
            full = int(read_config(config.model.teacher)["encoder_layers"])
            self.teacher_layers = teacher_layer_schedule(config.distill.teacher_layers, lo.num_layers, full)
            width = self.teacher.config.d_model
            self.heads = torch.nn.ModuleList([DistillHead(hidden, config.distill.head_hidden or width, width)
                                              for _ in range(lo.num_layers)])
        else:
            self.heads = torch.nn.ModuleList()
        if trainables is not None:
            self.load_jax_trainables(trainables)
        self.to(device)
        self.device = torch.device(device)
        o = config.optim
        self.params = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps,
                                           weight_decay=o.weight_decay)
        warm = o.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(step / warm, 1.0) if warm > 0 else 1.0)
        self._captured: dict[int, torch.Tensor] = {}
        for i in range(lo.num_layers):
            self.layers[i].register_forward_hook(self._hook(i + 1))

    def _hook(self, index: int):
        def hook(_module, _inputs, output):
            self._captured[index] = output[0] if isinstance(output, tuple) else output
        return hook

    # -- weights -----------------------------------------------------------------
    @torch.no_grad()
    def load_jax_trainables(self, flat: dict) -> None:
        """Copy JAX trainables ('llm/layers/0/self_attn/q_proj/lora_a', 'audio_embed/proj/kernel', ...) in."""
        t = lambda x: torch.from_numpy(np.array(x, np.float32))
        used = set()

        def take(key):
            used.add(key)
            return t(flat[key])

        for i in range(self.config.lora.num_layers):
            layer = self.layers[i]
            for block_name in ("self_attn", "mlp"):
                block = getattr(layer, block_name)
                for name in self.config.lora.targets:
                    module = getattr(block, name, None)
                    if module is None:
                        continue
                    prefix = f"llm/layers/{i}/{block_name}/{name}"
                    module.lora_A["default"].weight.copy_(take(f"{prefix}/lora_a").T)
                    module.lora_B["default"].weight.copy_(take(f"{prefix}/lora_b").T)
        e = self.audio_embed
        e.proj.weight.copy_(take("audio_embed/proj/kernel").T)
        e.proj.bias.copy_(take("audio_embed/proj/bias"))
        e.norm.weight.copy_(take("audio_embed/norm/scale"))
        e.norm.bias.copy_(take("audio_embed/norm/bias"))
        e.positions.copy_(take("audio_embed/positions"))
        for i, head in enumerate(self.heads):
            head.norm.weight.copy_(take(f"heads/{i}/norm/scale"))
            for fc in ("fc1", "fc2"):
                getattr(head, fc).weight.copy_(take(f"heads/{i}/{fc}/kernel").T)
                getattr(head, fc).bias.copy_(take(f"heads/{i}/{fc}/bias"))
        unused = set(flat) - used
        if unused:
            raise ValueError(f"JAX trainables without a PyTorch counterpart: {sorted(unused)[:5]}")

    # -- the step ----------------------------------------------------------------
    def _splice(self, ids, attention_mask, loss_mask, audio):
        """Port of aura_jax.models.aura.splice_audio."""
        b, t = ids.shape
        n = audio.shape[1]
        is_ph = ids == self.placeholder_id
        has_audio = is_ph.any(1)
        start = torch.where(has_audio, is_ph.int().argmax(1), torch.full_like(has_audio, t, dtype=torch.long))[:, None]
        j = torch.arange(t + n - 1, device=ids.device)[None]
        in_audio = (j >= start) & (j < start + n) & has_audio[:, None]
        text_index = torch.where(j < start, j, j - n + 1)
        text_valid = ~in_audio & ((j < start) | has_audio[:, None]) & (text_index < t)
        text_index = text_index.clamp(0, t - 1)
        audio_index = (j - start).clamp(0, n - 1)
        text_embeds = self.llm.get_input_embeddings()(ids)
        d = text_embeds.shape[-1]
        text_part = torch.gather(text_embeds, 1, text_index[..., None].expand(-1, -1, d))
        audio_part = torch.gather(audio.to(text_embeds.dtype), 1, audio_index[..., None].expand(-1, -1, d))
        embeds = torch.where(in_audio[..., None], audio_part, text_part)
        attn = torch.where(in_audio, True, torch.gather(attention_mask, 1, text_index) & text_valid)
        targets = torch.where(text_valid, torch.gather(ids, 1, text_index), 0)
        lmask = torch.gather(loss_mask, 1, text_index) & text_valid & attn
        return embeds, attn, targets, lmask, start[:, 0], has_audio

    def loss(self, batch: dict):
        """(loss, {"loss", "ce", "distill"}) for a numpy batch in the bench/training layout."""
        dev = self.device
        ids = torch.from_numpy(np.array(batch["input_ids"], np.int64)).to(dev)
        attention_mask = torch.from_numpy(np.array(batch["attention_mask"], bool)).to(dev)
        loss_mask = torch.from_numpy(np.array(batch["loss_mask"], bool)).to(dev)
        features = torch.from_numpy(np.array(batch["audio_features"], np.float32)).to(dev)
        audio = self.audio_embed(features)
        n = audio.shape[1]
        embeds, attn, targets, lmask, start, has_audio = self._splice(ids, attention_mask, loss_mask, audio)
        positions = (attn.long().cumsum(1) - 1).clamp(min=0)
        self._captured.clear()
        # The same work as the JAX loss (models/aura.py, next_token_targets): the LM head only at the
        # T − 1 positions that predict an input token, not at every audio position.
        causal_lm = self.llm.base_model.model
        hidden = causal_lm.model(inputs_embeds=embeds, attention_mask=attn.long(),
                                 position_ids=positions).last_hidden_state
        t = ids.shape[1]
        i = torch.arange(t, device=dev)[None]
        targets_at = torch.where(has_audio[:, None] & (i > start[:, None]), i + n - 1, i)[:, 1:]
        before = (targets_at - 1)[..., None].expand(-1, -1, hidden.shape[-1])
        logits = causal_lm.lm_head(torch.gather(hidden, 1, before)).float()
        tgt, m = torch.gather(targets, 1, targets_at), torch.gather(lmask, 1, targets_at).float()
        nll = torch.logsumexp(logits, -1) - torch.gather(logits, -1, tgt[..., None])[..., 0]
        ce = (nll * m).sum() / torch.clamp(m.sum(), min=1.0)
        cfg = self.config.loss
        loss = cfg.ce_weight * ce
        distill = torch.zeros((), device=dev)
        if self.teacher is not None and cfg.distill_weight > 0:
            first = start.clamp(max=embeds.shape[1] - n)  # text-only rows: clamped like lax.dynamic_slice
            idx = (first[:, None] + torch.arange(n, device=dev)[None])[..., None]
            states = [torch.gather(self._captured[l], 1, idx.expand(-1, -1, self._captured[l].shape[-1]))
                      for l in range(1, self.config.lora.num_layers + 1)]
            tf = batch.get("teacher_features")
            tv = batch.get("teacher_valid_frames")
            if tf is None:
                tf, tv = np.asarray(batch["audio_features"])[:, None], np.asarray(batch["audio_valid_frames"])[:, None]
            tf = torch.from_numpy(np.array(tf, np.float32)).to(dev)
            b, g = tf.shape[:2]
            with torch.no_grad():
                hs = whisper_hidden_states(self.teacher, tf.reshape((b * g,) + tf.shape[2:]).to(audio.dtype))
                targets_t = [regroup_and_align(hs[t].float().reshape((b, g) + hs[t].shape[1:]), np.asarray(tv), n)
                             for t in self.teacher_layers]
            preds = [head(s) for head, s in zip(self.heads, states)]
            distill = distill_loss(preds, targets_t, has_audio, cfg.lambda_cos, cfg.lambda_mse)
            loss = loss + cfg.distill_weight * distill
        return loss, {"loss": loss.detach(), "ce": ce.detach(), "distill": distill.detach()}

    def step(self, batch: dict) -> dict:
        """One AdamW step (clip by global norm, skip if the loss or gradient is not finite)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, metrics = self.loss(batch)
        loss.backward()
        clip = self.config.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else float("inf"))
        if torch.isfinite(loss) and torch.isfinite(norm):
            self.optimizer.step()
        self.scheduler.step()
        return metrics


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def prepare_reference(config, batch: dict, *, trainables: dict | None = None, device: str = "cpu",
                      threads: int | None = None, attn_implementation: str = "sdpa"):
    """Build the PyTorch step; (step, info): `step()` runs one synchronised step on `batch` and returns
    its metrics; `info` describes the set-up (device, threads, versions, build time)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    ref = ReferenceStep(config, device=device, trainables=trainables, attn_implementation=attn_implementation)
    build_s = time.perf_counter() - start
    batch = {k: np.asarray(v) for k, v in batch.items() if k != "example_index"}

    def step():
        _sync(device)
        metrics = ref.step(batch)
        _sync(device)
        return metrics

    return step, {"device": device, "threads": torch.get_num_threads(), "attn_implementation": attn_implementation,
                  "torch_version": torch.__version__, "build_s": build_s}
