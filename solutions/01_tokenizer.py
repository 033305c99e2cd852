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


def merge_pair(symbols, pair):
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out
