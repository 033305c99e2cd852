"""Write a small synthetic tool-calling data set: a user asks, the assistant answers with one call.

Five tools (weather, timer, unit conversion, text message, calendar) whose arguments cover the
JSON types a declaration can give: string, integer, number, boolean, and a string with an enum.
Each line of ``train.jsonl`` / ``heldout.jsonl`` is ``{"messages": [...], "tools": [...]}``,
exactly what ``minigemma.chat_render.render`` takes: an optional system message, a user message
and an assistant message with one OpenAI-style ``tool_calls`` entry. Every example offers the
right tool and one or two others (declarations are long) in a random order: the model must choose.

The held-out split is phrased with its own templates and filled with its own values (cities,
names, numbers, times, messages...): a free value (not an enum or a boolean) belongs to one split
only, chosen by a hash of its text, so ``12`` is a held-out value wherever it appears. Optional
arguments appear in a call exactly when the user mentions them. Left out on purpose: multi-turn
conversations, tool responses, parallel calls and requests that need no tool.

    python data/tool_calls/make.py     # rewrites train.jsonl and heldout.jsonl beside this file

Generation is seeded and the offered tools are chosen with the Gemma 3 270M tokenizer (each
rendered example stays within MIN_TOKENS..MAX_TOKENS), so the files are reproducible; ``check``
renders every line in the Gemma 3 spelling and parses the assistant's call back.
"""

import itertools
import json
import random
import re
import statistics
import zlib
from pathlib import Path

from minigemma.chat_parse import parse
from minigemma.chat_render import render
from minigemma.chat_tags import to_gemma3
from minigemma.chat_tools import render_tool

HERE = Path(__file__).resolve().parent
SEED = 0
SIZES = {"train": 600, "heldout": 60}
MIN_TOKENS, MAX_TOKENS = 150, 400  # rendered length of a whole example, gemma3 format, without <bos>
SYSTEM = "You are a model that can do function calling with the following functions"  # FunctionGemma's


def _tool(name, description, properties, required):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


