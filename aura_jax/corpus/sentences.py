"""Varied English for the real-model demo: templated sentences and questions, and the spoken test
questions (facts, yes/no, counts) with their reference answers.

Templated, not LLM-written: SmolLM2 on this CPU writes about one sentence a second, and a Debian text
package (fortunes, dictionaries) gives odd or wordlist English. A few hundred common words in forty
frames give thousands of distinct sentences of everyday English, statements and questions alike, so
the student hears the shapes the spoken test questions have without hearing those questions.

Closed vocabulary, open sentences (issue 33): an encoder-free student that hears a few thousand
sentences can learn only the words it hears, so `_TOPIC_FRAMES` speak the test questions' topics
(capitals and countries, planets, animals, counts, science, authors) inside other sentences, and
`select_covering` picks the training sentences so that every word of every test question and test
sentence is heard often, by several voices, while no test question or test sentence is ever heard.
Statements are true or neutral: the LoRA trains on them with cross-entropy, and a false "fact" would
teach the LLM a wrong answer."""

from __future__ import annotations

import re
from collections import Counter

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


_WHAT_IS = ["a doctor", "a teacher", "a farmer", "a pilot", "a library", "a museum", "a bridge", "a bakery", "a river",
            "a village", "a forest", "a desert", "a planet", "a volcano", "an island", "a map", "a clock", "a piano",
            "a computer", "a bicycle", "a garden", "a hospital", "a market", "a train", "an airport", "a kitchen",
            "a poem", "a song", "a cloud", "a rainbow", "a storm", "a lake", "a hill", "a castle", "a letter",
            "a calendar", "a dictionary", "a newspaper", "a telescope", "a thermometer"]
_EATERS = ["rabbits", "horses", "cows", "lions", "bears", "birds", "frogs", "goats", "ducks", "foxes", "mice",
           "whales", "sheep", "owls", "squirrels"]
_MADE_FROM = ["bread", "cheese", "chocolate", "pasta", "butter", "paper", "glass", "wine", "yogurt", "jam",
              "soup", "pizza", "coffee", "tea", "rice flour"]
_OPPOSITE_OF = ["big", "fast", "happy", "early", "light", "full", "young", "tall", "wet", "loud", "rich", "soft",
                "strong", "open", "clean", "up", "left", "day", "summer"]
_GO_TO = ["the library", "the beach", "the market", "the museum", "the hospital", "the airport", "the bakery",
          "the park", "the station", "the post office", "the bank", "the gym", "the zoo", "the theater", "school"]
_FACT_ABOUT = ["the moon", "the ocean", "Mars", "elephants", "trees", "rain", "the desert", "volcanoes", "honey",
               "penguins", "the Amazon river", "snow", "dolphins", "mountains", "the wind", "bees", "the stars",
               "chocolate", "apples", "the Arctic", "owls", "spiders", "rice", "coffee", "the Sahara", "wolves",
               "sharks", "tigers", "frogs", "clouds"]
_USED_FOR = ["a hammer", "a spoon", "a pencil", "an umbrella", "a key", "a ladder", "a towel", "a map", "a clock",
             "a broom", "a needle", "a candle", "a bucket", "a camera", "a saw", "a rope", "a brush", "a kettle",
             "a shovel", "a stamp"]
_JOBS_DO = ["a doctor", "a teacher", "a farmer", "a pilot", "a baker", "a nurse", "a painter", "a firefighter",
            "a librarian", "a chef", "a dentist", "a mail carrier"]


def open_questions() -> list[str]:
    """Text questions of everyday breadth with no reference answer: the LLM's own answer is the target
    (self-distillation keeps what it already does; issue 33's E3 found breadth, not weight, missing)."""
    rows = [f"What is {x}?" for x in _WHAT_IS] + [f"What do {x} eat?" for x in _EATERS]
    rows += [f"Where do {x} live?" for x in _EATERS] + [f"What is {x} made from?" for x in _MADE_FROM]
    rows += [f"What is the opposite of {x}?" for x in _OPPOSITE_OF] + [f"Why do people go to {x}?" for x in _GO_TO]
    rows += [f"Tell me one fact about {x}." for x in _FACT_ABOUT] + [f"What is {x} used for?" for x in _USED_FOR]
    rows += [f"What does {x} do?" for x in _JOBS_DO] + [f"How do you make {x}?" for x in _MADE_FROM[:10]]
    test = {q.lower() for q, _, _ in TEST_QUESTIONS}
    return [q for q in rows if q.lower() not in test]


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


