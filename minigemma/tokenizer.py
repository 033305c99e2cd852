"""Gemma's tokenizer from scratch: SentencePiece-style BPE over a 262,144-piece vocabulary.

Gemma's vocabulary was trained with SentencePiece in BPE mode. Encoding a string takes four steps:

1. **Special pieces first.** Control tokens (``<bos>``, ``<start_of_turn>``, ...) and user-defined
   pieces (``\\n``, runs of tabs, ``<table>``, ...) are cut out of the raw text whole, longest match
   first, and become one id each.
2. **Spaces become ``▁``** (U+2581) in the rest. Gemma adds no "dummy prefix" space at the start.
3. **BPE merges.** Start from single characters; repeatedly merge the adjacent pair whose merged
   piece is best (highest score in a SentencePiece/GGUF vocabulary, lowest merge rank in a Hugging
   Face ``tokenizer.json``), leftmost on ties. A heap of candidate pairs keeps this O(n log n);
   cutting the text where no merge can cross and caching each word makes repeated words free.
4. **Byte fallback.** A piece that is not in the vocabulary (a rare character) is spelled as its
   UTF-8 bytes, using the 256 pieces ``<0x00>`` ... ``<0xFF>``.

Where the two references disagree: SentencePiece (how Google trained Gemma) treats the user-defined
whitespace runs (ids 138-167) as whole pieces; the ``tokenizer.json`` that transformers builds does
not list them as added tokens and lets BPE merge ``▁`` runs instead. From a GGUF we follow
SentencePiece; from a ``tokenizer.json`` we follow exactly what that file defines.
Left out: training, sampling-based encodings (BPE dropout), Unicode normalisation (Gemma uses none).
"""

import heapq
import json
from pathlib import Path

from .gguf import GGUFFile

# SentencePiece piece types, as stored in GGUF's tokenizer.ggml.token_type.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"  # "▁"
# Our own bound, not Gemma's: the word cache (word -> ids) is emptied once it holds this many words.
# An entry costs about 200 bytes (measured: a short str key and a short list of ids), so the cache
# stays near 20 MB, while 100k distinct words is more than a long book uses (repeats hit the cache).
WORD_CACHE_SIZE = 100_000


