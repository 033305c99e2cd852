# %% [markdown]
# # 01 · The tokenizer: SentencePiece BPE from scratch
#
# **What you will learn**
# - how a byte-pair-encoding (BPE) vocabulary is *trained*: learning merges from a text;
# - how BPE then turns text into vocabulary pieces, merge by merge, and what a piece's **score** is;
# - how our small vocabulary compares with Gemma's real one;
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
# ## 1. Training BPE: where the pieces come from
# A tokenizer's vocabulary is *learned* from text. Byte-pair encoding
# ([Sennrich et al., 2016](https://arxiv.org/abs/1508.07909), after Gage's 1994 compression
# algorithm) fits in one sentence: start from single characters, count every adjacent pair in the
# training text, merge the most frequent pair into a new piece, and repeat until the vocabulary is
# as large as you want. The result is an **ordered list of merges**. We train on the course's
# sample text, words counted once each with their frequency, a leading `▁` standing for the space
# as SentencePiece writes it (karpathy's [minbpe](https://github.com/karpathy/minbpe) does the same
# on bytes).

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
print(f"sample text: {len(sample.encode('utf-8')) / 1000:.1f} KB, {len(sample.split())} words")
merges = train_bpe(sample, 150)
print("first 12 merges:", ["".join(m) for m in merges[:12]])
print("merges 100-111: ", ["".join(m) for m in merges[100:112]])

# %% [markdown]
# The first merges are the most frequent pairs of English: `▁t`, `▁a`, `he`, `er`, then `▁the`
# (made from two earlier pieces). Later ones build whole frequent words of *this* text.
#
# ## 2. Encoding: replay the merges, earliest first
# To encode new text, start again from single characters (spaces written `▁`) and repeatedly
# apply the adjacent merge that was **learned earliest**, until no learned merge applies. The
# order is all that matters, so a vocabulary can store it as one number per merged piece, its
# **score**: merge number `r` gets score `−r`, and at each step the pair whose merged piece has
# the highest score wins. That is exactly what a SentencePiece vocabulary stores (section 3).

# %%
learned_scores = {a + b: -r for r, (a, b) in enumerate(merges, start=1)}  # merged piece -> score

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

_ = toy_bpe(" the tokens", learned_scores, verbose=True)  # prints the pieces after each merge

# %%
for text in [" the language model", " a tokenizer reads pieces", " unrelated words"]:
    print(f"{text!r:>28} -> {toy_bpe(text, learned_scores)}")

# %% [markdown]
# Words of the training text come out as few pieces; other words fall back to short pieces and
# single characters. This naive loop rescans every pair after each merge: its cost grows with the
# *square* of the word length. The package keeps the candidate pairs in a heap and a linked list of
# symbols, so each merge costs `O(log n)` (see `Tokenizer._bpe`). Same merges, same order, much faster.
#
# ## 3. The real vocabulary
# The GGUF file (notebook 00) carries Gemma's whole SentencePiece vocabulary: pieces, scores and a
# **type** per piece.

# %%
meta = GGUFFile(resolve("gemma3-270m")).metadata
pieces, scores, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"], meta["tokenizer.ggml.token_type"]
type_names = {1: "normal", 3: "control", 4: "user-defined", 6: "byte"}
print(len(pieces), "pieces:", {type_names[t]: n for t, n in sorted(Counter(types).items())})
for i in [0, 1, 2, 105, 106, 107, 138, 236, 255968, 818, 5279, 236743]:
    print(f"{i:>7}  {type_names[types[i]]:<13} {pieces[i]!r}")

# %% [markdown]
# **What the scores are.** If Google's trainer worked as ours does, the scores of the normal
# pieces should be minus their rank. They are, exactly:

# %%
normal_ids = [i for i, t in enumerate(types) if t == 1]
merged = [i for i in normal_ids if len(pieces[i]) > 1]  # pieces a merge made
alphabet = [i for i in normal_ids if len(pieces[i]) == 1]  # single characters
print(f"{len(merged):,} merged pieces, ids {merged[0]}–{merged[-1]}: score == −(id − {merged[0]}) for all of them:",
      all(scores[i] == -(i - merged[0]) for i in merged))
print("the first merges:", [(pieces[i], int(scores[i])) for i in merged[:6]])
print(f"{len(alphabet):,} single characters, ids {alphabet[0]}–{alphabet[-1]}:",
      [(pieces[i], int(scores[i])) for i in alphabet[:6]], "...")
drops = Counter(scores[a] - scores[b] for a, b in zip(normal_ids, normal_ids[1:]))
print("score drop from one normal piece to the next:", dict(drops))
print("scores of the other types:", {type_names[t]: sorted({scores[i] for i in range(len(pieces)) if types[i] == t})
                                    for t in (3, 4, 6)})

# %% [markdown]
# So Gemma's scores *are* ranks. The 236,249 merged pieces come in the order the trainer learned
# them, scoring 0, −1, −2, … (Gemma's first merge, `▁t`, is our first too). The 19,225
# single characters, the alphabet the training started from, follow with the same steps of −1,
# most frequent first (`▁`, `e`, `t`, `a`, …), after one jump of 32. The scores of single
# characters never matter for encoding (no merge produces a single character), and control,
# user-defined and byte pieces are not made by merges at all: they get the flat −1000 or 0.
#
# Piece lengths and scripts: most pieces are short, and the vocabulary covers many writing systems.

# %%
def script(piece):
    for ch in piece.replace("▁", ""):
        if ch.isalpha():
            return unicodedata.name(ch, "?").split()[0]
    return "digits/punct/space" if piece.strip("▁") else "space"