# The test questions' topics. Facts come in true pairs (a country with its capital, continent and
# language; a thing with its colour) so that no statement is false.
_NATIONS = [  # (country, capital, continent, language)
    ("France", "Paris", "Europe", "French"), ("Japan", "Tokyo", "Asia", "Japanese"),
    ("Italy", "Rome", "Europe", "Italian"), ("Germany", "Berlin", "Europe", "German"),
    ("Spain", "Madrid", "Europe", "Spanish"), ("England", "London", "Europe", "English"),
    ("Russia", "Moscow", "Europe", "Russian"), ("Egypt", "Cairo", "Africa", "Arabic"),
    ("Canada", "Ottawa", "North America", "English"), ("China", "Beijing", "Asia", "Chinese"),
    ("Brazil", "Brasilia", "South America", "Portuguese"), ("Mexico", "Mexico City", "North America", "Spanish"),
    ("the United States", "Washington", "North America", "English"), ("Kenya", "Nairobi", "Africa", "English"),
    ("Peru", "Lima", "South America", "Spanish"), ("Greece", "Athens", "Europe", "Greek"),
    ("Portugal", "Lisbon", "Europe", "Portuguese"), ("India", "New Delhi", "Asia", "Hindi")]
_PLANETS = ["Mars", "Jupiter", "Venus", "Saturn", "the Earth"]
_SUPERLATIVES = ["largest", "longest", "tallest", "oldest", "biggest", "closest", "smallest"]
_LANDMARKS = ["river", "mountain", "city", "lake", "bridge", "building", "desert", "forest"]
_CREATURES = ["penguins", "bees", "spiders", "lions", "birds", "fish", "whales", "frogs", "cows"]
_HABITATS = ["the jungle", "the ocean", "the desert", "the mountains", "the forest", "the sea"]
_COUNTED = [("legs", ["a spider", "an ant", "a horse", "a bird", "a table", "a chair", "a frog", "a duck"]),
            ("eyes", ["a spider", "a fish", "a bee", "a frog", "a cat", "a person"]),
            ("wheels", ["a car", "a bicycle", "a bus", "a truck"]),
            ("sides", ["a square", "a triangle", "a box"]),
            ("fingers", ["one hand", "a person"]),
            ("feathers", ["a bird", "a penguin", "a duck", "a chicken"])]
_UNITS = ["seconds", "minutes", "hours", "days", "weeks", "months", "years"]
_UNIT = ["second", "minute", "hour", "day", "week", "month", "year"]
_LIQUIDS = ["milk", "oil", "sea water", "juice", "honey"]
_ELEMENTS = ["gold", "iron", "silver", "salt", "sugar"]
_MATERIALS = ["gold", "iron", "glass", "stone", "wood", "silver"]
_OPPOSITES = [("big", "small"), ("hot", "cold"), ("old", "new")]
_SKY = ["the sun", "the moon", "a bright star", "the stars", "Mars", "Jupiter", "a planet", "a cloud"]
_STORIES = ["Romeo and Juliet", "the Mona Lisa", "a famous painting", "an old story", "a poem about the sea"]
_CONTINENTS = ["Africa", "Europe", "Asia", "South America", "North America"]
_CLUBS = ["club", "bank", "company"]
_FEW = ["two", "three", "four", "five", "ten", "twenty"]
_NATURE = ["snow", "ice", "fire", "grass", "rain", "sand", "water", "air"]

