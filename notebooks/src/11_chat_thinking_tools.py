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
# Gemma 3 used the same structure with other tag names (`<start_of_turn>` …). Our real model is a
# Gemma 3, so `format="gemma3"` writes its spelling:

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

short = render([{"role": "user", "content": "What is 2+3?"}])
fig, axes = plt.subplots(2, 1, figsize=(11, 4.2))
draw_tokens(axes[0], short, "Gemma 4 format, Gemma 3 tokenizer")
draw_tokens(axes[1], render([{"role": "user", "content": "What is 2+3?"}], format="gemma3"), "Gemma 3 format")
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
fig.legend(handles, KIND_COLOURS, loc="lower center", ncol=4, fontsize=8)
plt.show()

# %% [markdown]
# The same one-line question costs 22 tokens in the Gemma 4 spelling under Gemma 3's vocabulary
# and only 15 in Gemma 3's own format, where each tag is one token (the red boxes). A tokenizer
# and a chat format are designed together: a model learns a tag best when the tag is one token it
# cannot confuse with text a user types. That is why, with our Gemma 3 model, `chat()` picks the
# Gemma 3 spelling automatically (`chat.chat_format(tokenizer)`).

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
# and the turn is still open. The model now continues its own turn with the answer — exactly the
# loop Google's tool examples use. An instruction-tuned Gemma 4 would write "It is 11 °C and clear
# in Paris."; our 270M *base* model has never seen a tool response and, below, mostly copies the
# pattern in front of it: the format is only as useful as the training behind it.

# %%
# NBVAL_IGNORE_OUTPUT
answer = chat.chat(model, tokenizer, conversation, tools=[WEATHER_TOOL], max_new_tokens=16)
print(repr(answer["content"]))

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
print("base: ", repr(tool_calls.answer(model, tokenizer, request)))
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
# **How the mask is built.** A vocabulary piece can hold several JSON characters (`"}` or `":"`
# is one piece), so a piece is allowed when the schema's state machine accepts *all* its
# characters in order. Walking the 262k pieces sorted as a character trie shares work between
# pieces with a common prefix and abandons a whole branch at its first forbidden character; the
# result is cached per state, because most steps repeat one ("inside a free string"). Pieces that
# are byte fallbacks (`<0x..>`) are never allowed: half a character is not text.
#
# Let us watch the mask for the first steps: for each step, the 40 pieces the *free* model likes
# most, coloured by their log-probability, and blanked out when the mask forbids them.

# %%
@torch.no_grad()
def mask_steps(n_steps=6, top=40):
    ids = tokenizer.encode(question, add_bos=True)
    c = JSONConstraint(schema, tokenizer, 48)
    rows, labels, counts, chosen = [], [], [], []
    for _ in range(n_steps):
        logp = model(torch.tensor([ids]))[0, -1].log_softmax(-1)
        allowed = c.allowed()
        best = logp.topk(top).indices
        rows.append(torch.where(allowed[best], logp[best], torch.tensor(float("nan"))))
        labels.append([tokenizer.decode([int(i)]) for i in best])
        counts.append(int(allowed.sum()))
        nxt = int(logp.masked_fill(~allowed, float("-inf")).argmax())
        chosen.append(tokenizer.decode([nxt]))
        c.advance(nxt)
        ids.append(nxt)
    return torch.stack(rows), labels, counts, chosen

grid, labels, counts, chosen = mask_steps()
print("chosen pieces:", chosen)
print("allowed pieces per step:", counts)

# %%
fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [3, 1]})
im = ax.imshow(grid.numpy(), aspect="auto", cmap="viridis")
fig.colorbar(im, ax=ax, label="log-probability (free model)")
ax.set_yticks(range(len(chosen)), [f"step {k}: chose {p!r}" for k, p in enumerate(chosen)], fontsize=7)
ax.set_xlabel("the free model's 40 favourite pieces at that step (blank = forbidden by the mask)")
bx.barh(range(len(counts)), counts, color="#4c72b0"); bx.set_xscale("log"); bx.invert_yaxis()
bx.set_yticks([]); bx.set_xlabel("allowed pieces (of 262,144)")
plt.tight_layout(); plt.show()