class Tokenizer:
    """``encode(text) -> ids`` and ``decode(ids) -> text`` for a Gemma vocabulary.

    Build one with ``Tokenizer.from_file(path)`` (a ``.gguf`` or a ``tokenizer.json``).
    """

    def __init__(self, pieces, types, scores=None, merges=None, bos_id=2, eos_id=1, pad_id=0,
                 special_pieces=None):
        self.pieces = list(pieces)  # id -> piece text
        self.types = list(types)  # id -> piece type (NORMAL, CONTROL, ...)
        self.piece_to_id = {}  # piece text -> id (first id wins, as in SentencePiece)
        for i, p in enumerate(self.pieces):
            self.piece_to_id.setdefault(p, i)
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        # Pair ranking: either scores of merged pieces (GGUF / SentencePiece) or a merge list (HF).
        self.scores = scores
        self.merge_rank = None  # (left, right) -> rank
        if merges is not None:
            self.merge_rank = {pair: r for r, pair in enumerate(merges)}
        # Pieces BPE may produce: SentencePiece never merges into control or byte pieces.
        self.mergeable = {p for p, i in self.piece_to_id.items() if p and self.types[i] in (NORMAL, USER_DEFINED, UNUSED)}
        # Pieces matched whole in raw text before BPE (step 1).
        if special_pieces is None:
            special_pieces = [p for p, t in zip(self.pieces, self.types) if t in (CONTROL, USER_DEFINED)]
        self.special = {p: self.piece_to_id[p] for p in special_pieces if p}
        self._special_first = {}  # first character -> lengths of special pieces starting with it
        for p in self.special:
            self._special_first.setdefault(p[0], set()).add(len(p))
        self._special_first = {c: sorted(ls, reverse=True) for c, ls in self._special_first.items()}
        self.byte_ids = [self.piece_to_id.get(f"<0x{b:02X}>") for b in range(256)]
        # Pieces with a '▁' after their first character can merge across a word boundary; we index
        # them by the character before that '▁' so _words() can find the boundaries BPE never crosses.
        self._bridges = {}  # char before the inner '▁' -> [(piece, offset of the '▁')]
        for p in self.mergeable:
            for o in range(1, len(p)):
                if p[o] == SPACE:
                    self._bridges.setdefault(p[o - 1], []).append((p, o))
        self._cache = {}  # word -> ids
        self.source = None  # the tokenizer.json it was read from, if any: an export copies that file

    @property
    def vocab_size(self):
        return len(self.pieces)

    # --- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path):
        """Read a vocabulary from a ``.gguf`` file or a Hugging Face ``tokenizer.json``."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        if path.suffix == ".gguf":
            return cls._from_gguf(path)
        if path.suffix == ".json":
            return cls._from_tokenizer_json(path)
        raise ValueError(f"{path}: expected a .gguf file or a tokenizer.json")

    @classmethod
    def _from_gguf(cls, path):
        return cls.from_gguf_metadata(GGUFFile(path).metadata, path)

    @classmethod
    def from_gguf_metadata(cls, meta: dict, source="GGUF"):
        """Build from the ``tokenizer.ggml.*`` entries of GGUF metadata."""
        if meta.get("tokenizer.ggml.model") != "llama":
            raise ValueError(f"{source}: tokenizer model is {meta.get('tokenizer.ggml.model')!r}; "
                             "minigemma reads SentencePiece vocabularies ('llama') only")
        if meta.get("tokenizer.ggml.add_space_prefix", False):
            raise ValueError(f"{source}: this vocabulary adds a dummy space prefix, which Gemma does not use")
        return cls(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"],
                   scores=meta["tokenizer.ggml.scores"],
                   bos_id=meta.get("tokenizer.ggml.bos_token_id", 2),
                   eos_id=meta.get("tokenizer.ggml.eos_token_id", 1),
                   pad_id=meta.get("tokenizer.ggml.padding_token_id", 0))

    @classmethod
    def _from_tokenizer_json(cls, path):
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        model = data.get("model", {})
        if model.get("type") != "BPE" or not model.get("byte_fallback"):
            raise ValueError(f"{path}: expected a byte-fallback BPE tokenizer (Gemma's); got {model.get('type')}")
        vocab = model["vocab"]  # piece -> id
        added = {a["id"]: a for a in data.get("added_tokens", [])}
        pieces = [""] * (max([*vocab.values(), *added]) + 1)  # added tokens may lie past the BPE vocabulary
        for p, i in vocab.items():
            pieces[i] = p
        for i, a in added.items():
            pieces[i] = a["content"]
        types = []
        for i, p in enumerate(pieces):
            if not p:
                types.append(UNUSED)  # an id nothing uses
            elif i in added:
                types.append(CONTROL if added[i]["special"] else USER_DEFINED)
            elif len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
                types.append(BYTE)
            else:
                types.append(NORMAL)
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        specials = [a["content"] for a in data.get("added_tokens", [])]
        ids = {name: vocab.get(tok) for name, tok in (("bos", "<bos>"), ("eos", "<eos>"), ("pad", "<pad>"))}
        tokenizer = cls(pieces, types, merges=merges, special_pieces=specials,
                        bos_id=ids["bos"], eos_id=ids["eos"], pad_id=ids["pad"])
        tokenizer.source = Path(path).resolve()
        return tokenizer

    # --- encoding --------------------------------------------------------------------------------
    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Text -> list of token ids. ``add_bos`` puts ``<bos>`` (id 2) in front, as Gemma expects."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        ids = [self.bos_id] if add_bos else []
        for chunk, special_id in self._split_special(text):
            if special_id is not None:
                ids.append(special_id)
            else:
                ids.extend(self._bpe(chunk.replace(" ", SPACE)))
        return ids

    def _split_special(self, text):
        """Yield (chunk, None) for ordinary text and (piece, id) for special pieces, longest match first."""
        start = i = 0
        while i < len(text):
            for n in self._special_first.get(text[i], ()):
                piece = text[i:i + n]
                if len(piece) == n and piece in self.special:
                    if start < i:
                        yield text[start:i], None
                    yield piece, self.special[piece]
                    i += n
                    start = i
                    break
            else:
                i += 1
        if start < len(text):
            yield text[start:], None

    def _pair_priority(self, left, right):
        """Smaller is merged first; None means the pair cannot merge."""
        if self.merge_rank is not None:
            return self.merge_rank.get((left, right))
        merged = left + right
        if merged not in self.mergeable:
            return None
        return -self.scores[self.piece_to_id[merged]]

    def _bpe(self, text):
        """BPE word by word, with a cache: the same words come back again and again."""
        ids = []
        for word in self._words(text):
            cached = self._cache.get(word)
            if cached is None:
                if len(self._cache) > WORD_CACHE_SIZE:
                    self._cache.clear()
                cached = self._cache[word] = self._bpe_word(word)
            ids.extend(cached)
        return ids

    def _words(self, text):
        """Split before each '▁' that no merge can cross. The split is exact, not a heuristic: a
        merged piece that spans position j would be a vocabulary piece with a '▁' inside that
        matches the text around j, and we only cut where no such piece matches."""
        start, j = 0, text.find(SPACE, 1)
        while j != -1:
            if not any(text.startswith(p, j - o) for p, o in self._bridges.get(text[j - 1], ()) if j >= o):
                yield text[start:j]
                start = j
            j = text.find(SPACE, j + 1)
        yield text[start:]

    def _bpe_word(self, text):
        """Merge characters of ``text`` into pieces, best pair first; return ids (byte fallback)."""
        syms = list(text)  # current pieces; merged-away slots become None
        nxt = list(range(1, len(syms))) + [-1]  # linked list over the live pieces
        prv = list(range(-1, len(syms) - 1))
        heap = []  # (priority, left position, right position, left piece, right piece)

        def push(a, b):
            prio = self._pair_priority(syms[a], syms[b])
            if prio is not None:
                heapq.heappush(heap, (prio, a, b, syms[a], syms[b]))

        for a in range(len(syms) - 1):
            push(a, a + 1)
        while heap:
            _, a, b, left, right = heapq.heappop(heap)
            if syms[a] != left or syms[b] != right or nxt[a] != b:
                continue  # stale: one side was merged since this pair was pushed
            syms[a], syms[b] = left + right, None
            nxt[a] = nxt[b]
            if nxt[b] != -1:
                prv[nxt[b]] = a
            if prv[a] != -1:
                push(prv[a], a)
            if nxt[a] != -1:
                push(a, nxt[a])
        ids = []
        for piece in syms:
            if piece is None:
                continue
            i = self.piece_to_id.get(piece)
            if i is not None and self.types[i] != BYTE:
                ids.append(i)
            else:  # byte fallback
                ids.extend(self.byte_ids[b] for b in piece.replace(SPACE, " ").encode("utf-8"))
        return ids

    # --- decoding --------------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text. Byte pieces are gathered and decoded as UTF-8; ``▁`` becomes a space."""
        out = bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.pieces):
                raise ValueError(f"token id {i} is outside the vocabulary (0..{len(self.pieces) - 1})")
            t = self.types[i]
            if t == BYTE:
                out.append(int(self.pieces[i][3:5], 16))
            elif t == CONTROL and skip_special_tokens:
                continue
            else:
                out.extend(self.pieces[i].replace(SPACE, " ").encode("utf-8"))
        return out.decode("utf-8", errors="replace")

    def id_to_piece(self, i: int) -> str:
        return self.pieces[i]

    def __repr__(self):
        return f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_id}, eos={self.eos_id}, pad={self.pad_id})"
