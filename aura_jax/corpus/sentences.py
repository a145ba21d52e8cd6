"""Varied English for the real-model demo: templated sentences and questions, and the spoken test
questions (facts, yes/no, counts) with their reference answers.

Templated, not LLM-written: SmolLM2 on this CPU writes about one sentence a second, and a Debian text
package (fortunes, dictionaries) gives odd or wordlist English. A few hundred common words in forty
frames give thousands of distinct sentences of everyday English, statements and questions alike, so
the student hears the shapes the spoken test questions have without hearing those questions."""

from __future__ import annotations

import numpy as np

from aura_jax.evaluate.baselines import QUESTIONS as BASELINE_QUESTIONS

# More test questions of the same kinds as the baselines' forty; the gold filter (the LLM reading the
# text) keeps those it answers right.
MORE_QUESTIONS = [
    ("What is the capital of Russia?", ["Moscow"], "fact"),
    ("What is the capital of Egypt?", ["Cairo"], "fact"),
    ("What is the capital of Canada?", ["Ottawa"], "fact"),
    ("What is the capital of China?", ["Beijing"], "fact"),
    ("What is the largest country in the world?", ["Russia"], "fact"),
    ("What is the largest desert in the world?", ["Sahara", "Antarctic"], "fact"),
    ("Which animal is the largest on Earth?", ["blue whale", "whale"], "fact"),
    ("What do cows drink?", ["water"], "fact"),
    ("What color are bananas?", ["yellow"], "fact"),
    ("What color is grass?", ["green"], "fact"),
    ("What is the opposite of hot?", ["cold"], "fact"),
    ("Who was the first president of the United States?", ["Washington"], "fact"),
    ("What is the boiling point of water in Celsius?", ["100", "one hundred"], "fact"),
    ("What is the capital of the United States?", ["Washington"], "fact"),
    ("Is the Earth round?", ["yes"], "yes/no"),
    ("Is fire hot?", ["yes"], "yes/no"),
    ("Is snow cold?", ["yes"], "yes/no"),
    ("Do birds have feathers?", ["yes"], "yes/no"),
    ("Can a fish breathe underwater?", ["yes"], "yes/no"),
    ("Is the ocean salty?", ["yes"], "yes/no"),
    ("How many legs does a cat have?", ["four", "4"], "count"),
    ("How many eyes does a person have?", ["two", "2"], "count"),
    ("How many fingers are on one hand?", ["five", "5"], "count"),
    ("How many sides does a square have?", ["four", "4"], "count"),
    ("How many days are in a year?", ["365", "three hundred sixty five"], "count"),
    ("How many seconds are in a minute?", ["sixty", "60"], "count"),
]
TEST_QUESTIONS = list(BASELINE_QUESTIONS) + MORE_QUESTIONS

# Text-QA training questions: none is a test question; the LLM's own answers are the targets, and only
# those whose answer holds the reference are kept ("pairs the LLM already answers").
_COUNTRIES = {"Portugal": "Lisbon", "Greece": "Athens", "Austria": "Vienna", "Poland": "Warsaw",
              "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Kenya": "Nairobi",
              "Argentina": "Buenos Aires", "Peru": "Lima", "Thailand": "Bangkok", "India": "New Delhi",
              "Australia": "Canberra", "Cuba": "Havana", "Turkey": "Ankara", "Belgium": "Brussels",
              "Denmark": "Copenhagen", "Finland": "Helsinki", "Hungary": "Budapest", "Chile": "Santiago"}
_COLORS = {"snow": "white", "coal": "black", "a ripe tomato": "red", "an orange": "orange", "milk": "white",
           "a lemon": "yellow", "the grass in spring": "green", "a strawberry": "red"}
_LEGS = {"a bird": "two", "an ant": "six", "a cow": "four", "a horse": "four", "a chicken": "two",
         "an octopus": "eight", "a duck": "two", "a beetle": "six"}
_YES = ["Is the sea made of water?", "Do dogs bark?", "Is the sun hot?", "Can birds fly?", "Do cats have fur?",
        "Is rain wet?", "Do trees have leaves?", "Is milk white?", "Can horses run?", "Is the desert dry?"]
_NO = ["Can a dog fly?", "Is the sun cold?", "Do fish have legs?", "Can a rock swim?", "Is snow hot?",
       "Do cows lay eggs?", "Is the moon made of cheese?", "Can a car fly?"]
_COUNTS = [("How many days are in two weeks?", ["fourteen", "14"]), ("How many legs do two dogs have?", ["eight", "8"]),
           ("How many wheels does a car have?", ["four", "4"]), ("How many months are in half a year?", ["six", "6"]),
           ("How many sides does a pentagon have?", ["five", "5"]), ("How many sides does a hexagon have?", ["six", "6"]),
           ("How many hours are in half a day?", ["twelve", "12"]), ("How many toes are on one foot?", ["five", "5"])]


def text_qa_candidates() -> list[tuple[str, list[str]]]:
    """(question, reference answers) for text-QA training; disjoint from TEST_QUESTIONS."""
    rows = [(f"What is the capital of {c}?", [city]) for c, city in _COUNTRIES.items()]
    rows += [(f"What color is {thing}?", [color]) for thing, color in _COLORS.items()]
    rows += [(f"How many legs does {animal} have?", [n, str({'two': 2, 'four': 4, 'six': 6, 'eight': 8}[n])])
             for animal, n in _LEGS.items()]
    rows += [(q, ["yes"]) for q in _YES] + [(q, ["no", "cannot", "can't"]) for q in _NO] + _COUNTS
    test = {q.lower() for q, _, _ in TEST_QUESTIONS}
    return [r for r in rows if r[0].lower() not in test]


