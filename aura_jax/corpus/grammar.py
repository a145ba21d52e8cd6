"""A small bundled English grammar and fact table (a few hundred words, numbers spelled out).

Sentences ("anna lives in paris", "tom has three red cars", "the river is seven miles
long") are for ASR and LM pretraining; questions with short answers ("where does anna
live" → "paris", "what is three plus four" → "seven") come from the FACT TABLE, so
every answer is derivable from it (`answer_from_facts`). Everything is lower case
without punctuation (what the Whisper normaliser leaves), and a deterministic
function of the seed.
"""

from __future__ import annotations

import numpy as np

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0..99 in words."""
    if not 0 <= n < 100:
        raise ValueError(f"number_words: {n} is outside 0..99")
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f" {ONES[ones]}" if ones else "")


# ---------------------------------------------------------------------------
# The fact table
# ---------------------------------------------------------------------------
CITIES = {  # city -> country
    "paris": "france", "london": "england", "rome": "italy", "madrid": "spain", "berlin": "germany",
    "tokyo": "japan", "cairo": "egypt", "lima": "peru", "oslo": "norway", "dublin": "ireland",
    "nairobi": "kenya", "sydney": "australia", "toronto": "canada", "delhi": "india", "manila": "philippines",
    "lagos": "nigeria",
}
PEOPLE = {  # person -> city, job, pet, favourite colour
    "anna": {"city": "paris", "job": "doctor", "pet": "cat", "color": "red"},
    "tom": {"city": "london", "job": "teacher", "pet": "dog", "color": "blue"},
    "maria": {"city": "rome", "job": "farmer", "pet": "horse", "color": "green"},
    "omar": {"city": "cairo", "job": "pilot", "pet": "bird", "color": "yellow"},
    "priya": {"city": "delhi", "job": "nurse", "pet": "fish", "color": "purple"},
    "ken": {"city": "tokyo", "job": "cook", "pet": "rabbit", "color": "black"},
    "lucas": {"city": "madrid", "job": "baker", "pet": "cat", "color": "white"},
    "emma": {"city": "berlin", "job": "singer", "pet": "dog", "color": "orange"},
    "sofia": {"city": "lima", "job": "driver", "pet": "horse", "color": "blue"},
    "nils": {"city": "oslo", "job": "fisher", "pet": "fish", "color": "green"},
    "sean": {"city": "dublin", "job": "painter", "pet": "bird", "color": "red"},
    "amani": {"city": "nairobi", "job": "lawyer", "pet": "dog", "color": "yellow"},
    "jack": {"city": "sydney", "job": "farmer", "pet": "rabbit", "color": "orange"},
    "chloe": {"city": "toronto", "job": "doctor", "pet": "cat", "color": "purple"},
    "rosa": {"city": "manila", "job": "teacher", "pet": "fish", "color": "white"},
    "ade": {"city": "lagos", "job": "pilot", "pet": "horse", "color": "black"},
}
LEGS = {"spider": 8, "dog": 4, "cat": 4, "bird": 2, "horse": 4, "ant": 6, "duck": 2, "cow": 4, "fish": 0,
        "snake": 0, "bee": 6, "crab": 10}
COLORS_OF = {"sky": "blue", "grass": "green", "snow": "white", "sun": "yellow", "night": "black",
             "blood": "red", "orange": "orange", "sea": "blue", "coal": "black", "milk": "white"}
RIVERS = {"nile": 41, "amazon": 39, "danube": 28, "thames": 21, "rhine": 13, "seine": 7}  # "miles long" (made up)
FACTS = {"cities": CITIES, "people": PEOPLE, "legs": LEGS, "colors": COLORS_OF, "rivers": RIVERS}

THINGS = ["cars", "books", "apples", "chairs", "letters", "cups", "boats", "hats", "shoes", "keys", "boxes",
          "pens"]
ADJECTIVES = ["red", "blue", "green", "small", "big", "old", "new", "yellow"]
VERBS_PAST = ["bought", "sold", "found", "painted", "lost", "carried", "made", "saw"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


# ---------------------------------------------------------------------------
# Questions with short answers
# ---------------------------------------------------------------------------
def all_questions() -> list[tuple[str, str, str]]:
    """Every question the fact table answers: (kind, question, answer), in a fixed order."""
    qs = []
    for name, p in PEOPLE.items():
        qs.append(("city", f"where does {name} live", p["city"]))
        qs.append(("country", f"in which country does {name} live", CITIES[p["city"]]))
        qs.append(("job", f"what is the job of {name}", p["job"]))
        qs.append(("pet", f"what pet does {name} have", p["pet"]))
        qs.append(("color", f"what is the favorite color of {name}", p["color"]))
    for city, country in CITIES.items():
        qs.append(("city_country", f"which country is {city} in", country))
    for animal, n in LEGS.items():
        qs.append(("legs", f"how many legs does a {animal} have", number_words(n)))
    for thing, color in COLORS_OF.items():
        qs.append(("thing_color", f"what color is the {thing}", color))
    for river, n in RIVERS.items():
        qs.append(("river", f"how long is the {river}", f"{number_words(n)} miles"))
    for a in range(1, 10):
        for b in range(1, 10):
            qs.append(("plus", f"what is {number_words(a)} plus {number_words(b)}", number_words(a + b)))
            if a > b:
                qs.append(("minus", f"what is {number_words(a)} minus {number_words(b)}", number_words(a - b)))
    return qs


def answer_from_facts(question: str) -> str | None:
    """The answer to `question` computed from the fact table alone (None if it is not a known form)."""
    w = question.split()
    if question.startswith("where does ") and w[-1] == "live":
        return PEOPLE[w[2]]["city"]
    if question.startswith("in which country does "):
        return CITIES[PEOPLE[w[4]]["city"]]
    if question.startswith("what is the job of "):
        return PEOPLE[w[-1]]["job"]
    if question.startswith("what pet does "):
        return PEOPLE[w[3]]["pet"]
    if question.startswith("what is the favorite color of "):
        return PEOPLE[w[-1]]["color"]
    if question.startswith("which country is "):
        return CITIES[w[3]]
    if question.startswith("how many legs does a "):
        return number_words(LEGS[w[5]])
    if question.startswith("what color is the "):
        return COLORS_OF[w[-1]]
    if question.startswith("how long is the "):
        return f"{number_words(RIVERS[w[-1]])} miles"
    if question.startswith("what is ") and (" plus " in question or " minus " in question):
        op = "plus" if " plus " in question else "minus"
        left, right = question[len("what is "):].split(f" {op} ")
        words = {number_words(i): i for i in range(100)}
        a, b = words[left], words[right]
        return number_words(a + b if op == "plus" else a - b)
    return None


def split_questions(seed: int, num_test: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test) (question, answer) pairs: `num_test` questions drawn across all kinds for the
    spoken test set, the rest for text QA training. Deterministic in the seed."""
    qs = all_questions()
    if not 0 <= num_test < len(qs):
        raise ValueError(f"num_qa={num_test} must be in 0..{len(qs) - 1} (the fact table has {len(qs)} questions)")
    order = np.random.default_rng([seed, 7]).permutation(len(qs))
    test = set(int(i) for i in order[:num_test])
    pairs = [(q, a) for _, q, a in qs]
    return [p for i, p in enumerate(pairs) if i not in test], [p for i, p in enumerate(pairs) if i in test]