STRING, INTEGER, NUMBER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# The unit tool takes plain strings named in its description (an enum would cost ~90 tokens more,
# as every enum entry is written between two <escape> markers of 3 tokens each in this vocabulary).
TOOLS = {
    "get_weather": _tool("get_weather", "Get the weather forecast for a city.", {
        "city": STRING, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": INTEGER}, ["city"]),
    "set_timer": _tool("set_timer", "Start a countdown timer.", {"minutes": INTEGER, "label": STRING}, ["minutes"]),
    "convert_units": _tool("convert_units", "Convert a quantity. Units: km, miles, kg, pounds, celsius, fahrenheit.", {
        "value": NUMBER, "from_unit": STRING, "to_unit": STRING}, ["value", "from_unit", "to_unit"]),
    "send_message": _tool("send_message", "Send a text message to a contact.", {
        "recipient": STRING, "text": STRING, "urgent": BOOLEAN}, ["recipient", "text"]),
    "create_event": _tool("create_event", "Add an event to the calendar.", {
        "title": STRING, "day": {"type": "string", "enum": DAYS}, "time": {"type": "string", "description": "HH:MM"},
        "duration_minutes": INTEGER}, ["title", "day", "time"]),
}

# tool -> split -> [(template, fixed arguments)]. A {slot} is an argument of the same name.
TEMPLATES = {
    "get_weather": {
        "train": [("What's the weather like in {city}?", {}), ("Is it going to rain in {city} today?", {}),
                  ("Give me the {days}-day forecast for {city}.", {}), ("Weather in {city} in {unit}, please.", {}),
                  ("How hot will it get in {city} over the next {days} days? Use {unit}.", {}),
                  ("I'm flying to {city} tomorrow. What's the forecast there?", {}),
                  ("Check the weather for {city}.", {}), ("Forecast for {city}, {days} days, in {unit}.", {}),
                  ("Do I need a jacket in {city} right now?", {}), ("Tell me the temperature in {city} in {unit}.", {}),
                  ("weather {city}", {}), ("Will it be sunny in {city} this weekend?", {}), ("How cold is it in {city}?", {}),
                  ("Can you check the weather in {city} for the next {days} days?", {}),
                  ("I'd like the weather in {city}, in {unit}.", {}), ("Show me {days} days of weather for {city}.", {}),
                  ("Is it windy in {city} at the moment?", {}), ("temperature in {city} please, {unit}", {}),
                  ("Planning a trip to {city}: what's the weather for the next {days} days?", {}),
                  ("Is it snowing in {city}? Answer in {unit}.", {}),
                  ("What will the weather be in {city} for the next {days} days?", {}), ("Any rain expected in {city}?", {}),
                  ("{city} weather, {unit}, next {days} days", {}), ("Look up the forecast for {city}, please.", {}),
                  ("Tell me how warm it is in {city} in {unit}.", {}),
                  ("Heading to {city} for {days} days. What's the weather going to be?", {}),
                  ("Is it nice out in {city}?", {}), ("What should I wear in {city} today?", {})],
        "heldout": [("Could you look up the weather in {city} for the coming {days} days?", {}),
                    ("Should I pack an umbrella for {city}? Temperatures in {unit}, please.", {}),
                    ("what's it like outside in {city}", {}),
                    ("Next {days} days in {city}: what weather should I expect, in {unit}?", {})],
    },
    "set_timer": {
        "train": [("Set a timer for {minutes} minutes.", {}), ("Start a {minutes}-minute timer for the {label}.", {}),
                  ("Timer, {minutes} minutes.", {}), ("Can you time {minutes} minutes for my {label}?", {}),
                  ("Count down {minutes} minutes please.", {}),
                  ("Remind me in {minutes} minutes that the {label} is done.", {}),
                  ("I need a {minutes} minute timer labelled {label}.", {}),
                  ("Put a {label} timer on for {minutes} minutes.", {}),
                  ("Set an alarm to go off in {minutes} minutes.", {}),
                  ("timer for {minutes} min", {}), ("{minutes} minutes on the {label}, please.", {}),
                  ("Wake me up in {minutes} minutes.", {}), ("Let me know when {minutes} minutes have passed.", {}),
                  ("Set the {label} timer: {minutes} minutes.", {}), ("start a timer, {minutes} min", {}),
                  ("The {label} takes {minutes} minutes. Time it for me.", {}),
                  ("Alert me after {minutes} minutes for the {label}.", {}), ("Tell me when {minutes} minutes are up.", {}),
                  ("Please set a {minutes} minute timer.", {}), ("Time my {label}: {minutes} minutes.", {}),
                  ("Start a timer for the {label}, {minutes} minutes.", {}),
                  ("I'm making {label}. Set a timer for {minutes} minutes.", {}), ("{minutes} min countdown", {}),
                  ("Let me know in {minutes} minutes.", {}), ("Go off in {minutes} minutes, it's for the {label}.", {})],
        "heldout": [("Please start counting down from {minutes} minutes.", {}),
                    ("The {label} needs {minutes} minutes, can you set a timer?", {}),
                    ("ping me after {minutes} min", {}),
                    ("Give me {minutes} minutes on the clock for the {label}.", {})],
    },
    "convert_units": {
        "train": [("Convert {value} {from_unit} to {to_unit}.", {}), ("How many {to_unit} is {value} {from_unit}?", {}),
                  ("What is {value} {from_unit} in {to_unit}?", {}), ("{value} {from_unit} to {to_unit}, please.", {}),
                  ("Please change {value} {from_unit} into {to_unit}.", {}),
                  ("Could you express {value} {from_unit} in {to_unit}?", {}),
                  ("Turn {value} {from_unit} into {to_unit} for me.", {}),
                  ("{value} {from_unit} equals how many {to_unit}?", {}),
                  ("convert {value} {from_unit} into {to_unit}", {}), ("How much is {value} {from_unit} in {to_unit}?", {}),
                  ("What's {value} {from_unit} when converted to {to_unit}?", {}),
                  ("I need {value} {from_unit} expressed in {to_unit}.", {}),
                  ("Quick conversion: {value} {from_unit} to {to_unit}", {}),
                  ("Can you tell me what {value} {from_unit} is in {to_unit}?", {}),
                  ("My recipe says {value} {from_unit}. How many {to_unit} is that?", {}),
                  ("Convert from {from_unit} to {to_unit}: {value}", {}), ("{value} {from_unit}, how much in {to_unit}?", {}),
                  ("What does {value} {from_unit} come to in {to_unit}?", {}),
                  ("Please work out {value} {from_unit} in {to_unit}.", {}),
                  ("The sign says {value} {from_unit}. What is that in {to_unit}?", {})],
        "heldout": [("I have {value} {from_unit}; what's that in {to_unit}?", {}),
                    ("Need {value} {from_unit} converted to {to_unit}", {}),
                    ("If something measures {value} {from_unit}, how much is it in {to_unit}?", {})],
    },
    "send_message": {
        "train": [("Text {recipient}: {text}", {}), ('Send {recipient} a message saying "{text}".', {}),
                  ('Urgent: tell {recipient} "{text}"', {"urgent": True}),
                  ("Send an urgent text to {recipient}: {text}", {"urgent": True}),
                  ('Let {recipient} know "{text}", no rush.', {"urgent": False}),
                  ('Drop {recipient} a non-urgent note: "{text}"', {"urgent": False}),
                  ('Can you message {recipient}? Say "{text}".', {}), ("Please send this to {recipient}: {text}", {}),
                  ('Tell {recipient} "{text}" right away, it\'s urgent.', {"urgent": True}),
                  ("Message {recipient}: {text}", {}), ('Tell {recipient} "{text}".', {}), ("text {recipient}: {text}", {}),
                  ('Send a message to {recipient} that says "{text}"', {}), ("Please let {recipient} know: {text}", {}),
                  ("Reply to {recipient}: {text}", {}), ('Could you send "{text}" to {recipient}?', {}),
                  ('It\'s an emergency, message {recipient}: "{text}"', {"urgent": True}),
                  ("Immediately text {recipient}: {text}", {"urgent": True}),
                  ('Send {recipient} an urgent message: "{text}"', {"urgent": True}),
                  ("No hurry, but text {recipient}: {text}", {"urgent": False}),
                  ('When you get a chance, tell {recipient} "{text}".', {"urgent": False}),
                  ('Low priority: message {recipient} "{text}"', {"urgent": False}),
                  ("Send {recipient} this: {text}", {}), ('Message for {recipient}: "{text}"', {}),
                  ("Can you text {recipient} for me? {text}", {}), ('Forward "{text}" to {recipient}.', {}),
                  ('Let {recipient} know right now: "{text}"', {"urgent": True}),
                  ("This is urgent. Text {recipient}: {text}", {"urgent": True}),
                  ('Not urgent: tell {recipient} "{text}"', {"urgent": False}),
                  ("It can wait, but message {recipient}: {text}", {"urgent": False})],
        "heldout": [('Write to {recipient} with "{text}"', {}),
                    ('{recipient} needs to hear this ASAP: "{text}"', {"urgent": True}),
                    ('Whenever convenient, pass "{text}" along to {recipient}.', {"urgent": False}),
                    ("shoot {recipient} a quick text: {text}", {})],
    },
    "create_event": {
        "train": [("Schedule a {title} on {day} at {time}.", {}), ('Add "{title}" to my calendar for {day} at {time}.', {}),
                  ("Book {duration_minutes} minutes for {title} on {day} at {time}.", {}),
                  ("Put a {duration_minutes}-minute {title} in the calendar, {day} {time}.", {}),
                  ("Create an event called {title} on {day} at {time}.", {}),
                  ("I have a {title} {day} at {time}, please add it.", {}),
                  ("New calendar entry: {title}, {day}, {time}, {duration_minutes} minutes.", {}),
                  ("Block {day} at {time} for a {title}.", {}),
                  ("Remind me about the {title} on {day} at {time}; it lasts {duration_minutes} minutes.", {}),
                  ("Set up a {title} for {day} at {time}.", {}),
                  ("Add {title} on {day}, {time}, for {duration_minutes} minutes.", {}),
                  ("Can you book a {title} at {time} on {day}?", {}),
                  ("I need {duration_minutes} minutes on {day} at {time} for {title}.", {}),
                  ("calendar: {title} {day} {time}", {}), ("Schedule {title} for {day} {time}, {duration_minutes} min.", {}),
                  ("Make a calendar event: {title} at {time} on {day}, lasting {duration_minutes} minutes.", {}),
                  ("Save a {title} on {day} at {time}.", {}),
                  ("Hold {duration_minutes} minutes for a {title} at {time} on {day}.", {}),
                  ("Put {title} on my calendar on {day} at {time}.", {}),
                  ("{title}, {day} at {time}, {duration_minutes} minutes long.", {}),
                  ("Add a {duration_minutes} minute {title} on {day} at {time}.", {}),
                  ("Please schedule {title} at {time} on {day}.", {}),
                  ("There's a {title} on {day} at {time}. Add it to the calendar.", {}),
                  ("Reserve {day} {time} for {title}.", {}),
                  ("I'll be at a {title} on {day} from {time} for {duration_minutes} minutes. Add it.", {})],
        "heldout": [("Pencil in {title} for {time} on {day}.", {}),
                    ("Could you reserve {duration_minutes} minutes on {day} starting {time} for {title}?", {}),
                    ("My calendar needs a {title} at {time} this {day}", {}),
                    ("{day}, {time}: {title}. Please save it.", {})],
    },
}

# Free values: each is held out or not by its hash (``is_heldout``), wherever it appears.
CITIES = ["Paris", "Tokyo", "Nairobi", "Lima", "Oslo", "Toronto", "Mumbai", "Cairo", "Sydney", "Berlin",
          "Madrid", "Seoul", "Chicago", "Dublin", "Hanoi", "Lagos", "Quito", "Vienna", "Zürich", "São Paulo",
          "Reykjavik", "Auckland", "Denver", "Marrakesh", "Kraków", "Bangkok", "Istanbul", "Havana",
          "Montréal", "Nice", "Perth", "Boston", "Lisbon", "Osaka", "Santiago", "Tunis", "Helsinki", "Manila"]
NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lucas", "Priya", "Olga", "Sam", "Fatima", "Noah", "Zoë", "José",
         "Ingrid", "Mei", "Omar", "Grace", "Ravi", "Chloe", "Dmitri", "Amara", "Leo", "Hannah", "Tariq",
         "Yuki", "Elena", "Ben", "Nadia", "Felix", "Ana", "Kwame", "Sofia", "Ivan", "Lena", "Marco"]
LABELS = ["pasta", "laundry", "tea", "eggs", "bread", "rice", "pizza", "cookies", "workout", "nap",
          "meditation", "soup", "stretching", "homework", "cake", "roast", "coffee", "yoga", "parking meter",
          "face mask", "lasagna", "oatmeal", "dough", "steak", "potatoes", "muffins", "brownies", "pancakes",
          "chicken", "beans", "noodles", "popcorn"]
TEXTS = ["I'm running ten minutes late", "Dinner is at seven", "Can you pick up milk?", "The meeting moved to Thursday",
         "Happy birthday!", "Call me when you land", "Don't forget the keys", "See you at the station",
         "I left the report on your desk", "Good luck today", "The package arrived", "Let's reschedule lunch",
         "Bring your laptop tomorrow", "I'll be home by six", "Thanks for the flowers", "Where did you park?",
         "The car is ready", "Meet me at the café", "We won the game!", "Your train leaves at 8:15",
         "The dog needs a walk", "Movie starts at nine, don't be late", "I found your wallet",
         "Traffic is terrible, start without me", "Please water the plants", "Grandma says hi",
         "The wifi password changed", "Pizza or sushi tonight?", "Landed safely", "Running a bit behind, sorry"]
TITLES = ["dentist appointment", "team meeting", "yoga class", "piano lesson", "haircut", "budget review",
          "parent-teacher meeting", "code review", "book club", "doctor's appointment", "tennis match",
          "job interview", "project kickoff", "car service", "coffee chat", "Spanish lesson", "board meeting",
          "gym session", "vet appointment", "design review", "study group", "volunteer shift", "guitar lesson",
          "sprint planning", "eye exam", "swim practice", "chess club", "one-on-one", "lunch meeting", "flu shot"]
TIMES = ["07:30", "08:00", "08:15", "09:00", "09:30", "10:00", "10:45", "11:00", "11:20", "12:00", "12:30",
         "13:15", "14:00", "14:30", "15:00", "15:45", "16:00", "16:30", "17:00", "17:10", "18:00", "18:30",
         "19:00", "19:45", "20:00", "21:15", "06:45", "07:00", "08:40", "10:15", "11:45", "13:00", "13:40",
         "14:50", "16:15", "17:30", "20:30", "22:00"]
NUMBERS = {
    "days": list(range(1, 11)),
    "minutes": list(range(1, 91)),
    "duration_minutes": [15, 20, 25, 30, 40, 45, 50, 60, 75, 90, 120, 150, 180],
    "distance": [1, 2, 5, 8, 10, 12.5, 21.1, 26.2, 42.195, 100, 3.5, 0.8, 15, 250, 7.25, 60, 4.2, 13.1, 3, 6,
                 9.5, 16, 20, 30, 50, 1.6, 400, 5.5],
    "mass": [0.5, 1, 2.2, 3, 4.5, 10, 25, 68, 70, 150, 180, 0.25, 7.7, 12, 200, 55],
    "temperature": [-40, -12, -3.5, 0, 4, 18.5, 20, 22, 25, 30, 37, 37.5, 98.6, 100, 212, 72, 65, -7],
}
POOLS = {"city": CITIES, "recipient": NAMES, "label": LABELS, "text": TEXTS, "title": TITLES, "time": TIMES,
         **{k: NUMBERS[k] for k in ("days", "minutes", "duration_minutes")}}
UNIT_WORDS = {"km": ["km", "kilometers", "kilometres"], "miles": ["miles"], "kg": ["kg", "kilograms", "kilos"],
              "pounds": ["pounds", "lbs"], "celsius": ["°C", "degrees Celsius", "Celsius"],
              "fahrenheit": ["°F", "degrees Fahrenheit", "Fahrenheit"]}
UNIT_PAIRS = [("km", "miles", "distance"), ("miles", "km", "distance"), ("kg", "pounds", "mass"),
              ("pounds", "kg", "mass"), ("celsius", "fahrenheit", "temperature"), ("fahrenheit", "celsius", "temperature")]
WEATHER_WORDS = {"celsius": ["Celsius", "°C", "degrees Celsius"], "fahrenheit": ["Fahrenheit", "°F", "degrees Fahrenheit"]}
# Arguments whose values come from a closed list (an enum, the units the description names, a
# boolean): both splits use them. Every other value is free and belongs to one split (``is_heldout``).
CLOSED = {"unit", "day", "from_unit", "to_unit", "urgent"}


def is_heldout(value) -> bool:
    """A free value's split, the same wherever it appears: about one value in four is held out."""
    return zlib.crc32(f"tool_calls:{value}".encode()) % 4 == 0


def split_pool(pool, split):
    return [v for v in pool if is_heldout(v) == (split == "heldout")]


def slots(template):
    return re.findall(r"\{(\w+)\}", template)


def _fill(tool, template, fixed, split, rng):
    """One (user text, arguments) for ``template``. The arguments come in the order the model sees
    in the declaration, where ``render`` sorts the keys (``city, days, unit``), not in ours."""
    values, words = dict(fixed), {}
    names = slots(template)
    if tool == "convert_units":
        values["from_unit"], values["to_unit"], kind = rng.choice(UNIT_PAIRS)
        values["value"] = rng.choice(split_pool(NUMBERS[kind], split))
        words = {k: rng.choice(UNIT_WORDS[values[k]]) for k in ("from_unit", "to_unit")}
    for name in names:
        if name == "unit":
            values[name] = rng.choice(["celsius", "fahrenheit"])
            words[name] = rng.choice(WEATHER_WORDS[values[name]])
        elif name == "day":
            values[name] = rng.choice(DAYS)
            words[name] = values[name].capitalize()
        elif name in POOLS:
            values[name] = rng.choice(split_pool(POOLS[name], split))
    text = template.format(**{n: words.get(n, values.get(n)) for n in names})
    properties = TOOLS[tool]["function"]["parameters"]["properties"]
    return text, {k: values[k] for k in sorted(properties) if k in values}


def _offered(tool, messages, tokenizer, decl, rng):
    """The right tool and 1-3 others (in practice 1-2: declarations are long), in a random order,
    chosen among the sets that keep the example within MAX_TOKENS. ``decl``: name -> its tokens."""
    alone = len(tokenizer.encode(render(messages, tools=[TOOLS[tool]], format="gemma3", add_generation_prompt=False)))
    others = [n for n in TOOLS if n != tool]
    fits = [s for k in (1, 2, 3) for s in itertools.combinations(others, k)
            if alone + sum(decl[n] for n in s) <= MAX_TOKENS]  # ``check`` tests the true length
    names = [tool, *rng.choice(fits)]
    rng.shuffle(names)
    return [TOOLS[n] for n in names]


def build(tokenizer, seed=SEED) -> dict:
    """-> {"train": [example, ...], "heldout": [...]}, each example {"messages", "tools"}."""
    decl = {name: len(tokenizer.encode(to_gemma3(render_tool(t)))) for name, t in TOOLS.items()}
    out = {}
    for split, size in SIZES.items():
        rng = random.Random(f"{seed}:{split}")  # one stream per split: more training data leaves the held-out set alone
        plan = []  # the tools take turns; each tool's templates take turns
        for i in range(size):
            tool = list(TOOLS)[i % len(TOOLS)]
            templates = TEMPLATES[tool][split]
            plan.append((tool, templates[i // len(TOOLS) % len(templates)]))
        rng.shuffle(plan)
        examples, seen = [], set()
        for tool, (template, fixed) in plan:
            text, args = _fill(tool, template, fixed, split, rng)
            while text in seen:  # no duplicate requests within a split
                text, args = _fill(tool, template, fixed, split, rng)
            seen.add(text)
            messages = ([{"role": "system", "content": SYSTEM}] if rng.random() < 0.5 else []) + [
                {"role": "user", "content": text},
                {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": tool, "arguments": args}}]}]
            examples.append({"messages": messages, "tools": _offered(tool, messages, tokenizer, decl, rng)})
        out[split] = examples
    return out


def expected_call(example):
    """The assistant's call: (name, arguments)."""
    call = example["messages"][-1]["tool_calls"][0]["function"]
    return call["name"], call["arguments"]


def typed(value):
    """A value with the type of every part spelled out, so that equality also compares types."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def template_of(text, tool):
    """-> (split, template) of the templates of ``tool`` that can produce ``text`` (all of them)."""
    found = []
    for split, templates in TEMPLATES[tool].items():
        for template, _ in templates:
            pattern = "".join("(.+)" if re.fullmatch(r"\{\w+\}", p) else re.escape(p)
                              for p in re.split(r"(\{\w+\})", template))
            if re.fullmatch(pattern, text):
                found.append((split, template))
    return found


def free_values(example):
    """The call's values that do not come from a closed list (``CLOSED``), JSON-typed."""
    return {json.dumps(typed(v)) for k, v in expected_call(example)[1].items() if k not in CLOSED}


def check(splits, tokenizer) -> dict:
    """Render every example (gemma3), parse its call back, check lengths and the held-out split.

    -> {split: [rendered length in tokens, ...]}; raises AssertionError on the first problem.
    """
    lengths = {}
    for split, examples in splits.items():
        lengths[split] = []
        for n, ex in enumerate(examples):
            assert set(ex) == {"messages", "tools"}, f"{split} {n}: keys {sorted(ex)}"
            full = render(ex["messages"], tools=ex["tools"], format="gemma3", add_generation_prompt=False)
            prompt = render(ex["messages"][:-1], tools=ex["tools"], format="gemma3")
            assert full.startswith(prompt), f"{split} {n}: the prompt is not a prefix of the training text"
            got = parse(full[len(prompt):], format="gemma3")
            name, args = expected_call(ex)
            assert [(c["name"], typed(c["arguments"])) for c in got["tool_calls"]] == [(name, typed(args))], \
                f"{split} {n}: {got['tool_calls']} != {name} {args}"
            assert got["content"] == "" and TOOLS[name] in ex["tools"] and len(ex["tools"]) >= 2, f"{split} {n}"
            ids = tokenizer.encode(full)  # a trainer may tokenize the prompt and the answer apart:
            assert ids == tokenizer.encode(prompt) + tokenizer.encode(full[len(prompt):]), f"{split} {n}: ids"
            assert MIN_TOKENS <= len(ids) <= MAX_TOKENS, f"{split} {n}: {len(ids)} tokens"
            splits_fit = {s for s, _ in template_of(ex["messages"][-2]["content"], name)}
            assert splits_fit == {split}, f"{split} {n}: phrased by templates of {splits_fit}"
            lengths[split].append(len(ids))
    for tool in TOOLS:
        train, held = (set(t for t, _ in TEMPLATES[tool][s]) for s in ("train", "heldout"))
        assert not train & held, f"{tool}: templates in both splits: {train & held}"
    train_values = set().union(*(free_values(ex) for ex in splits["train"]))
    held_values = set().union(*(free_values(ex) for ex in splits["heldout"]))
    assert not train_values & held_values, f"values in both splits: {train_values & held_values}"
    return lengths


def write(directory=HERE, tokenizer=None) -> dict:
    """Build, check and write ``train.jsonl`` and ``heldout.jsonl`` into ``directory`` -> lengths."""
    if tokenizer is None:
        from minigemma.tokenizer import Tokenizer
        from minigemma.weights import resolve

        tokenizer = Tokenizer.from_file(resolve("gemma3-270m"))
    splits = build(tokenizer)
    lengths = check(splits, tokenizer)
    for split, examples in splits.items():
        lines = [json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples]
        (Path(directory) / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    return lengths


if __name__ == "__main__":
    for split, ls in write().items():
        q = statistics.quantiles(ls, n=4)
        print(f"{split}: {len(ls)} examples, tokens min {min(ls)} / q1 {q[0]:.0f} / median {q[1]:.0f} / "
              f"q3 {q[2]:.0f} / max {max(ls)}")