_NAMES = ["Anna", "Tom", "Maria", "David", "Sarah", "James", "Emma", "Peter", "Lucy", "Michael", "Grace",
          "Daniel", "Olivia", "Henry", "Sophie", "Jack", "Laura", "Samuel", "Alice", "Robert"]
_PLACES = ["the park", "the station", "the market", "the library", "the beach", "the office", "the school",
           "the garden", "the hospital", "the museum", "the river", "the kitchen", "the city", "the village",
           "the airport", "the hotel", "the bakery", "the church", "the bridge", "the farm"]
_THINGS = ["a book", "a letter", "some bread", "a red car", "an old map", "a cup of tea", "the keys",
           "a new phone", "a blue coat", "some apples", "a small box", "the newspaper", "a bicycle",
           "a glass of water", "a warm blanket", "the tickets", "a birthday cake", "a wooden chair",
           "some flowers", "a heavy bag"]
_TIMES = ["this morning", "last night", "on Monday", "every day", "after lunch", "at noon", "in the evening",
          "next week", "on Sunday", "before dinner", "yesterday", "in the summer", "at seven o'clock",
          "early today", "in winter"]
_VERBS_PAST = ["found", "bought", "carried", "painted", "lost", "opened", "sold", "cleaned", "borrowed",
               "wanted", "needed", "dropped", "moved", "fixed", "brought"]
_ADJECTIVES = ["quiet", "busy", "cold", "bright", "crowded", "small", "beautiful", "noisy", "empty", "warm",
               "dark", "clean", "famous", "friendly", "large"]
_PLURALS = {"dog": "dogs", "cat": "cats", "horse": "horses", "bird": "birds", "rabbit": "rabbits", "cow": "cows",
            "sheep": "sheep", "fox": "foxes", "duck": "ducks", "mouse": "mice", "lion": "lions", "bear": "bears",
            "whale": "whales", "frog": "frogs", "goat": "goats"}
_ANIMALS = list(_PLURALS)
_FOODS = ["soup", "rice", "fish", "cheese", "pasta", "salad", "eggs", "chicken", "oranges", "potatoes",
          "chocolate", "bread", "coffee", "honey", "grapes"]
_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
            "twenty", "thirty", "forty", "fifty", "a hundred"]
_JOBS = ["doctor", "teacher", "farmer", "pilot", "driver", "writer", "cook", "nurse", "singer", "painter"]
_COLOR_WORDS = ["red", "blue", "green", "yellow", "white", "black", "brown", "orange", "purple", "grey"]
_WEATHER = ["sunny", "rainy", "windy", "cloudy", "foggy", "cold", "warm", "hot", "snowy", "wet"]

_FRAMES = [
    "{name} {verb} {thing} {time}.", "{name} went to {place} {time}.", "The {animal} is sleeping near {place}.",
    "We will meet at {place} {time}.", "{place_cap} was very {adj} {time}.", "My friend {name} is a {job}.",
    "There are {number} {animals} in the field.", "I would like some {food}, please.",
    "{name} does not like {food}.", "The weather was {weather} {time}.", "Please put {thing} on the table.",
    "Where did {name} leave {thing}?", "What time does {place} open?", "How many {animals} did you see?",
    "Is {name} coming to {place} {time}?", "Can you bring {thing} to {place}?", "Who {verb} {thing}?",
    "Why was {place} so {adj}?", "Do you know where {place} is?", "How far is {place} from here?",
    "What is the {job} doing at {place}?", "Does {name} have a {color} {animal}?",
    "{name} and {name2} walked to {place} together.", "The {job} {verb} {thing} {time}.",
    "It takes {number} minutes to walk to {place}.", "{name} has {number} {animals} and a {color} car.",
    "The {color} {animal} ran across {place}.", "I think {place} is {adj} {time}.",
    "Our {job} said the {food} was fresh.", "They sold {number} boxes of {food} {time}.",
    "Have you ever been to {place}?", "How much does {thing} cost?", "Is it {weather} outside {time}?",
    "Which {animal} is the biggest?", "What color is {name}'s coat?", "{name} asked the {job} a question.",
    "The {animal} can hear the {animal2} from {place}.", "When will {name} be back from {place}?",
    "The train to {place} leaves {time}.", "{name} is reading a story about a {color} {animal}.",
]


def _fill(frame: str, rng) -> str:
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    name = pick(_NAMES)
    place, animal = pick(_PLACES), pick(_ANIMALS)
    text = frame.format(animals=_PLURALS[animal], name=name, name2=pick([n for n in _NAMES if n != name]), verb=pick(_VERBS_PAST),
                        thing=pick(_THINGS), time=pick(_TIMES), place=place, place_cap=place[0].upper() + place[1:],
                        adj=pick(_ADJECTIVES), animal=animal, animal2=pick(_ANIMALS), food=pick(_FOODS),
                        number=pick(_NUMBERS), job=pick(_JOBS), color=pick(_COLOR_WORDS), weather=pick(_WEATHER))
    return text[0].upper() + text[1:]


def sentences(seed: int, count: int, exclude=()) -> list[str]:
    """`count` distinct templated sentences (statements and questions), none in `exclude`."""
    rng = np.random.default_rng([seed, 2027])
    banned = {e.lower() for e in exclude}
    out, seen, misses = [], set(), 0
    while len(out) < count and misses < 1000:  # 1000 draws in a row without a new one: the frames are spent
        s = _fill(_FRAMES[int(rng.integers(len(_FRAMES)))], rng)
        misses += 1
        if s.lower() not in seen and s.lower() not in banned:
            seen.add(s.lower())
            out.append(s)
            misses = 0
    if len(out) < count:
        raise ValueError(f"only {len(out)} distinct sentences for {count} asked")
    return out
