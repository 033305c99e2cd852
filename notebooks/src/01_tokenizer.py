# %% [markdown]
# # 01 · The tokenizer: SentencePiece BPE from scratch
#
# **What you will learn**
# - how byte-pair encoding (BPE) turns text into vocabulary pieces, merge by merge;
# - how a BPE vocabulary is *trained*: learning merges from a text, compared with Gemma's real one;
# - why every string can be encoded (byte fallback) and how special tokens stay whole;
# - what is inside Gemma's real 262,144-piece vocabulary;
# - where the two reference tokenizers (SentencePiece and transformers) disagree, and whom we follow.
#
# **Prerequisites:** notebook 00. Gemma 4 uses the same vocabulary family, so this tokenizer is
# the one the whole course uses.

# %%
import unicodedata
from collections import Counter
import matplotlib.pyplot as plt
import minigemma
from minigemma import viz
from minigemma.gguf import GGUFFile
from minigemma.weights import resolve

# %% [markdown]
# ## 1. BPE on a toy vocabulary
# A SentencePiece BPE vocabulary is a list of pieces, each with a **score**. Encoding starts
# from single characters and repeatedly merges the adjacent pair whose merged piece has the best
# score, until no pair can merge. Spaces are written `▁` first, so a word's leading space is part
# of its piece.

# %%
toy_scores = {"▁": 0, "l": 0, "o": 0, "w": 0, "e": 0, "r": 0, "s": 0, "t": 0,
              "lo": -1, "low": -2, "▁low": -3, "er": -4, "▁lower": -5, "es": -6, "est": -7}

def toy_bpe(text, scores, verbose=False):
    symbols = list(text.replace(" ", "▁"))
    while True:
        pairs = [(scores[a + b], -i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in scores]
        if not pairs:
            return symbols
        _, neg_i = max(pairs)  # best score; on ties the leftmost pair
        i = -neg_i
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        if verbose:
            print(symbols)

toy_bpe(" lower lowest", toy_scores, verbose=True)

# %% [markdown]
# This naive loop rescans every pair after each merge: its cost grows with the *square* of the text
# length. The package keeps the candidate pairs in a heap and a linked list of symbols, so each
# merge costs `O(log n)` (see `Tokenizer._bpe`). Same merges, same order, much faster.

# %% [markdown]
# ## 2. The real vocabulary
# The GGUF file carries the whole SentencePiece vocabulary: pieces, scores and a **type** per piece.

# %%
meta = GGUFFile(resolve("gemma3-270m")).metadata
pieces, scores, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"], meta["tokenizer.ggml.token_type"]
type_names = {1: "normal", 3: "control", 4: "user-defined", 6: "byte"}
print(len(pieces), "pieces:", {type_names[t]: n for t, n in sorted(Counter(types).items())})
for i in [0, 1, 2, 105, 106, 107, 138, 236, 255968, 818, 5279, 236743]:
    print(f"{i:>7}  {type_names[types[i]]:<13} {pieces[i]!r}")

# %% [markdown]
# Piece lengths and scripts: most pieces are short, and the vocabulary covers many writing systems.

# %%
def script(piece):
    for ch in piece.replace("▁", ""):
        if ch.isalpha():
            return unicodedata.name(ch, "?").split()[0]
    return "digits/punct/space" if piece.strip("▁") else "space"

normal = [p for p, t in zip(pieces, types) if t == 1]
lengths = Counter(min(len(p), 16) for p in normal)
scripts = Counter(script(p) for p in normal).most_common(12)
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.5))
a.bar(list(lengths), list(lengths.values()), color="#4c72b0")
a.set_xlabel("piece length in characters (16 = 16 or more)")
a.set_ylabel("pieces")
b.barh([s for s, _ in scripts][::-1], [n for _, n in scripts][::-1], color="#55a868")
b.set_xlabel("pieces")
fig.tight_layout()
plt.show()
print("most common scripts:", ", ".join(f"{s} {n:,}" for s, n in scripts[:6]))

# %% [markdown]
# Numbers: for the digits 0–9 Gemma's vocabulary has exactly one piece each, and no piece with
# two digits (not even `▁7`), so `12345` is always five tokens: arithmetic sees every digit.
# (Other scripts' digits, like Bengali `১`, have pieces of their own too.)

# %%
ascii_digit_pieces = [p for p in normal if p.strip("▁") and set(p.strip("▁")) <= set("0123456789")]
print(ascii_digit_pieces)

# %% [markdown]
# ## 3. Load the package's tokenizer and compare with the toy algorithm
# `Tokenizer.from_file` reads the same vocabulary. Our naive `toy_bpe` with the real scores
# must produce exactly the pieces the package produces (on text without special pieces).

