"""Streaming speech input, the framework-neutral half (numpy): audio samples in, audio chunks
for the LLM's KV cache out, while the person is still speaking.

    StreamingLogMel   samples → Whisper log-mel frames as soon as each frame's samples are heard
    SpeechStream      frames → patches → fixed-size chunks handed to a backend's `_prefill_chunk`;
                      `finish()` flushes the last chunk and hands over to the backend's `_answer`
    realtime_chunks   a file (or waveform) as a microphone would deliver it, optionally paced

The backends are `aura_jax.inference.generate.AuraStream` (JAX) and `aura_jax.torch.stream.TorchAuraStream`.

Whisper's log-mel is causal except in one place: it clamps every frame at (maximum over the whole
clip − 8) before scaling. Here the clamp uses the running maximum over the frames heard so far,
so a frame differs from the offline one only where offline clamps it (its log-mel is below the
clip's final maximum − 8) and the maximum rose after the frame was heard; there the streamed
value is max(log-mel, running maximum − 8), lower than offline's. Everything else (STFT window,
hop, reflect padding at the start, zeros after the speech, the mel bank) is the offline code's.

What the LLM hears after the speech (`padded`):
  True   silence up to the smallest of the model's training audio buckets that holds the speech
         (`data.audio_buckets`; the paper's recipe has one, the whole 30 s window), as training
         and offline inference pad it. Same answer as offline up to the clamp, but the padding is
         prefilled after the speech ends, so the first token waits for it.
  False  nothing: the audio ends with the last patch of speech (ceil(frames / P) patches). The
         delay before the first token no longer depends on the clip, but a model trained on padded
         clips hears something it never met; docs/BENCHMARKS.md ("Streaming") measures what that
         costs, and that fine buckets (1 s) in training remove the cost.
"""

from __future__ import annotations

import time

import numpy as np

from aura_jax.audio import (
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    SAMPLING_RATE,
    _hann_window,
    mel_filters,
    num_valid_frames,
)

CLAMP = 8.0  # Whisper's dynamic range in log10 units


class StreamError(ValueError):
    """A stream used out of order (fed after finish, ...) or a model that cannot stream."""


def log_mel_frames(windows: np.ndarray, n_mels: int) -> np.ndarray:
    """Unclamped log10 mel power [n_mels, k] (float64) of k STFT windows [k, N_FFT] (float64):
    the offline extractor's arithmetic up to its clamp."""
    spec = np.fft.rfft(windows * _hann_window(), axis=-1)
    power = spec.real**2 + spec.imag**2
    return np.log10(np.maximum(mel_filters(n_mels) @ power.T, 1e-10))