# ---------------------------------------------------------------------------
# Declarative sentences
# ---------------------------------------------------------------------------
def fact_sentences() -> list[str]:
    """Every fact of the table stated once, in a fixed order (LM pretraining text)."""
    out = []
    for name, p in PEOPLE.items():
        out += [f"{name} lives in {p['city']}", f"{name} is a {p['job']}", f"{name} has a {p['pet']}",
                f"the favorite color of {name} is {p['color']}"]
    out += [f"{city} is in {country}" for city, country in CITIES.items()]
    out += [f"a {animal} has {number_words(n)} legs" for animal, n in LEGS.items()]
    out += [f"the {thing} is {color}" for thing, color in COLORS_OF.items()]
    out += [f"the {river} is {number_words(n)} miles long" for river, n in RIVERS.items()]
    return out


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def sentence(rng: np.random.Generator) -> str:
    """One random sentence of the grammar (facts, counts, travel, arithmetic, questions)."""
    name, other = (str(x) for x in rng.choice(list(PEOPLE), 2, replace=False))
    city, dest = (str(x) for x in rng.choice(list(CITIES), 2, replace=False))
    n = number_words(int(rng.integers(2, 100)))
    small = number_words(int(rng.integers(2, 13)))
    thing, adj, verb, day = _pick(rng, THINGS), _pick(rng, ADJECTIVES), _pick(rng, VERBS_PAST), _pick(rng, DAYS)
    p = PEOPLE[name]
    river, animal, thing_c = _pick(rng, RIVERS), _pick(rng, LEGS), _pick(rng, COLORS_OF)
    x, y = (int(v) for v in rng.integers(1, 10, 2))
    templates = [
        lambda: f"{name} lives in {p['city']}",
        lambda: f"{name} has {small} {adj} {thing}",
        lambda: f"{name} {verb} {n} {thing} in {city}",
        lambda: f"the {river} is {number_words(RIVERS[river])} miles long",
        lambda: f"{name} flew from {city} to {dest} on {day}",
        lambda: f"{name} and {other} walked {small} miles",
        lambda: f"the train to {city} leaves at {small} o clock",
        lambda: f"{name} is a {p['job']} in {p['city']}",
        lambda: f"{city} is in {CITIES[city]}",
        lambda: f"a {animal} has {number_words(LEGS[animal])} legs",
        lambda: f"{number_words(x)} plus {number_words(y)} is {number_words(x + y)}",
        lambda: f"please call {name} on {day} before {small}",
        lambda: _pick(rng, all_questions())[1],
        lambda: f"{name} gave {other} {small} {thing}",
        lambda: f"the {thing_c} is {COLORS_OF[thing_c]}",
    ]
    return templates[int(rng.integers(len(templates)))]()


def sentences(seed: int, count: int, *, exclude: set[str] = frozenset()) -> list[str]:
    """`count` distinct grammar sentences (none in `exclude`), deterministic in the seed."""
    rng = np.random.default_rng([seed, 11])
    out, seen = [], set(exclude)
    for _ in range(count * 200):
        if len(out) == count:
            break
        s = sentence(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    if len(out) < count:
        raise ValueError(f"the grammar ran out of distinct sentences at {len(out)} (asked for {count})")
    return out


def vocabulary() -> set[str]:
    """Every word the grammar and the fact table can produce."""
    words = set(" ".join(fact_sentences() + [q + " " + a for _, q, a in all_questions()]).split())
    words |= set(" ".join(THINGS + ADJECTIVES + VERBS_PAST + DAYS + ONES + TENS).split())
    words |= set("lives in has is a the miles long flew from to on and walked train leaves at o clock gave please "
                 "call before today plus minus".split())
    return words
