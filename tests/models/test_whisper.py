"""Our NNX Whisper encoder equals transformers' on every hidden state, for 80 and
128 mel bins, and a truncated encoder equals the full one's early layers."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import WhisperModel

from aura_jax import random_checkpoints as rc
from aura_jax.hf import from_pretrained


def torch_hidden_states(directory, features):
    encoder = WhisperModel.from_pretrained(str(directory), dtype=torch.float32).encoder.eval()
    with torch.no_grad():
        return [h.numpy() for h in encoder(torch.as_tensor(features), output_hidden_states=True).hidden_states]


@pytest.mark.parametrize("n_mels,layers", [(80, 2), (128, 3)])
def test_every_hidden_state_matches_transformers(tmp_path, n_mels, layers):
    directory = rc.make_whisper(tmp_path, num_mel_bins=n_mels, encoder_layers=layers, seed=n_mels)
    features = np.random.default_rng(0).standard_normal((2, n_mels, 3000)).astype(np.float32)
    ref = torch_hidden_states(directory, features)
    ours = from_pretrained(directory)(jnp.asarray(features), output_hidden_states=True).hidden_states
    assert len(ours) == len(ref) == layers + 1
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert np.abs(np.asarray(a) - b).max() <= 1e-4, f"hidden_states[{i}]"


def test_truncated_encoder_equals_early_layers_of_full(tiny_whisper_dir):
    features = np.random.default_rng(1).standard_normal((1, 128, 3000)).astype(np.float32)
    ref = torch_hidden_states(tiny_whisper_dir, features)
    truncated = from_pretrained(tiny_whisper_dir, num_layers=2)
    assert len(truncated.layers) == 2 and truncated.layer_norm is None
    ours = truncated(jnp.asarray(features), output_hidden_states=True).hidden_states
    assert len(ours) == 3
    for a, b in zip(ours, ref[:3]):  # raw layer outputs: no final LayerNorm on a truncated stack
        assert np.abs(np.asarray(a) - b).max() <= 1e-4


def test_wrong_input_shape_is_a_clear_error(tiny_whisper_dir):
    encoder = from_pretrained(tiny_whisper_dir, num_layers=1)
    with pytest.raises(ValueError, match=r"\[batch, 128, 3000\]"):
        encoder(jnp.zeros((1, 80, 3000)))


def test_a_shorter_window_equals_transformers_modules_on_that_window(tiny_whisper_dir):
    """audio.teacher_frames < 3000 (teachers trained on short windows): transformers' own encoder
    modules applied to 600 frames (its forward insists on 3000) are the reference."""
    features = np.random.default_rng(2).standard_normal((2, 128, 600)).astype(np.float32)
    enc = WhisperModel.from_pretrained(str(tiny_whisper_dir), dtype=torch.float32).encoder.eval()
    with torch.no_grad():
        x = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(torch.as_tensor(features)))))
        x = x.permute(0, 2, 1) + enc.embed_positions.weight[:300]
        ref = [x.numpy()]
        for layer in enc.layers:
            x = layer(x, None)
            x = x[0] if isinstance(x, tuple) else x
            ref.append(x.numpy())
        ref[-1] = enc.layer_norm(x).numpy()
    ours = from_pretrained(tiny_whisper_dir)(jnp.asarray(features), output_hidden_states=True).hidden_states
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert np.abs(np.asarray(a) - b).max() <= 1e-4, f"hidden_states[{i}]"
    with pytest.raises(ValueError, match="even number"):
        from_pretrained(tiny_whisper_dir)(jnp.zeros((1, 128, 601)))