# %%
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
print(tok)
real_scores = {p: s for p, s, t in zip(pieces, scores, types) if t in (1, 4)}
for text in ["The capital of France is Paris.", "def f(x): return x ** 2", "naïve café, 東京"]:
    words = toy_bpe(text, real_scores)  # (no special pieces in these texts: section 5 adds them)
    ours = [tok.id_to_piece(i) for i in tok.encode(text)]
    assert words == ours, (words, ours)
    print(ours)
print("'12345' ->", [tok.id_to_piece(i) for i in tok.encode("12345")])

# %% [markdown]
# ## 4. Training BPE: where the pieces and scores come from
# Encoding applies merges; **training** decides which merges exist. The idea
# ([Sennrich et al., 2016](https://arxiv.org/abs/1508.07909), after Gage's 1994 compression
# algorithm) fits in one sentence: start from single characters, count every adjacent pair in the
# training text, merge the most frequent pair into a new piece, and repeat until the vocabulary
# is as large as you want. Each merge's rank is its score: earlier (more frequent) merges win at
# encoding time. We train on the course's 3.8 KB sample text, words counted once each with their
# frequency, a leading `▁` for the space as SentencePiece does (karpathy's
# [minbpe](https://github.com/karpathy/minbpe) does the same on bytes).

# %%
def pair_counts(splits, word_counts):
    counts = Counter()  # (left, right) -> how often the pair occurs in the text
    for word, n in word_counts.items():
        symbols = splits[word]
        for a, b in zip(symbols, symbols[1:]):
            counts[a, b] += n
    return counts

def train_bpe(text, n_merges):
    word_counts = Counter("▁" + w for w in text.split())  # "▁word" -> count
    splits = {w: list(w) for w in word_counts}  # each word starts as single characters
    merges = []
    for _ in range(n_merges):
        counts = pair_counts(splits, word_counts)
        if not counts:
            break
        best = max(counts, key=counts.get)  # the most frequent pair (first seen on ties)
        merges.append(best)
        for w, symbols in splits.items():
            i = 0
            while i < len(symbols) - 1:
                if (symbols[i], symbols[i + 1]) == best:
                    symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
                i += 1
    return merges

# %%
sample = open("../data/sample_text.txt", encoding="utf-8").read()
merges = train_bpe(sample, 150)
print("first 12 merges:", ["".join(m) for m in merges[:12]])
print("merges 100-111: ", ["".join(m) for m in merges[100:112]])

# %% [markdown]
# The first merges are the most frequent pairs of English: `▁t`, `he`, `▁the`, `in`... Later ones
# build whole frequent words of *this* text. A merge list is a score table: give merge `r` the
# score `−r`, and the encoder of section 1 applies them, best first:

# %%
learned_scores = {ch: 0 for ch in set("▁" + sample.replace(" ", "▁").replace("\n", "▁"))}
learned_scores.update({a + b: -r for r, (a, b) in enumerate(merges, start=1)})
for text in [" the language model", " a tokenizer reads pieces", " unrelated words"]:
    print(f"{text!r:>28} -> {toy_bpe(text, learned_scores)}")

# %% [markdown]
# **Compare with the real vocabulary.** Gemma's 262k pieces were trained the same way on a vast
# multilingual corpus. How many of our 150 pieces did it learn too, and did it learn them early
# as well? SentencePiece's score plays the role of our rank (higher score = merged earlier), so we
# rank Gemma's ordinary pieces by score and look up ours:

# %%
real = set(pieces)
learned = ["".join(m) for m in merges]
missing = [p for p in learned if p not in real]
print(f"{len(learned) - len(missing)} of {len(learned)} learned pieces are in Gemma's vocabulary; missing: {missing}")
gemma_rank = {p: r for r, (sc, p) in enumerate(sorted(((-s, p) for p, s, t in zip(pieces, scores, types) if t == 1)))}
ours_found = [(r, gemma_rank[p]) for r, p in enumerate(learned, start=1) if p in gemma_rank]
fig, ax = plt.subplots(figsize=(7, 3))
ax.scatter([a for a, _ in ours_found], [b + 1 for _, b in ours_found], s=10, color="#4c72b0")
ax.set_yscale("log")
ax.set_xlabel("our merge rank (3.8 KB of English)")
ax.set_ylabel("rank by score in Gemma's vocabulary")
plt.show()

# %% [markdown]
# 148 of 150 pieces are in Gemma's vocabulary: the frequent pairs of English are the frequent
# pairs of any English text. The two missing ones show what a tiny corpus gets wrong: `▁piec`
# is half of a word our text happens to repeat, and `e,` glues a letter to a comma, a piece
# Gemma's vocabulary does not have. The ranks agree roughly, not exactly: our first 30 merges are
# all among Gemma's first 600 pieces (note the log scale), while a merge we learned late can be
# early in Gemma's list because it is frequent in *its* corpus, and the other way round. Two more
# differences from Google's training: SentencePiece's trainer also adds the byte pieces and the
# special tokens of section 6, and its scores are not simply ranks, but the recipe is this one
# ([Kudo and Richardson, 2018](https://arxiv.org/abs/1808.06226)).