normal = [pieces[i] for i in normal_ids]
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
# ## 4. Load the package's tokenizer and compare with the toy algorithm
# `Tokenizer.from_file` reads the same vocabulary. Our naive `toy_bpe` with the real scores
# must produce exactly the pieces the package produces (on text without special pieces).

# %%
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
print(tok)
real_scores = {p: s for p, s, t in zip(pieces, scores, types) if t in (1, 4)}
for text in ["The capital of France is Paris.", "def f(x): return x ** 2", "naïve café, 東京"]:
    words = toy_bpe(text, real_scores)  # (no special pieces in these texts: section 7 adds them)
    ours = [tok.id_to_piece(i) for i in tok.encode(text)]
    assert words == ours, (words, ours)
    print(ours)
print("'12345' ->", [tok.id_to_piece(i) for i in tok.encode("12345")])

# %% [markdown]
# ## 5. Our merges and Gemma's
# Gemma's 262k pieces were trained the same way on a vast multilingual corpus. How many of our
# 150 pieces did it learn too, and did it learn them early as well? A merged piece's rank in
# Gemma's list is minus its score (section 3):

# %%
real = set(pieces)
learned = ["".join(m) for m in merges]
missing = [p for p in learned if p not in real]
print(f"{len(learned) - len(missing)} of {len(learned)} learned pieces are in Gemma's vocabulary; missing: {missing}")
gemma_rank = {pieces[i]: -int(scores[i]) for i in merged}  # 0 = Gemma's first merge
ours_found = [(r, gemma_rank[p]) for r, p in enumerate(learned, start=1) if p in gemma_rank]
print(f"our first 30 merges are all among Gemma's first {max(g for r, g in ours_found if r <= 30) + 1} merges")
fig, ax = plt.subplots(figsize=(7, 3))
ax.scatter([a for a, _ in ours_found], [b + 1 for _, b in ours_found], s=10, color="#4c72b0")
ax.set_yscale("log")
ax.set_xlabel("our merge rank (the course's sample text)")
ax.set_ylabel("Gemma's merge rank")
plt.show()

# %% [markdown]
# 148 of 150 pieces are in Gemma's vocabulary: the frequent pairs of English are the frequent
# pairs of any English text. The two missing ones show what a tiny corpus gets wrong: `▁piec`
# is half of a word our text happens to repeat, and `e,` glues a letter to a comma, a piece
# Gemma's vocabulary does not have. The ranks agree roughly, not exactly: our first 30 merges are
# all among Gemma's first 557 (note the log scale), while a merge we learned late can be early in
# Gemma's list because it is frequent in *its* corpus, and the other way round. Google's trainer
# ([SentencePiece](https://arxiv.org/abs/1808.06226), Kudo and Richardson, 2018) adds more than we
# do: the alphabet as pieces of their own, the byte pieces of section 6 and the special tokens of
# section 7. The recipe for the merges is this one.

# %% [markdown]
# ## 6. Byte fallback: nothing is unencodable
# A character with no piece of its own is spelled as its UTF-8 bytes, using the 256 pieces
# `<0x00>` … `<0xFF>`. Decoding gathers the bytes and decodes them back.

# %%
for ch in ["é", "🎉", "𓀀"]:
    ids = tok.encode(ch)
    print(f"{ch!r}: {[tok.id_to_piece(i) for i in ids]} -> {tok.decode(ids)!r}")

# %% [markdown]
# ## 7. Special tokens
# Control tokens (`<bos>`, `<start_of_turn>`, …) and user-defined pieces (newline runs, tabs,
# HTML tags) are cut out of the text *before* BPE and become one id each. A near-miss like
# `<start_of_tur` is ordinary text.

# %%
viz.tokens_html(tok, "<start_of_turn>user\nWhat is <b>BPE</b>?<end_of_turn>\n<start_of_tur")

# %% [markdown]
# ## 8. Colour-coded tokenisation
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
# ## 9. Where the references disagree: runs of spaces
# Google trained Gemma with SentencePiece, which matches user-defined pieces whole, including
# the runs of 2–31 spaces (ids 138–167). The tokenizer that transformers converts from the same
# file keeps those runs as ordinary BPE pieces: short runs come out the same, long runs are split
# differently. From a GGUF, minigemma follows SentencePiece; from a `tokenizer.json`, it follows
# that file exactly. (This cell builds transformers' tokenizer from the GGUF, which takes a while.)

# %%
runs = [i for i, (p, t) in enumerate(zip(pieces, types)) if t == 4 and set(p) == {" "}]
print(f"user-defined runs of spaces: ids {runs[0]}–{runs[-1]}, {len(pieces[runs[0]])} to {len(pieces[runs[-1]])} spaces")
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
# **Exercise 1.2 — cut out the special pieces.** Section 7 says that control and user-defined
# pieces are cut out of the text *before* BPE. Build that step: write
# `split_special(text, specials)`, where `specials` maps each special piece to its id (the
# tokenizer's own table, `tok.special`: 6,414 pieces, from `<bos>` to tags, tabs and runs of
# newlines and spaces). Return the text as a list of `(chunk, id)` pairs, in order: a special piece
# with its id, and each stretch of ordinary text between them with `None`. Joined, the chunks must
# give back the text. The checker compares your split with the package's on texts you have not
# seen. (Hint: at one position several special pieces may start; print the specials that begin
# with `"\n\n"` and think about which one the tokenizer must take.)

# %%
def split_special(text, specials):
    raise NotImplementedError  # your code here: a list of (chunk, id or None)

print(f"{len(tok.special):,} special pieces")
check_exercise_1_2(split_special, tok)

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