_TOPIC_FRAMES = [  # every frame has a slot: a fixed sentence could be heard only once
    "{capital} is the capital of {country}.", "{name} visited the capital of {country} {time}.",
    "Which city is the capital of {country}?", "Is {capital} a large city?", "{name} lives in {country}.",
    "{name} took the train to {capital} {time}.", "The flight to {capital} leaves {time}.",
    "Would you like to live in {country}?", "{country_cap} is a country in {continent}.",
    "Which continent is {country} in?", "{name} has visited {few} continents.",
    "Have you ever been to {continent_any}?", "{name} wants to travel across {continent_any} {time}.",
    "People in {country} speak {language}.", "Which language is spoken in {country}?",
    "The main language of {country} is {language}.", "How big is the largest city in {country}?",
    "What is the {sup} {landmark} in {country}?", "The {sup} {landmark} in the world is far from {place}.",
    "Which country has the {sup} {landmark} in the world?", "{name} will fly to {country} {time}.",
    "{planet_cap} is a planet in our solar system.", "How far is {planet} from the sun?",
    "Which planet is bigger than {planet}?", "Is {planet} smaller than {planet2}?",
    "{name} read a book about the planets of our solar system {time}.",
    "{name} saw {sky} in the sky {time}.", "The sky was clear and {sky} was bright {time}.",
    "{name} learned that the Earth goes around the sun.", "{name} said that the sun is a star.",
    "Is {sky} closest to the Earth?", "Do {creatures} live in {habitat}?", "Can {creatures} fly?",
    "Can {creatures} breathe underwater?", "Do {creatures} have feathers?", "{name} is known as a good {job}.",
    "What do {creatures} eat and drink?", "{name} saw bees make honey {time}.", "{name} can swim well, but {name2} cannot.",
    "{name} told a story about the king of the jungle {time}.", "Which animal did {name} see in the jungle?",
    "How many {part} does {owner} have?", "{name} counted the {part} of {owner}.",
    "There are {number} {units} left before {time_word}.", "{name} waited {number} {units} for the train.",
    "How many {units} does it take to walk to {place}?", "It takes one {unit} to get to {place}.",
    "{name} calls {name2} once a {unit}.", "The boiling point of {liquid} is easy to measure.",
    "What is the freezing point of {liquid} in Celsius?", "It was {few} degrees Celsius {time}.",
    "What is the chemical symbol for {element}?", "{name} wrote the chemical symbol for {element} on the board.",
    "Is {material} the hardest natural substance?", "{material_cap} is a natural substance.",
    "Which gas do {creatures} breathe?", "{name} smelled gas in {place} {time}.",
    "The plants in {place} need light and water to grow.", "Do plants need {nature} to grow?",
    "{name} wrote a letter to {name2} {time}.", "{name} wrote {number} letters {time}.",
    "Who wrote the story about the {color} {animal}?", "{name} read about {story} {time}.",
    "{name} talked about {story} {time}.", "Who painted the picture of {thing}?",
    "{name} saw the Mona Lisa in a museum in France.", "The opposite of {opp_a} is {opp_b}.",
    "Is {name} taller than {name2}?", "{name} is older than {name2}.", "The {job} works as a {job2} in the summer.",
    "{name} bought a gift for {name2}.", "Can you make some {food} for {name}?", "Would you like {food} or {food2}?",
    "Where does {name} live?", "{name} was the first person at {place}.", "The ball is round and {color}.",
    "The {liquid} tasted salty {time}.", "{name} held the cup in one hand.", "{name} has two eyes and five fingers.",
    "The ocean was calm {time}.", "{name} was the first president of the {club}.",
    "Who was the first president of the {club}?", "{name} bought some bananas {time}.",
    "{name} will need {thing} {time}.", "There was {nature} on the ground {time}.",
    "Is the {nature} near {place} cold?", "{name} sat by the fire {time}.",
    "{name} drew a square and a triangle {time}.", "{name} lived in {country} for {number} months.",
    "How many days are in {number} weeks?", "How many hours did {name} sleep?",
    "{name} works in the United States.", "The desert was {weather} {time}.",
    # second frames for words whose first frame has few distinct fillings
    "{name} found a diamond {time}.", "Is a diamond harder than {material}?", "{name} lives on the opposite side of {place}.",
    "{name} walked in the opposite direction {time}.", "It was freezing at {place} {time}.",
    "The water for the {food} was boiling {time}.", "{name} checked the boiling point of {liquid} {time}.",
    "Is {place} bigger than {place2}?", "{name} has a bigger {animal} than {name2}.",
    "{name} threw a round {color} ball {time}.", "{name} found a round stone at {place}.",
    "{name} worked the hardest {time}.", "{name} went walking in the mountains {time}.",
    "{name} can swim underwater for {few} seconds.", "{name} saw {few} penguins at the zoo {time}.",
    "{name} wants something to drink {time}.", "What would {name} like to drink?", "{name} made a good point {time}.",
    "{name} saw a spider in {place} {time}.", "Are there spiders in {place}?", "{name} studied a natural substance {time}.",
    "Is {material} a natural substance?", "{name} flew to {capital} {time}.", "{name} has never been to {capital}.",
    "The {animal} is the favorite animal of {name}.", "What is the favorite animal of {name}?",
    "{name} likes to breathe the fresh air at {place}.", "{name} likes the color {color}.",
    "What color is the {animal} at {place}?", "{name} wants to see every continent one day.",
    "Which continent has the {sup} {landmark}?", "How much did the {food} cost {time}?", "{name} held {thing} {time}.",
    "{name} will be here {time}.", "Do you know {name}?", "I know that {name} is a {job}.",
    "{name} turned on the light {time}.", "The main road to {place} was closed {time}.",
    "{name} put {thing} in the car {time}.", "{name} took a picture of the {animal} {time}.",
    "The {animal} was in the water {time}.", "{name} swam in the ocean {time}.", "{name} saw the moon {time}.",
    "{name} cut one hand on {thing}.", "{name} gave {name2} a hand {time}.", "The plants at {place} grow fast.",
    "{name} saw {few} whales from the boat.", "How many {creatures} did {name} see?",
    "{name} is learning {language} at {place}.", "Does {name} speak {language}?",
    "Many people at {place} speak {language}.", "{language} is spoken at {place}.",
    "{name} fixed {thing} at {place}.", "Is {place} open {time}?", "{name} had a good time at {place}.",
    "{name} looked at {planet} {time}.", "{name} bought something made of {material} {time}.",
    "The {job} was slow {time}.", "The road to {place} was dry {time}.", "{name} ran fast to {place}.",
    "{name} is a big fan of {story}.", "{name} took the bus to {place} {time}.",
    "It is easy to walk to {place}.", "{name} had to eat {food} {time}.", "The {job} was calm {time}.",
    "{name} wants to sleep {time}.", "{name} saw {few} horses and {few2} dogs.", "{name} keeps {few} goats and {few2} ducks.",
    "{name} saw {few} foxes, {few2} bears and {few2} rabbits.", "{name} dropped {thing} {time}.",
    "{name} opened a bank account {time}.", "The company sold {number} boxes of {food}.",
    "{name} will measure {thing} {time}.", "{name} helped {name2} measure the table {time}.",
    "{name} wants a smaller {animal}.", "Is {place} smaller than {place2}?", "{name} saw a bee near {place}.",
    "{name} found an ant in {place} {time}.", "{name} worked harder than {name2}.", "{name} drew a penguin {time}.",
    "The truck to {place} left {time}.", "{name} walked around {place} {time}.", "{name} goes to {place} {time}.",
    "{name} learned {language} {time}.", "{name} asked for the {spice} {time}.", "Is there {spice} in the {food}?",
    "{name} joined the club {time}.", "The trip to {place} was easy for {name}.", "Has {name} ever seen {sky}?",
    "{name} sat at the table {time}.",
]
_FRAMES = _FRAMES + _TOPIC_FRAMES


