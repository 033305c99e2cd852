"""Solutions to the exercises of notebooks/01_tokenizer.ipynb."""


def decode_with_bytes(tokenizer, ids):
    out = bytearray()
    for i in ids:
        piece = tokenizer.id_to_piece(i)
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            out.append(int(piece[3:5], 16))
        else:
            out.extend(piece.replace("\u2581", " ").encode("utf-8"))
    return out.decode("utf-8", errors="replace")


def tokens_per_character(tokenizer, text):
    return len(tokenizer.encode(text)) / len(text)


# Answer to exercise 1.2's question: the most expensive sample of data/tokenizer_corpus.json is the
# one of rare characters ("Rare characters: ꙮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 ᚠᚢᚦ ⠁⠃⠉ ⅷ ℵ"), 1.23 tokens per character:
# characters without a piece of their own fall back to their UTF-8 bytes, 3 or 4 tokens each. Next
# come single characters and the numbers (about 1 token per character: every digit is its own
# token). The cheapest is the run of 40 spaces, 0.05 (two user-defined whitespace pieces).


def apply_merges(word, merges):
    rank = {pair: r for r, pair in enumerate(merges)}  # (left, right) -> when it was learned
    symbols = list(word)
    while len(symbols) > 1:
        candidates = [(rank[p], i) for i, p in enumerate(zip(symbols, symbols[1:])) if p in rank]
        if not candidates:
            break
        _, i = min(candidates)  # earliest learned; leftmost on ties
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


# Answer to the question: training builds pieces on top of earlier pieces: "▁ab" can only be made
# after "ab" exists, and the merge ("▁ab", "c") assumes its left part was formed by the earlier
# merges. Frequency inside one short word says nothing about the corpus; replaying the merges in
# their learned order reproduces the segmentation training saw, so the same word always gets the
# same pieces, whatever the counts in the text being encoded.
