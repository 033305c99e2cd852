# %% [markdown]
# # 11 · Chat, thinking and tools: the conversation format, tool calls, and JSON on demand
#
# **What you will learn**
# - that a "chat" is one long string: how Gemma 4 marks turns, roles, thoughts and tool traffic
#   with tags, and what those tags cost in tokens;
# - how thinking is switched on (`<|think|>`) and how a thought is separated from the answer;
# - a full tool round trip: declare a Python function, let the model call it, run the function,
#   hand the result back inside the same model turn;
# - **constrained decoding**: making even a small base model write valid JSON (or a valid tool
#   call) every time, by forbidding the tokens that would break the format — and what that mask
#   looks like step by step.
#
# **Prerequisites:** notebooks 00 (generation) and 01 (tokenizer).
#
# Our renderer, `minigemma.chat.render`, is written from scratch and equals Google's reference
# renderer (the `dialog` package that Google's JAX `gemma` library uses) on 80 random
# conversations stored in `tests/golden/chat_golden.json`; the parser equals dialog's on them and
# on 79 model outputs.

# %%
# NBVAL_IGNORE_OUTPUT
import json
import torch
import matplotlib.pyplot as plt
import minigemma
from minigemma import chat
from minigemma.chat import render, parse, parse_conversation
from minigemma.constrained import JSONConstraint
from minigemma.generate import generate_ids
from minigemma.json_machine import Value

model, tokenizer = minigemma.load("gemma3-270m", progress=False)

# %% [markdown]
# ## 1. A conversation is one string
# The messages below use the shape most libraries use (OpenAI / Hugging Face): a list of
# `{"role": ..., "content": ...}` dicts. `render` writes them the way Gemma 4 reads them. The
# `add_generation_prompt=True` default ends with an open `<|turn>model\n`: the model's turn starts
# there, and generating text *is* answering.

# %%
messages = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 2+3?"},
    {"role": "assistant", "content": "5."},
    {"role": "user", "content": "And 2*3?"},
]
prompt = render(messages)
print(prompt)

# %% [markdown]
# Four things to notice:
# - each turn is `<|turn>ROLE\n … <turn|>`, and turns are joined by a newline;
# - the assistant's role is called `model`;
# - the end of the string is an *open* model turn: no `<turn|>` yet — the model will write it when
#   it is done, and generation stops there (the **stop** token, id 106 in Gemma 4's vocabulary);
# - with `add_generation_prompt=False` every turn is closed: that is the training form.
#
# **Gemma 3 had no system turn.** Gemma 3's instruction-tuned models know two roles, `user` and
# `model` ([Gemma formatting and system instructions](https://ai.google.dev/gemma/docs/formatting));
# the chat template shipped with them (in the tokenizer config of, e.g.,
# [gemma-3-270m-it](https://huggingface.co/google/gemma-3-270m-it)) has no system turn: it puts a
# system message, followed by a blank line, at the start of the first user turn. A few lines
# write that template for plain-text messages:

# %%
def gemma3_template(messages):
    """Gemma 3's own chat template, text only (its leading <bos> left out, as render leaves it
    out): the system text opens the first user turn."""
    system = messages[0]["content"] + "\n\n" if messages[0]["role"] == "system" else ""
    turns = messages[1:] if system else messages
    text = ""
    for k, m in enumerate(turns):
        role = "model" if m["role"] == "assistant" else m["role"]
        text += f"<start_of_turn>{role}\n{system if k == 0 else ''}{m['content']}<end_of_turn>\n"
    return text + "<start_of_turn>model\n"

print(gemma3_template(messages))

# %% [markdown]
# `render(..., format="gemma3")` writes something else: the structure of **Gemma 4** (a system
# turn, tool declarations inside it, calls and responses inside the model turn) spelled with Gemma
# 3 token names. It is the `dialog` package's `gemma3` spelling, and the format of
# [FunctionGemma](https://ai.google.dev/gemma/docs/functiongemma/formatting-and-best-practices),
# Google's Gemma 3 270M fine-tuned for tool calls: turns are `<start_of_turn>` … `<end_of_turn>`,
# tools use `<start_function_declaration>`, `<start_function_call>`, `<start_function_response>`,
# and strings sit between `<escape>` tokens. (FunctionGemma's own examples name the first turn
# `developer`; `dialog` keeps `system`.) It is the format our own tuned 270M reads in section 4:

# %%
print(render(messages, format="gemma3"))

# %% [markdown]
# ## 2. Token-level anatomy
# In Gemma 4's own vocabulary every tag is **one** special token. Our tokenizer is Gemma 3's, which
# knows `<start_of_turn>` and `<end_of_turn>` as single tokens but has never heard of `<|turn>`:
# it spells it out of ordinary pieces. Let us colour each token of both renderings by what it is.

# %%
KIND_COLOURS = {"special token": "#d62728", "tag spelled in pieces": "#ff9896", "role": "#1f77b4", "text": "#dddddd"}

def token_kinds(text):
    ids = tokenizer.encode(text)
    pieces = [tokenizer.decode([i]) for i in ids]
    kinds, inside_tag = [], False
    for i, p in zip(ids, pieces):
        if tokenizer.id_to_piece(i) in tokenizer.special and len(p) > 1:
            kinds.append("special token")
        elif "<" in p or inside_tag or "|" in p:
            inside_tag = ">" not in p
            kinds.append("tag spelled in pieces")
        elif p in ("user", "model", "system"):
            kinds.append("role")
        else:
            kinds.append("text")
    return pieces, kinds

# %%
def draw_tokens(ax, text, title, per_row=16):
    pieces, kinds = token_kinds(text)
    for n, (p, k) in enumerate(zip(pieces, kinds)):
        r, c = divmod(n, per_row)
        ax.add_patch(plt.Rectangle((c, -r), 0.95, 0.9, color=KIND_COLOURS[k]))
        ax.text(c + 0.47, -r + 0.45, repr(p)[1:-1][:7], ha="center", va="center", fontsize=6.5)
    ax.set_xlim(0, per_row); ax.set_ylim(-(len(pieces) // per_row) - 0.2, 1)
    ax.set_title(f"{title}: {len(pieces)} tokens"); ax.axis("off")

short = [{"role": "user", "content": "What is 2+3?"}]
spellings = {"Gemma 4 format, Gemma 3 tokenizer": render(short), "gemma3 spelling": render(short, format="gemma3")}
fig, axes = plt.subplots(2, 1, figsize=(11, 4.2))
for ax, (title, text) in zip(axes, spellings.items()):
    draw_tokens(ax, text, title)
    print(f"{title}: {len(tokenizer.encode(text))} tokens")
print("<start_function_call> in the 270M's vocabulary:", len(tokenizer.encode("<start_function_call>")), "pieces")
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
fig.legend(handles, KIND_COLOURS, loc="lower center", ncol=4, fontsize=8)
plt.show()

# %% [markdown]
# The same one-line question costs 22 tokens in the Gemma 4 spelling under Gemma 3's vocabulary
# and only 15 in the gemma3 spelling, where each turn tag is one token (the red boxes); for one
# user turn that spelling is also Gemma 3's own template. A tokenizer and a chat format are
# designed together: a model learns a tag best when the tag is one token it cannot confuse with
# text a user types. That is why, with our Gemma 3 model, `chat()` picks the
# gemma3 spelling automatically (`chat.chat_format(tokenizer)`). Its tool tags, though, are not
# single tokens in the base 270M's vocabulary (`<start_function_call>` is 7 pieces); FunctionGemma's
# tokenizer has them as special tokens.

# %% [markdown]
# ## 3. Thinking
# Gemma 4 can reason before answering. The switch is one token, `<|think|>`, at the start of the
# system turn; the model then writes its reasoning in a **thought channel**
# `<|channel>thought\n … <channel|>` and the answer after it.

# %%
print(render([{"role": "user", "content": "Is 91 prime?"}], thinking=True))

# %% [markdown]
# Our 270M model cannot think (it has never seen these tags), so here is what a thinking model
# writes in its turn, and what `parse` makes of it: the thought goes to `reasoning`, the answer to
# `content`.

# %%
model_turn = ("<|channel>thought\n91 = 7 × 13, so it has divisors other than 1 and itself.<channel|>"
              "No: 91 = 7 × 13.<turn|>")
reply = parse(model_turn)
print(json.dumps(reply, ensure_ascii=False, indent=1))

# %% [markdown]
# **Streaming.** `chat(..., on_event=...)` reports the model's turn while it is written. The reader
# behind it is the one `parse` uses, fed piece by piece: it reports only what is certain, so a
# half-written `<|tool` waits for the next piece, and a tool call comes out whole when it closes.

# %%
stream = chat.StreamParser()
for piece in ["<|channel>thou", "ght\nadd them<chan", "nel|>It is <|tool", "_call>call:add{a:2,b:3}<tool_call|>"]:
    print(f"{piece!r:40} -> {stream.feed(piece)}")
print("close ->", stream.close())
print("message:", stream.message)

# %% [markdown]
# **Stripping the thought.** A thought is for the model's current answer only: when the
# conversation goes on, clients usually drop earlier thoughts to save context (Google's `dialog`
# has `strip_thoughts()` for it). With our messages that is simply leaving `reasoning` out:

# %%
history = [{"role": "user", "content": "Is 91 prime?"}, reply, {"role": "user", "content": "And 97?"}]
kept = render(history, thinking=True)
stripped = render(history[:1] + [{**reply, "reasoning": None}] + history[2:], thinking=True)
print(f"with the thought: {len(tokenizer.encode(kept))} tokens, without: {len(tokenizer.encode(stripped))} tokens")
print(stripped)

# %% [markdown]
# ## 4. Tools: declare, call, run, answer
# A tool is declared with a JSON schema of its arguments. Gemma writes declarations, calls and
# responses in its own compact notation: keys unquoted, types upper-case, keys sorted, strings
# between `<|"|>` delimiters (so a string may contain quotes or commas without escaping).

# %%
def get_weather(city: str, unit: str) -> dict:
    """A real Python function the model may call (made-up but deterministic weather)."""
    temperature = 10 + sum(map(ord, city)) % 15
    return {"city": city, "temperature": temperature if unit == "celsius" else round(temperature * 9 / 5 + 32),
            "unit": unit, "sky": "clear"}

WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city",
                "parameters": {"type": "object", "required": ["city", "unit"], "properties": {
                    "city": {"type": "string", "maxLength": 20, "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}
print(chat.render_tool(WEATHER_TOOL))

# %% [markdown]
# Now the round trip, on the real 270M model. A base model does not know it may call tools, so we
# *force* a call with `tool_choice="get_weather"`: the constrained decoder of section 5 only lets
# it write a call whose arguments are valid for the schema. Which city and which unit is still the
# model's own choice.

# %%
# NBVAL_IGNORE_OUTPUT
conversation = [{"role": "user", "content": "What's the weather like in Paris today?"}]
call_turn = chat.chat(model, tokenizer, conversation, tools=[WEATHER_TOOL], tool_choice="get_weather",
                      max_new_tokens=80)
call = call_turn["tool_calls"][0]
print("the model calls:", call)

# %%
result = get_weather(**call["arguments"])  # we run the real function with the model's arguments
conversation += [call_turn, {"role": "tool", "name": call["name"], "content": result}]
print(render(conversation, tools=[WEATHER_TOOL]))

# %% [markdown]
# Read the end of that string: the call `<|tool_call>call:get_weather{…}<tool_call|>`, then the
# response `<|tool_response>response:get_weather{…}<tool_response|>` **inside the same model turn**,
# and the turn is still open. A model trained for tools now goes on with its answer, written from
# the response — the last step of the loop in Google's
# [function-calling guide](https://ai.google.dev/gemma/docs/capabilities/function-calling). Neither
# model in this notebook was trained for that step: the base 270M has never seen a tool response
# (it copies the pattern in front of it), and the adapter below learned only the call (every
# training conversation of notebook 14 ends with it). So we stop the loop here, and section 6 shows
# the function's result as the application's answer.

# %% [markdown]
# **A model trained for tools decides by itself.** The forced call above works with any model, but
# this model did not *choose* to call. Notebook 14 fine-tunes this same 270M on tool calls, as
# Google did to make [FunctionGemma](https://ai.google.dev/gemma/docs/functiongemma); its adapter is
# committed in `data/tool_calls/adapter/`. Both models get a request from that data's held-out set
# (a phrasing and values training never saw), with no `tool_choice`:

# %%
import tool_calls  # notebook 14's scorer, beside the notebooks
from minigemma.lora import load_adapter

tuned, _ = minigemma.load("gemma3-270m", progress=False)
load_adapter(tuned, tool_calls.DATA / "adapter")
request = tool_calls.read_jsonl(tool_calls.DATA / "heldout.jsonl")[4]
question, offered = request["messages"][:-1], request["tools"]
print("user: ", question[-1]["content"])
print("base: ", repr(tool_calls.answer(model, tokenizer, request, max_new_tokens=24)))
turn = chat.chat(tuned, tokenizer, question, tools=offered, max_new_tokens=tool_calls.MAX_NEW_TOKENS)
print("tuned:", turn)
assert tool_calls.is_correct(tool_calls.expected_call(request), turn["tool_calls"])

# %% [markdown]
# The base model writes on in the style of the prompt; the tuned model's turn parses into one
# call with typed arguments, ready for the loop above. Notebook 14 measures both on the whole
# held-out set, and shows where the tuned one still goes wrong.

# %% [markdown]
# ## 5. Constrained decoding: JSON every time
# Ask the base model for JSON and it may or may not oblige. The idea of constrained decoding: at
# each step, **forbid every token that would make the output invalid**, and let the model choose
# among the rest. Greedy decoding then takes the most likely *allowed* token.
#
# ```
# logits ──► mask (allowed tokens for the current state) ──► argmax / sample ──► advance the state
#              ▲                                                                     │
#              └──────────── state machine of the schema (inside a string, after a key, …) ◄┘
# ```
#
# Here is one prompt, free and constrained:

# %%
# NBVAL_IGNORE_OUTPUT
schema = {"type": "object", "required": ["name", "age", "city"], "properties": {
    "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "city": {"type": "string", "enum": ["Paris", "London", "Tokyo", "Lagos"]}}}
question = "Describe a person as JSON with name, age and city:\n"
free = minigemma.generate(model, tokenizer, question, max_new_tokens=20)
constrained = minigemma.generate(model, tokenizer, question, max_new_tokens=48, json_schema=schema)
print("free:       ", repr(free))
print("constrained:", repr(constrained), "->", json.loads(constrained))

# %% [markdown]
# ### The state machine, step by step
# The decoder reads the output one **character** at a time with a state machine compiled from the
# schema (`minigemma/json_machine.py`). Its state is a stack of *frames*, the innermost last:
# - `Value(kind)`: a value of that kind must start here (`literal` for an enum);
# - `Object(done, phase)`: between the tokens of an object, with the properties already written
#   (`phase` is `start`, `key` after a comma, `after` after a value);
# - `Key(done, prefix)`: inside a property name, `prefix` written so far: only declared names
#   that start with it, and not yet written, may go on;
# - `String(length)`: inside a string (the length counts towards `maxLength`); `Number(text)`: a
#   number being written; `Literal(rest)`: an enum value being written, with what each candidate
#   still lacks.
#
# `step(state, ch)` gives the state after one character, or nothing when the character is not
# allowed. Let us watch it on a schema small enough to follow by eye, a weather request: a city
# (at most 12 characters), a unit (one of two words) and a number of days (1 to 7). A subclass of
# the constraint records, at each step, the state, the mask and the piece the model chose.

# %%
small = {"type": "object", "required": ["city", "unit", "days"], "properties": {
    "city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}}}
ask = "Weather in Oslo for the next 3 days, in Fahrenheit, as JSON:\n"

class Recorder(JSONConstraint):
    """A JSONConstraint that keeps, per step: the text so far, the state, the mask, the choice."""
    def __init__(self, *args):
        super().__init__(*args)
        self.steps = []

    def allowed(self):
        mask = super().allowed()
        self.steps.append({"text": self.text, "state": self.state, "mask": mask})
        return mask

    def advance(self, token_id):
        self.steps[-1]["chose"] = token_id
        return super().advance(token_id)

rec = Recorder(small, tokenizer, 40)
written = tokenizer.decode(list(generate_ids(model, tokenizer.encode(ask, add_bos=True), 40, constraint=rec)))
print(written, "->", json.loads(written))

# %%
def frame(f):
    """A frame in short: Value shows the kind of value expected; the others their fields."""
    if isinstance(f, Value):
        return f"Value({rec.machine.nodes[f.n]['kind']})"
    return f"{type(f).__name__}(" + ", ".join(repr(v) for k, v in f._asdict().items() if k not in ("n", "kind")) + ")"

def allowed_chars(state):
    """The characters the machine accepts next (None from next_chars: almost any, inside a string)."""
    chars = rec.machine.next_chars(state)
    return "any" if chars is None else "".join(c for c in sorted(chars) if rec.machine.step(state, c))

print(f"{'step':>4}  {'written so far':>24}  {'innermost frame':40} {'next chars':>10} {'pieces':>7}  chose")
for k, s in enumerate(rec.steps):
    (stack,) = s["state"]  # one stack: this schema has no anyOf
    text = s["text"] if len(s["text"]) <= 24 else "…" + s["text"][-23:]
    print(f"{k:4}  {text:>24}  {frame(stack[-1]):40} {allowed_chars(s['state']):>10} "
          f"{int(s['mask'].sum()):7}  {tokenizer.decode([s['chose']])!r}")

# %% [markdown]
# Read it row by row. At step 0 only the character `{` may come (2 pieces: `{` and `{"`); after
# `{"` the frame is `Key` with an empty prefix, and the next character must start a declared name
# (`c`, `d` or `u`). Once `days` is written, `Key` allows only `"`, and the colon pushes
# `Value(integer)`: 7 pieces, the digits 1 to 7 (the model picks 3, as asked). `done` grows
# with every property, so `days` cannot come twice, and `}` is allowed only once all three are
# written (the last piece, `"}`, ends the unit and the object at once). Inside the city string
# almost any piece is allowed, but fewer as the string fills up: a piece longer than the room left
# under `maxLength` is forbidden. In the enum, `Literal` keeps what each candidate still lacks:
# after `f` only `ahrenheit"` is left. The model chose the key order, the city and the number; the
# machine only ruled out what would break the schema.
#
# **How the mask is built.** A vocabulary piece can hold several characters (`":"` or `"}` is one
# piece), so a piece is allowed when the machine accepts *all* its characters in order. Walking the
# vocabulary's pieces sorted as a character trie shares work between pieces with a common prefix
# and abandons a whole branch at its first forbidden character; the result is cached per state,
# because many steps repeat one. Pieces that are byte fallbacks (`<0x..>`) are never allowed: half
# a character is not text. Here is the mask itself, for a selection of pieces (columns) at every
# step (rows); the piece chosen is circled.

# %%
labels = ["{", '{"', '"', "c", "city", "day", "days", "un", "unit", '":', '":"', "1", "3", "7", "8", "0", ",",
          ',"', '",', '"}', "}", "Os", "lo", " Oslo", "London", "f", "fahren", "ahrenheit", "cel", " the", "\n", "true"]
cols = [tokenizer.encode(p) for p in labels]
assert all(len(c) == 1 for c in cols), "every label is one vocabulary piece"
cols = [c[0] for c in cols]
grid = torch.stack([s["mask"][cols] for s in rec.steps]).float()  # (steps, pieces)
fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 6), gridspec_kw={"width_ratios": [4, 1]}, sharey=True)
ax.imshow(grid, cmap=plt.matplotlib.colors.ListedColormap(["#eeeeee", "#2ca02c"]), aspect="auto")
for k, s in enumerate(rec.steps):
    if s["chose"] in cols:
        ax.plot(cols.index(s["chose"]), k, "o", mfc="none", mec="black", ms=11)
ax.set_xticks(range(len(labels)), [repr(p)[1:-1] for p in labels], rotation=90, fontsize=8)
ax.set_yticks(range(len(rec.steps)), [f"{k}: {s['text'][-16:]}" for k, s in enumerate(rec.steps)], fontsize=7)
ax.set_title("allowed (green) or forbidden (grey) at each step; circled: the model's choice")
bx.barh(range(len(rec.steps)), [int(s["mask"].sum()) for s in rec.steps], color="#4c72b0")
bx.set_xscale("log"); bx.set_xlabel(f"allowed pieces (of {tokenizer.vocab_size:,})")
plt.tight_layout(); plt.show()

# %% [markdown]
# The columns show what the printed counts summarise. Structural pieces are allowed exactly where
# the machine expects them: `{` and `{"` at step 0, `":` after a complete name, `,` and `,"` after
# the number. Where the city string starts (step 10) every piece that begins with `"` is allowed,
# `"}` too (a string starting with `}`). Inside it (steps 11–13) almost everything is allowed, ` the`
# included, but never a newline (a raw control character is not valid in a JSON string), never a
# piece that closes the string and goes on with `:` or `}` (the object still lacks `unit`), and at
# step 13, with 4 of the 12 characters written, not the 9-character `ahrenheit`. Where the days
# start (step 5), `0` and `8` are forbidden: only 1 to 7 are. The bar on the right counts the same
# mask over the whole vocabulary: a handful of pieces at most steps, a few hundred thousand in
# the string.
#
# **Always finishing.** A free string or an array without `maxItems` could go on forever, and a
# decoder that is simply cut off at `max_new_tokens` leaves broken JSON. So the walk also records,
# for every allowed piece, how many characters the shortest valid completion needs after it. Every
# character such a completion may need is a single vocabulary piece (checked when the constraint is
# built), so *n* characters take at most *n* tokens, and a piece is allowed only if that many
# tokens are left after it. The decoder therefore asks for at least as many tokens as the shortest
# output has characters. A story with no length limit shows the rule at work:

# %%
story = {"type": "object", "required": ["story"], "properties": {"story": {"type": "string"}}}
tell = tokenizer.encode("Tell me a story about a dragon, as JSON:\n", add_bos=True)
probe = JSONConstraint(story, tokenizer, 100)
print("shortest valid output:", probe.machine.finish(probe.state), "characters")
runs, out = {}, {}
for budget in (20, 12):
    runs[budget] = Recorder(story, tokenizer, budget)
    out[budget] = list(generate_ids(model, tell, budget, constraint=runs[budget]))
    print(f"max_new_tokens={budget}: {len(out[budget])} tokens {tokenizer.decode(out[budget])!r}")
cut = tokenizer.decode(out[20][:12])
print(f"the first output cut after 12 tokens: {cut!r}")
try:
    json.loads(cut)
except json.JSONDecodeError as e:
    print("  -> not JSON:", e)
print("max_new_tokens=12, per step (allowed pieces, choice):")
print([(int(s["mask"].sum()), tokenizer.decode([s["chose"]])) for s in runs[12].steps])

# %% [markdown]
# The model never closes its story by itself: it writes until the budget forces it to. Both
# outputs are valid JSON, while the first output cut after 12 tokens is not. The last line shows
# how: the story steps allow almost the whole vocabulary, but with two tokens left (the step before
# last) only the 135 pieces that end the string are allowed (` "`, `."`, `!"`, …): a piece that
# stayed inside it would leave `"}`, two characters, for one token. At the last step only `}` is
# left.
#
# The cost: the mask lookup for a seen state is a cached tensor; building one for a new state
# walks part of the vocabulary once. `benchmarks/bench_constrained.py` measures the decode time
# per token with and without the constraint on this model (see `benchmarks/results_constrained.md`).
#
# ## 6. A small tool-calling assistant
# Put the pieces together: the tuned model of section 4, three of the tools from notebook 14's
# data, a Python function for each, and a loop that runs every call the model writes. Each
# request starts a fresh conversation, as in the adapter's training data (one request, one call);
# the answer shown is the function's result, the step the model was not trained to put in words.

# %%
TOOLS = {t["function"]["name"]: t for ex in tool_calls.read_jsonl(tool_calls.DATA / "train.jsonl") for t in ex["tools"]}
PER_UNIT = {("km", "miles"): 1 / 1.609344, ("miles", "km"): 1.609344, ("kg", "pounds"): 1 / 0.45359237,
            ("pounds", "kg"): 0.45359237}

def convert_units(value, from_unit, to_unit):
    if (from_unit, to_unit) == ("celsius", "fahrenheit"):
        return {"value": round(value * 9 / 5 + 32, 1), "unit": to_unit}
    if (from_unit, to_unit) == ("fahrenheit", "celsius"):
        return {"value": round((value - 32) * 5 / 9, 1), "unit": to_unit}
    return {"value": round(value * PER_UNIT[from_unit, to_unit], 2), "unit": to_unit}

FUNCTIONS = {"get_weather": lambda city, unit="celsius", days=1: get_weather(city, unit),
             "set_timer": lambda minutes, label="": {"timer": "started", "minutes": minutes, "label": label},
             "convert_units": convert_units}

def assistant(line):
    """One request -> the model's turn and the results of the calls it made."""
    turn = chat.chat(tuned, tokenizer, [{"role": "user", "content": line}], tools=[TOOLS[n] for n in FUNCTIONS],
                     max_new_tokens=tool_calls.MAX_NEW_TOKENS)
    return turn, [FUNCTIONS[c["name"]](**c["arguments"]) for c in turn["tool_calls"]]

# %% [markdown]
# The widget below is a text box wired to `assistant`; stored notebooks do not keep widget state,
# so a static transcript of the same loop follows it.

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets

box, out = widgets.Text(placeholder="ask for the weather, a timer or a conversion; press Enter"), widgets.Output()

def on_submit(change):
    if not change["new"]:
        return
    line, box.value = change["new"], ""
    turn, results = assistant(line)
    with out:
        print("you:     ", line)
        print("calls:   ", turn["tool_calls"] or turn["content"])
        print("results: ", results)

box.continuous_update = False  # the value changes when Enter is pressed
box.observe(on_submit, "value")
widgets.VBox([box, out])

# %%
for line in ["Set a 5 minute timer for the tea.", "How many miles is 42 km?"]:
    turn, results = assistant(line)
    print("you:     ", line)
    print("calls:   ", turn["tool_calls"])
    print("results: ", results)

# %% [markdown]
# ## Summary
# - A conversation is one string; tags mark turns (`<|turn>`), thoughts (`<|channel>`), tool
#   declarations, calls and responses. Render and parse are exact inverses, equal to Google's.
# - Thinking is a switch in the system turn, and a thought is a block the parser separates.
# - Tool calls and their responses share one model turn; the application runs the function.
# - `format="gemma3"` is Gemma 4's structure with Gemma 3 token names (FunctionGemma's format), not
#   Gemma 3's own template, which has no system turn.
# - Constrained decoding changes nothing in the model: a mask over the vocabulary, built from a
#   character-level state machine of the schema and cached per state, plus a budget that always
#   lets it finish.
# - A fine-tuned adapter makes the same 270M choose a tool and its arguments by itself.
#
# ## Exercises
# Solutions: `../solutions/11_chat_thinking_tools.py`.
#
# **Exercise 11.1** — Write `gemma_value(value)`: a JSON value (dict, list, str, int, float, bool,
# None) in Gemma's notation, e.g. `{"a": "x", "b": [1, 2.5, True, None]}` →
# `{a:<|"|>x<|"|>,b:[1,2.5,true,null]}` (a float that is a whole number is written like an int).

# %%
from checks import check_exercise_11_1, check_exercise_11_2

def gemma_value(value):
    raise NotImplementedError  # your code here

check_exercise_11_1(gemma_value)

# %% [markdown]
# **Exercise 11.2** — *The mask of a choice.* Build the mask of a constrained decoder whose whole
# output must be one of a few strings, such as `["celsius", "fahrenheit"]` (the `Literal` frame of
# section 5). Write `choice_mask(written, pieces, choices, tokens_left)`: `written` is the output
# so far, `pieces` a list of vocabulary pieces (strings of one or more characters), `tokens_left`
# the tokens the decoder may still write, this one included. Return one bool per piece: True when
# writing it keeps the output on the way to a choice *and* leaves time to finish it, counting, as
# the decoder does, one token per missing character. The checker uses vocabularies, choices and
# budgets you have not seen, including pieces that run past a choice and budgets that bind.
#
# *Hint:* test the whole text after the piece, not only its first character; then compare what the
# choice it leads to still lacks with the tokens left once this piece is written.

# %%
def choice_mask(written, pieces, choices, tokens_left):
    raise NotImplementedError  # your code here

check_exercise_11_2(choice_mask)

# %% [markdown]
# ## References
# - Google AI for Developers, [Gemma 4 prompt formatting](https://ai.google.dev/gemma/docs/core/prompt-formatting-gemma4)
#   and [function calling with Gemma](https://ai.google.dev/gemma/docs/capabilities/function-calling).
# - Google's `dialog` package, [dialog on PyPI](https://pypi.org/project/dialog/) (the reference for
#   our golden tests).
# - Google AI for Developers, [Gemma formatting and system instructions](https://ai.google.dev/gemma/docs/formatting)
#   (Gemma 3: roles `user` and `model` only) and [FunctionGemma formatting and best practices](https://ai.google.dev/gemma/docs/functiongemma/formatting-and-best-practices).
# - B. T. Willard and R. Louf, [Efficient Guided Generation for Large Language Models](https://arxiv.org/abs/2307.09702), 2023
#   (masks from a state machine over the vocabulary).
# - [JSON Schema](https://json-schema.org/understanding-json-schema) (the keywords we support).