def _fill(frame: str, rng) -> str:
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    name = pick(_NAMES)
    place, animal = pick(_PLACES), pick(_ANIMALS)
    country, capital, continent, language = pick(_NATIONS)
    part, owners = pick(_COUNTED)
    opp_a, opp_b = pick(_OPPOSITES)
    planet, material, job = pick(_PLANETS), pick(_MATERIALS), pick(_JOBS)
    text = frame.format(animals=_PLURALS[animal], name=name, name2=pick([n for n in _NAMES if n != name]), verb=pick(_VERBS_PAST),
                        thing=pick(_THINGS), time=pick(_TIMES), place=place, place_cap=place[0].upper() + place[1:],
                        adj=pick(_ADJECTIVES), animal=animal, animal2=pick(_ANIMALS), food=pick(_FOODS),
                        number=pick(_NUMBERS), job=job, job2=pick([j for j in _JOBS if j != job]),
                        color=pick(_COLOR_WORDS), weather=pick(_WEATHER),
                        country=country, country_cap=country[0].upper() + country[1:], capital=capital,
                        continent=continent, language=language, sup=pick(_SUPERLATIVES), landmark=pick(_LANDMARKS),
                        planet=planet, planet_cap=planet[0].upper() + planet[1:], sky=pick(_SKY),
                        creatures=pick(_CREATURES), habitat=pick(_HABITATS), part=part, owner=pick(owners),
                        units=pick(_UNITS), unit=pick(_UNIT), time_word=pick(["lunch", "dinner", "the party", "the game"]),
                        liquid=pick(_LIQUIDS), element=pick(_ELEMENTS), material=material,
                        material_cap=material[0].upper() + material[1:], opp_a=opp_a, opp_b=opp_b, story=pick(_STORIES),
                        nature=pick(_NATURE), continent_any=pick(_CONTINENTS), club=pick(_CLUBS), few=pick(_FEW), few2=pick(_FEW), spice=pick(['salt', 'sugar']),
                        planet2=pick([p for p in _PLANETS if p != planet]), food2=pick(_FOODS),
                        place2=pick([p for p in _PLACES if p != place]))
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