# %% [markdown]
# At the first step the model's favourites (newlines, words) are all forbidden: only pieces
# starting an object `{` are allowed. Inside the key, only the few pieces that spell a declared
# property survive; inside a free string value almost the whole vocabulary is allowed again (the
# bar jumps by three orders of magnitude). The model still decides everything the schema leaves
# open — which name, which age.
#
# **Always finishing.** A free string or an array without `maxItems` could go on forever. For every
# allowed piece the walk also records how many characters the shortest valid completion needs
# after it; a piece is allowed only if that fits in the tokens left. With a budget of exactly the
# shortest output, the model is walked straight to a valid one:

# %%
tight = JSONConstraint(schema, tokenizer, 10_000)
need = tight.machine.finish(tight.state)
short = minigemma.generate(model, tokenizer, question, max_new_tokens=need, json_schema=schema)
print(f"shortest valid output: {need} characters; with max_new_tokens={need}: {short!r}")

# %% [markdown]
# The cost: the mask lookup for a seen state is a cached tensor; building one for a new state
# walks part of the vocabulary once. `benchmarks/bench_constrained.py` measures the decode time
# per token with and without the constraint on this model (see `benchmarks/results_constrained.md`).
#
# ## 6. A small chat window
# The widget below is a text box wired to `chat()`; stored notebooks do not keep widget state, so
# a static transcript of the same loop follows it. (Gemma 3 270M is a *base* model: it continues
# a conversation rather than following instructions — an instruction-tuned Gemma 4 would answer.)

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets

box, out, history = widgets.Text(placeholder="say something and press Enter"), widgets.Output(), []

def on_submit(change):
    if not change["new"]:
        return
    history.append({"role": "user", "content": change["new"]})
    box.value = ""
    reply = chat.chat(model, tokenizer, history, max_new_tokens=32)
    history.append(reply)
    with out:
        print("you:  ", history[-2]["content"]); print("model:", reply["content"])

box.continuous_update = False  # the value changes when Enter is pressed
box.observe(on_submit, "value")
widgets.VBox([box, out])

# %%
# NBVAL_IGNORE_OUTPUT
transcript = []
for line in ["Hello! Who are you?", "What is the capital of France?"]:
    transcript.append({"role": "user", "content": line})
    transcript.append(chat.chat(model, tokenizer, transcript, max_new_tokens=16))
for m in transcript:
    print(f"{m['role']:>9}: {m['content']!r}")

# %% [markdown]
# ## Summary
# - A conversation is one string; tags mark turns (`<|turn>`), thoughts (`<|channel>`), tool
#   declarations, calls and responses. Render and parse are exact inverses, equal to Google's.
# - Thinking is a switch in the system turn, and a thought is a block the parser separates.
# - Tool calls and their responses share one model turn; the application runs the function.
# - Constrained decoding changes nothing in the model: a mask over the vocabulary, built from a
#   state machine of the schema and cached per state, plus a budget that always lets it finish.
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
# **Exercise 11.2** — Write `min_p_keep(probs, min_p)`: the boolean mask of the tokens that min-p
# sampling keeps — those whose probability is at least `min_p` times the largest probability.

# %%
def min_p_keep(probs, min_p):
    raise NotImplementedError  # your code here

check_exercise_11_2(min_p_keep)

# %% [markdown]
# ## References
# - Google AI for Developers, [Gemma 4 prompt formatting](https://ai.google.dev/gemma/docs/core/prompt-formatting-gemma4)
#   and [function calling with Gemma](https://ai.google.dev/gemma/docs/capabilities/function-calling).
# - Google's `dialog` package, [dialog on PyPI](https://pypi.org/project/dialog/) (the reference for
#   our golden tests).
# - B. T. Willard and R. Louf, [Efficient Guided Generation for Large Language Models](https://arxiv.org/abs/2307.09702), 2023
#   (masks from a state machine over the vocabulary).
# - M. Nguyen et al., [Turning Up the Heat: Min-p Sampling for Creative and Coherent LLM Outputs](https://arxiv.org/abs/2407.01082), 2024.
# - [JSON Schema](https://json-schema.org/understanding-json-schema) (the keywords we support).