class StreamingLogMel:
    """Incremental Whisper log-mel of one 16 kHz stream, at most `max_frames` frames (≤ 3000, 30 s).

    `feed(samples)` returns the frames [n_mels, k] (float32) completed by these samples: frame j
    (centered at sample 160·j) is out once sample 160·j + 199 has arrived. `finish(total_frames)`
    returns the rest, up to `total_frames`, computed as offline does after the speech (zeros,
    reflect padding at the 30 s end). Samples past 30 s are counted in `samples_heard`, never read
    (`truncated` says whether the window cut the clip).
    """

    def __init__(self, n_mels: int = 128, max_frames: int = N_FRAMES):
        if not 0 < max_frames <= N_FRAMES:
            raise StreamError(f"max_frames={max_frames}: must be in 1..{N_FRAMES} (30 s)")
        self.n_mels, self.max_frames = n_mels, max_frames
        # [200 samples reflected | the first 30 s heard]: written in place, so a feed costs its own
        # samples and frames, not a copy of everything heard so far
        self._padded = np.zeros(N_FFT // 2 + N_SAMPLES, np.float64)
        self._kept = 0  # samples stored (at most 30 s: offline never reads further)
        self.samples_heard, self.frames_out, self.peak = 0, 0, -np.inf
        self.finished = False

    @property
    def truncated(self) -> bool:
        """More was heard than the window holds (offline inference cuts it off the same way)."""
        return self.samples_heard > self.max_frames * HOP_LENGTH

    def _clamp(self, log_spec: np.ndarray) -> np.ndarray:
        """Running-maximum clamp and Whisper's scaling, frame by frame (so the result does not
        depend on how the samples were split into `feed` calls)."""
        peaks = np.maximum.accumulate(np.concatenate([[self.peak], log_spec.max(axis=0)]))[1:]
        self.peak = float(peaks[-1])
        return ((np.maximum(log_spec, peaks[None, :] - CLAMP) + 4.0) / 4.0).astype(np.float32)

    def _frames(self, padded: np.ndarray, stop: int) -> np.ndarray:
        start = self.frames_out
        if stop <= start:
            return np.zeros((self.n_mels, 0), np.float32)
        hops = np.arange(start, stop) * HOP_LENGTH
        windows = padded[hops[:, None] + np.arange(N_FFT)[None, :]]
        self.frames_out = stop
        return self._clamp(log_mel_frames(windows, self.n_mels))

    def feed(self, samples) -> np.ndarray:
        if self.finished:
            raise StreamError("this stream has finished; start a new one")
        x = np.asarray(samples, np.float64).reshape(-1)
        self.samples_heard += x.shape[0]
        half, before = N_FFT // 2, self._kept
        take = x[:N_SAMPLES - before]
        self._padded[half + before:half + before + take.shape[0]] = take
        n = self._kept = before + take.shape[0]
        if n <= half:  # the reflect padding of frame 0 needs samples 1..200
            return np.zeros((self.n_mels, 0), np.float32)
        if before <= half:  # sample 200 just arrived: reflect samples 1..200 in front of sample 0
            self._padded[:half] = self._padded[2 * half:half:-1]
        # frame j reads padded[160 j : 160 j + 400]: complete once n + 200 >= 160 j + 400
        return self._frames(self._padded, min((n - half) // HOP_LENGTH + 1, self.max_frames))

    def finish(self, total_frames: int | None = None) -> np.ndarray:
        """The remaining frames up to `total_frames` (default: every frame holding speech,
        ceil(samples / 160)), as offline computes them after the speech."""
        self.finished = True
        total = (min(num_valid_frames(self.samples_heard), self.max_frames) if total_frames is None
                 else int(total_frames))
        if not 0 <= total <= self.max_frames:
            raise StreamError(f"total_frames={total}: must be in 0..{self.max_frames}")
        full = np.zeros(N_SAMPLES, np.float64)
        full[:self._kept] = self._padded[N_FFT // 2:N_FFT // 2 + self._kept]
        half = N_FFT // 2
        return self._frames(np.pad(full, (half, half), mode="reflect"), max(total, self.frames_out))


class SpeechStream:
    """One utterance streamed into a model: samples (`feed_audio`) or ready log-mel frames
    (`feed_features`: the audio is then exactly the frames fed, `padded` does not apply) → patches
    of P frames → chunks of `chunk_patches` patches, each prefilled by the backend as soon as it is
    complete. `finish()` pads the audio as offline does or ends it with the speech (`padded`,
    module docstring), prefills the last chunk, then calls the backend's `_answer()` (the prompt
    after the audio, then decoding). `buckets`: the model's training audio lengths in frames
    (default: the window).

    Backends implement `_prefill_chunk(frames [n_mels, chunk_patches·P], valid_patches, first_patch)`
    and `_answer()` (and `_answer_ids()`, a generator, for `finish_ids`). A backend without compiled shapes (`fixed_chunks = False`) gets what is left at
    `finish` (the last speech, the padding) in one call. Timing: `end_of_speech` (perf_counter at `finish`), `first_token_time`
    (set by the backend when the first answer token is known)."""

    fixed_chunks = True

    def __init__(self, *, n_mels: int, patch_frames: int, window_frames: int, chunk_patches: int,
                 padded: bool, buckets=None):
        if chunk_patches < 1:
            raise StreamError(f"chunk_patches={chunk_patches}: must be at least 1")
        self.patch_frames, self.chunk_patches, self.padded = patch_frames, chunk_patches, padded
        self.buckets = sorted(int(b) for b in (buckets or [window_frames]))
        self.window_patches = window_frames // patch_frames
        self.log_mel = StreamingLogMel(n_mels, min(window_frames, N_FRAMES))
        self._pending = np.zeros((n_mels, 0), np.float32)  # frames not yet prefilled
        self.patches_prefilled, self.chunks_prefilled = 0, 0
        self.end_of_speech = self.first_token_time = None
        self._features_fed = False

    @property
    def chunk_frames(self) -> int:
        return self.chunk_patches * self.patch_frames

    def feed_audio(self, samples) -> int:
        """Hear more 16 kHz mono samples; returns the chunks prefilled by this call."""
        if self._features_fed:
            raise StreamError("this stream was fed log-mel frames; feed it frames, not samples")
        return self._take(self.log_mel.feed(samples))

    def feed_features(self, frames) -> int:
        """Take ready log-mel frames [n_mels, k] (any k); returns the chunks prefilled by this call."""
        if self.log_mel.finished:
            raise StreamError("this stream has finished; start a new one")
        self._features_fed = True
        return self._take(np.asarray(frames, np.float32))

    def _take(self, frames: np.ndarray) -> int:
        heard = self.patches_prefilled * self.patch_frames + self._pending.shape[1] + frames.shape[1]
        if heard > self.window_patches * self.patch_frames:
            raise StreamError(f"the audio exceeds the model's window of {self.window_patches} patches "
                              f"({self.window_patches * self.patch_frames} frames)")
        self._pending = np.concatenate([self._pending, frames], axis=1)
        done = 0
        while self._pending.shape[1] >= self.chunk_frames:
            self._prefill(self._pending[:, :self.chunk_frames], self.chunk_patches)
            self._pending = self._pending[:, self.chunk_frames:]
            done += 1
        return done

    def _prefill(self, frames: np.ndarray, valid_patches: int) -> None:
        if frames.shape[1] < self.chunk_frames:  # the last chunk: padded to the compiled size, masked
            pad = np.zeros((frames.shape[0], self.chunk_frames - frames.shape[1]), np.float32)
            frames = np.concatenate([frames, pad], axis=1)
        self._prefill_chunk(frames, valid_patches, self.patches_prefilled)
        self.patches_prefilled += valid_patches
        self.chunks_prefilled += 1

    def finish(self):
        """End of speech: the last chunk, the prompt after the audio, the answer (backend's type)."""
        self._flush()
        return self._answer()

    def finish_ids(self):
        """End of speech as `finish()` (done now, at the call), then a generator of the answer's token
        ids one at a time as they are decoded (greedy), for a server streaming them. Closing the
        generator early (a client that left) drops the cache."""
        self._flush()
        return self._answer_ids()

    def _flush(self) -> None:
        """The last chunk of the audio into the cache (padded or not)."""
        if self.end_of_speech is not None:
            raise StreamError("finish() was already called on this stream")
        heard = self.patches_prefilled * self.patch_frames + self._pending.shape[1]
        if heard == 0 and self.log_mel.samples_heard == 0:
            raise StreamError("no audio was fed to this stream")
        self.end_of_speech = time.perf_counter()
        if self._features_fed:  # the audio is exactly the frames fed
            self.log_mel.finished = True
        else:
            speech = min(max(num_valid_frames(self.log_mel.samples_heard), 1), self.log_mel.max_frames)
            frames = (padded_frames(speech, self.buckets) if self.padded
                      else -(-speech // self.patch_frames) * self.patch_frames)
            self._pending = np.concatenate([self._pending, self.log_mel.finish(frames)], axis=1)
        if self._pending.shape[1] % self.patch_frames:  # frames fed by the caller end mid-patch
            raise StreamError(f"{heard} frames fed: not a multiple of patch_frames={self.patch_frames}")
        step = self.chunk_frames if self.fixed_chunks else max(self._pending.shape[1], 1)
        while self._pending.shape[1]:
            take = self._pending[:, :step]
            self._prefill(take, take.shape[1] // self.patch_frames)
            self._pending = self._pending[:, take.shape[1]:]

    def run(self, pieces):
        """Feed every piece of an iterable of 16 kHz sample arrays (a microphone, `realtime_chunks`),
        then `finish()`."""
        for piece in pieces:
            self.feed_audio(piece)
        return self.finish()

    def wait(self) -> None:
        """Block until the chunks handed to the backend are in the cache (JAX dispatches asynchronously;
        for timing)."""

    def _prefill_chunk(self, frames: np.ndarray, valid_patches: int, first_patch: int) -> None:
        raise NotImplementedError

    def _answer(self):
        raise NotImplementedError

    def _answer_ids(self):
        raise NotImplementedError


def padded_frames(speech_frames: int, buckets) -> int:
    """The frames a clip of `speech_frames` is padded to, in training and offline inference: the
    smallest audio bucket that holds it, else the largest (the clip is cut)."""
    fits = [b for b in sorted(buckets) if b >= speech_frames]
    return int(fits[0] if fits else max(buckets))


def realtime_chunks(waveform, *, seconds: float = 0.1, sampling_rate: int = SAMPLING_RATE, pace: bool = True):
    """Yield a waveform in pieces of `seconds`, as a microphone delivers them: with `pace`, each
    piece is yielded no earlier than the moment its last sample would have been spoken."""
    x = np.asarray(waveform, np.float32)
    step = max(1, int(round(seconds * sampling_rate)))
    start = time.perf_counter()
    for i in range(0, x.shape[0], step):
        piece = x[i:i + step]
        if pace:
            wait = start + (i + piece.shape[0]) / sampling_rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        yield piece


def front_end_difference(waveform, n_mels: int, frames: int) -> tuple[int, int, float]:
    """How far the streamed log-mel of a 16 kHz clip is from offline's over the first `frames`
    frames: (values that differ by more than 1e-6, values compared, largest absolute difference)."""
    from aura_jax.audio import log_mel_spectrogram

    offline = log_mel_spectrogram(waveform, SAMPLING_RATE, n_mels)[:, :frames]
    stream = StreamingLogMel(n_mels, frames)
    ours = np.concatenate([stream.feed(waveform), stream.finish(frames)], axis=1)
    diff = np.abs(ours - offline)
    return int((diff > 1e-6).sum()), int(diff.size), float(diff.max())