# %% [markdown]
# ## 5. Byte fallback: nothing is unencodable
# A character with no piece of its own is spelled as its UTF-8 bytes, using the 256 pieces
# `<0x00>` … `<0xFF>`. Decoding gathers the bytes and decodes them back.

# %%
for ch in ["é", "🎉", "𓀀"]:
    ids = tok.encode(ch)
    print(f"{ch!r}: {[tok.id_to_piece(i) for i in ids]} -> {tok.decode(ids)!r}")

# %% [markdown]
# ## 6. Special tokens
# Control tokens (`<bos>`, `<start_of_turn>`, …) and user-defined pieces (newline runs, tabs,
# HTML tags) are cut out of the text *before* BPE and become one id each. A near-miss like
# `<start_of_tur` is ordinary text.

# %%
viz.tokens_html(tok, "<start_of_turn>user\nWhat is <b>BPE</b>?<end_of_turn>\n<start_of_tur")

# %% [markdown]
# ## 7. Colour-coded tokenisation
# Each box is one token (hover for its id). English needs few tokens per word; other scripts
# and code need more.

# %%
samples = ["Tokenizers turn text into pieces; unusual words split into several.",
           "東京は日本の首都です。 مرحبا بالعالم 🎉👍🏽",
           "for i in range(10):\n\tprint(i ** 2)  # squares"]
viz.tokens_html(tok, "\n".join(samples))

# %%
for s in samples:
    print(f"{len(tok.encode(s)) / len(s):.2f} tokens per character   {s[:30]!r}")

# %% [markdown]
# ## 8. Where the references disagree: runs of spaces
# Google trained Gemma with SentencePiece, which matches user-defined pieces whole, including
# the runs of 2–31 spaces (ids 138–167). The tokenizer that transformers converts from the same
# file keeps those runs as ordinary BPE pieces: short runs come out the same, long runs are split
# differently. From a GGUF, minigemma follows SentencePiece; from a `tokenizer.json`, it follows
# that file exactly.
# (This cell builds transformers' tokenizer, which takes about 20 seconds.)

# %%
from transformers import AutoTokenizer  # a reference, used here only to show the difference
path = resolve("gemma3-270m")
hf = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
for text in [" " * 40, "a  b", "x" + " " * 7 + "y"]:
    print(f"{text!r:>46}  minigemma/SentencePiece {tok.encode(text)}   transformers {hf.encode(text, add_special_tokens=False)}")

# %% [markdown]
# Everywhere else the two agree id for id; `tests/test_tokenizer.py` checks this on a corpus of
# prose, code, numbers, a dozen scripts, emoji and special tokens, and fuzzes the rest.

# %% [markdown]
# ## Exercises
# Solutions: `../solutions/01_tokenizer.py`.
#
# **Exercise 1.1** — Write `decode_with_bytes(tokenizer, ids)`: join the pieces, turn `▁` into a
# space, and turn runs of `<0xNN>` pieces into bytes decoded as UTF-8.

# %%
from checks import check_exercise_1_1, check_exercise_1_2, check_exercise_1_3

def decode_with_bytes(tokenizer, ids):
    raise NotImplementedError  # your code here

check_exercise_1_1(decode_with_bytes, tok)

# %% [markdown]
# **Exercise 1.2** — Write `tokens_per_character(tokenizer, text)` (no `<bos>`). Which of the
# corpus samples in `../data/tokenizer_corpus.json` is the most expensive per character?

# %%
def tokens_per_character(tokenizer, text):
    raise NotImplementedError  # your code here

check_exercise_1_2(tokens_per_character, tok)

# %% [markdown]
# **Exercise 1.3 — encode with learned merges, minbpe style.** Write `apply_merges(word, merges)`:
# split `word` into characters, then repeatedly merge the adjacent pair that was learned
# **earliest** (lowest index in `merges`), until no learned pair is left. Why is "the most
# frequent pair in *this* word" the wrong rule?

# %%
def apply_merges(word, merges):
    raise NotImplementedError  # your code here: a list of pieces

check_exercise_1_3(apply_merges)

# %% [markdown]
# ## References
# - Sennrich, Haddow and Birch, [*Neural Machine Translation of Rare Words with Subword Units*](https://arxiv.org/abs/1508.07909), 2016: BPE for language.
# - Kudo and Richardson, [*SentencePiece*](https://arxiv.org/abs/1808.06226), 2018, and its
#   [repository](https://github.com/google/sentencepiece): `▁`, byte fallback, user-defined pieces.
# - Karpathy, [minbpe](https://github.com/karpathy/minbpe): BPE training and encoding in a few short files.
# - Gemma Team, [*Gemma 3 Technical Report*](https://arxiv.org/abs/2503.19786), 2025: the 262k vocabulary.