def candidates(seed: int, per_frame: int, exclude=()) -> list[str]:
    """Up to `per_frame` distinct sentences of every frame (fewer where a frame has fewer), shuffled, none
    in `exclude`: a pool in which every frame's words are common, for `select_covering`."""
    rng = np.random.default_rng([seed, 2033])
    banned = {e.lower() for e in exclude}
    out, seen = [], set(banned)
    for frame in _FRAMES:
        got, misses = 0, 0
        while got < per_frame and misses < 50:
            s = _fill(frame, rng)
            if s.lower() in seen:
                misses += 1
                continue
            seen.add(s.lower())
            out.append(s)
            got, misses = got + 1, 0
    return [out[i] for i in rng.permutation(len(out))]


def words(sentence: str) -> list[str]:
    """The spoken words of a sentence, lower-cased; a possessive counts as its noun ("Laura's" → laura)."""
    return [re.sub(r"'s$", "", w) for w in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", sentence.lower())]


def test_words(test_sentences=()) -> set[str]:
    """Every word the tests say: all spoken test questions (before any gold filter) and the test sentences."""
    return {w for q, _, _ in TEST_QUESTIONS for w in words(q)} | {w for s in test_sentences for w in words(s)}


def select_covering(candidates: list[str], targets: set[str], count: int, num_voices: int, *, min_heard: int,
                    min_voices: int, engine_of: list[str] | None = None,
                    min_engines: int = 1) -> list[tuple[str, int]]:
    """`count` (sentence, voice index) pairs from `candidates` in which every target word is heard at least
    `min_heard` times by at least `min_voices` voices; voices go round-robin over the picks.

    `engine_of` (one engine per voice index): each target word is also heard from `min_engines` engines.

    Rarest word first: while a word is short of its count or its voices, the next unused candidate that
    carries it is taken (the common words come along in those sentences); then the rest fill up in order.
    Raises ValueError naming the words that stay short (no frame says them often enough), or when
    coverage alone needs more than `count` sentences."""
    heard: Counter = Counter()
    voices: dict[str, set[int]] = {w: set() for w in targets}
    engines: dict[str, set[str]] = {w: set() for w in targets}
    engine_of = engine_of or ["one"] * num_voices
    min_engines = min(min_engines, len(set(engine_of)))
    spoken = [[w for w in set(words(s)) if w in voices] for s in candidates]
    carriers: dict[str, list[int]] = {w: [] for w in targets}
    for i, ws in enumerate(spoken):
        for w in ws:
            carriers[w].append(i)
    taken, picked = set(), []

    def short(w: str) -> bool:
        return heard[w] < min_heard or len(voices[w]) < min_voices or len(engines[w]) < min_engines

    def take(i: int) -> None:
        v = len(picked) % num_voices
        picked.append((candidates[i], v))
        taken.add(i)
        for w in spoken[i]:
            heard[w] += 1
            voices[w].add(v)
            engines[w].add(engine_of[v])

    for w in sorted(targets, key=lambda w: (len(carriers[w]), w)):
        while short(w):  # the carrier that also helps the most other short words (ties: candidate order)
            best = max((i for i in carriers[w] if i not in taken), default=None,
                       key=lambda i: (sum(short(x) for x in spoken[i]), -i))
            if best is None:
                break
            take(best)
    missing = sorted(w for w in targets if short(w))
    if missing:
        raise ValueError(f"test words not heard {min_heard} times by {min_voices} training voices: "
                         f"{', '.join(repr(w) for w in missing[:20])}{' …' if len(missing) > 20 else ''} "
                         f"(add sentences with them to corpus/sentences.py's frames)")
    if len(picked) > count:
        raise ValueError(f"covering the test words takes {len(picked)} training sentences, more than the "
                         f"{count} asked (num_train_sentences)")
    for i in range(len(candidates)):
        if len(picked) >= count:
            break
        if i not in taken:
            take(i)
    return picked


def coverage(train: list[tuple[str, str]], targets: set[str]) -> dict[str, tuple[int, int]]:
    """{word: (times heard in `train`, distinct voices)} for each target word; train: (sentence, voice)."""
    heard: Counter = Counter()
    voices: dict[str, set] = {w: set() for w in targets}
    for s, v in train:
        for w in set(words(s)):
            if w in voices:
                heard[w] += 1
                voices[w].add(v)
    return {w: (heard[w], len(voices[w])) for w in sorted(targets)}
