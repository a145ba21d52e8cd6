"""Synthetic data without downloads: spoken sentences from a tiny grammar (numbers,
names, places) voiced by espeak-ng, and arithmetic / capital-city QA pairs.
Everything is a deterministic function of (seed, row)."""

from __future__ import annotations

import numpy as np

from aura_jax import synth

NAMES = ["Alice", "Bob", "Maria", "John", "Priya", "Omar", "Emma", "Lucas"]
PLACES = ["Paris", "London", "Tokyo", "Cairo", "Lima", "Oslo", "Sydney", "Toronto"]
THINGS = ["apples", "books", "tickets", "chairs", "letters", "oranges"]
TEMPLATES = [
    "{name} bought {number} {thing} in {place}.",
    "{name} flew from {place} to {other}.",
    "The train to {place} leaves at {hour} o'clock.",
    "{name} has {number} {thing}.",
    "Please call {name} in {place} before {hour}.",
    "{name} and {friend} walked {number} miles.",
]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-us+f3", "en-029", "en-gb-x-rp"]
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Egypt": "Cairo", "Peru": "Lima", "Norway": "Oslo",
            "Italy": "Rome", "Canada": "Ottawa", "Kenya": "Nairobi", "Spain": "Madrid", "Germany": "Berlin"}

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0..99 in words (transcripts spell numbers out, as read speech does)."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


def _rng(seed: int, row: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(row), stream])


def sentence(seed: int, row: int) -> str:
    """A transcript from the grammar."""
    rng = _rng(seed, row, 0)
    name, friend = rng.choice(NAMES, 2, replace=False)
    place, other = rng.choice(PLACES, 2, replace=False)
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    return template.format(name=name, friend=friend, place=place, other=other,
                           thing=THINGS[rng.integers(len(THINGS))],
                           number=number_words(int(rng.integers(2, 100))), hour=number_words(int(rng.integers(1, 13))))


def voice(row: int) -> str:
    return VOICES[row % len(VOICES)]


def engine() -> str:
    """Which synthesizer speaks (part of the scan-cache key: the two give different audio)."""
    return "espeak" if synth.espeak_available() else "fallback"


def speech(text: str, voice: str, seed: int) -> np.ndarray:
    return synth.synthesize(text, voice=voice, seed=seed)


def qa(seed: int, row: int) -> tuple[str, str]:
    """An arithmetic or capital-city question and its answer."""
    rng = _rng(seed, row, 1)
    if rng.integers(2):
        a, b = (int(x) for x in rng.integers(1, 50, 2))
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    country = list(CAPITALS)[rng.integers(len(CAPITALS))]
    return f"What is the capital of {country}?", f"The capital of {country} is {CAPITALS[country]}."
