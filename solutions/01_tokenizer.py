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


def split_special(text, specials):
    lengths = sorted({len(p) for p in specials}, reverse=True)  # try the longest pieces first
    out, start, i = [], 0, 0  # start: where the current stretch of ordinary text began
    while i < len(text):
        piece = next((text[i:i + n] for n in lengths if text[i:i + n] in specials), None)
        if piece is None:
            i += 1
            continue
        if start < i:
            out.append((text[start:i], None))
        out.append((piece, specials[piece]))
        i = start = i + len(piece)
    if start < len(text):
        out.append((text[start:], None))
    return out


# Answer to exercise 1.2's hint: "\n\n", "\n\n\n", ... up to 31 newlines are all special pieces, and
# so is "\n" alone. Taking the first (or shortest) match would cut five newlines into five "\n"
# tokens, a split the model never saw in training: SentencePiece takes the longest piece at each
# position. The same holds for runs of spaces and tabs, and for tags that share a prefix. A faster
# version groups the specials by their first character (what the package's Tokenizer does).


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
