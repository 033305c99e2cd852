"""EmbeddingGemma 2: a Gemma 4 decoder turned into an encoder for search, and ``embed``.

Search and retrieval want one vector per text, close to the vectors of texts that mean the same.
A decoder reads left to right because it must predict the next token; an encoder may let every
token use the whole text. EmbeddingGemma 2 (transformers ``embedding_gemma2``) keeps Gemma 4's layer
exactly (``decoder.DecoderLayer``: QK-norm, weightless value norm, scores scaled by 1, norms that
scale by ``w``, the sandwich, the PLE branch after the MLP, the layer scalar) and changes what is
around it:

1. **Bidirectional attention, every layer.** A token also sees the tokens after it. A sliding layer
   sees the keys within a *radius*, ``|q - k| <= sliding_window`` (512: up to 1,025 keys), not the
   causal "itself and the window - 1 before". Padding keys are never seen, so texts padded into one
   batch get the vectors they get alone. Global layers have their own head dim (512) and KV-head
   count (1) but keep their value projection (no keys-as-values), and RoPE is plain on both layer
   types (θ = 10⁴ sliding, 10⁶ global over the whole head), not Gemma 4's proportional RoPE.
2. **PLE as a projection only.** No per-layer token table (E2B's has 2.3B entries): each layer's
   slice is the normed projection of the input embedding (``ple.per_layer_projection``), without
   the 2^-½ mix. With images or audio it is the projection of the *merged* embeddings.
3. **No LM head.** After the final norm, ``embedding_projection`` maps every token to
   ``embedding_dim`` (512 -> 768); ``model(ids)`` returns those per-token vectors.
4. **Mean pooling** (``embed``): a text's vector is the mean of its tokens' vectors (padding left
   out), L2-normalised, so a dot product is the cosine. The projection is linear, so projecting
   each token and then averaging equals averaging and then projecting.
5. **Matryoshka** (MRL, Kusupati et al. 2022): training made the leading 512, 256 and 128 values an
   embedding of their own; truncate, renormalise, and store 6 times less at 128 for a small loss.

Images, video and audio use Gemma 4's own towers and embedders (``vision.py``, ``audio.py``) and
the same placeholder merge (``multimodal.py``). Left out: the task prompts the model was trained
with (text a caller prepends, e.g. ``"task: search result | query: "``), and training.

Checkpoint names: transformers nests the PLE parts (``ple.*``, ``layers.{i}.ple_block.*``); ours are
E2B's (``per_layer_model_projection``, ``layers.{i}.per_layer_input_gate`` …), since the layers are
the decoder's. ``ours_from_transformers`` is that renaming, used by the loader (``weights.py``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .audio import AudioTower
from .chat_tags import MARKERS
from .config import TextConfig
from .decoder import DecoderLayer, Gemma, rope_angles
from .multimodal import MultimodalEmbedder, MultimodalGemma, check_media, merge, multimodal_prompt, soft_tokens
from .norm import RMSNorm
from .ple import per_layer_projection
from .rope import inv_frequencies
from .vision import VisionTower

MATRYOSHKA_DIMS = (768, 512, 256, 128)  # the published model's trained sizes (model card: MRL)
# transformers' key (after the text model's prefix) -> ours: its PLE modules hold what E2B's layers hold.
HF_RENAMES = (("ple.", ""), (".ple_block.", "."))


def ours_from_transformers(key: str) -> str:
    """``language_model.layers.3.ple_block.per_layer_input_gate.weight`` -> ``layers.3.per_layer_input_gate.weight``."""
    key = key.removeprefix("language_model.")
    if key.startswith(HF_RENAMES[0][0]):
        key = key[len(HF_RENAMES[0][0]):]
    return key.replace(*HF_RENAMES[1])


class EmbeddingGemma(nn.Module):
    """Gemma 4 as an encoder: ``model(ids, attention_mask) -> (B, T, embedding_dim)`` per-token vectors.

    ``vision_config`` / ``audio_config`` (optional) add Gemma 4's towers (checkpoint keys
    ``vision_tower.*``, ``embed_vision.*``, ``audio_tower.*``, ``embed_audio.*``).
    """

    def __init__(self, config: TextConfig, vision_config=None, audio_config=None):
        super().__init__()
        if not config.is_encoder:
            raise ValueError(f"EmbeddingGemma needs an embedding_gemma2 config, got model_type {config.model_type!r}")
        self.config = config
        D, L, P = config.hidden_size, config.num_hidden_layers, config.hidden_size_per_layer_input
        eps = config.rms_norm_eps
        self.embed_tokens = nn.Embedding(config.vocab_size, D)
        self.per_layer_model_projection = nn.Linear(D, L * P, bias=False)  # PLE: the projection part only
        self.per_layer_projection_norm = RMSNorm(P, eps, config.norm_offset)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(L))  # bidirectional: config.is_encoder
        self.norm = RMSNorm(D, eps, config.norm_offset)
        self.embedding_projection = nn.Linear(D, config.embedding_dim, bias=False)  # in place of the LM head
        dims = {config.layer_types[i]: config.head_dim_of(i) for i in range(L)}
        self.inv_freq = {t: inv_frequencies(d, config.rope_parameters[t]) for t, d in dims.items()}
        self.vision_config, self.audio_config = vision_config, audio_config
        self.vision_tower = VisionTower(vision_config) if vision_config else None
        self.embed_vision = MultimodalEmbedder(vision_config.hidden_size, D, vision_config.rms_norm_eps) \
            if vision_config else None
        self.audio_tower = AudioTower(audio_config) if audio_config else None
        self.embed_audio = MultimodalEmbedder(audio_config.output_proj_dims, D, audio_config.rms_norm_eps) \
            if audio_config else None

    dtype = Gemma.dtype  # the decoder's own: the norms' dtype
    embed = Gemma.embed  # ids -> embeddings × √hidden, with the decoder's vocabulary check
    # Media as MultimodalGemma takes them: the same towers and embedders, the same input preparation.
    embed_media = MultimodalGemma.embed_media
    preprocess_image = MultimodalGemma.preprocess_image
    preprocess_video = MultimodalGemma.preprocess_video
    audio_features = MultimodalGemma.audio_features
    _needs = MultimodalGemma._needs

    def forward(self, input_ids, attention_mask=None, images=None, videos=None, audio=None):
        """input_ids: (B, T), attention_mask: (B, T) (1 = token, 0 = padding; None = no padding)
        -> (B, T, embedding_dim). ``images`` / ``videos`` / ``audio`` fill the placeholder tokens
        (``multimodal.soft_tokens``), in reading order over the whole batch."""
        cfg = self.config
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}")
        T = input_ids.shape[1]
        if T > cfg.max_position_embeddings:
            raise ValueError(f"{T} tokens do not fit: the model's context holds {cfg.max_position_embeddings}")
        key_mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids "
                                 f"{tuple(input_ids.shape)}")
            key_mask = attention_mask.bool()  # (B, T)
        check_media(images, videos, audio, each=False)
        x, _ = merge(self, input_ids, soft_tokens(self, images, videos, audio))  # (B, T, D)
        ple = per_layer_projection(x, self.per_layer_model_projection, self.per_layer_projection_norm,
                                   cfg.num_hidden_layers, cfg.hidden_size_per_layer_input)  # (B, T, L, P)
        positions = torch.arange(T, device=x.device)  # (T,): right padding keeps every text at 0, 1, …
        rot = {t: rope_angles(f, positions, x.dtype) for t, f in self.inv_freq.items()}  # type -> (T, hd) x2
        for i, layer in enumerate(self.layers):
            cos, sin = rot[layer.layer_type]
            x, _ = layer(x, cos, sin, positions, ple_input=ple[:, :, i], key_mask=key_mask)  # (B, T, D)
        return self.embedding_projection(self.norm(x))  # (B, T, E)


def matryoshka_dims(embedding_dim: int) -> tuple:
    """The sizes ``embed`` accepts: the full width, then each trained Matryoshka size below it.
    768 -> (768, 512, 256, 128); a smaller model, e.g. 300 -> (300, 256, 128), 64 -> (64,)."""
    return (embedding_dim,) + tuple(d for d in MATRYOSHKA_DIMS if d < embedding_dim)


def text_ids(tokenizer, text, images=(), videos=(), audio=()) -> list:
    """One text's ids: ``<bos>`` + the text + ``<eos>``, what EmbeddingGemma's own tokenizer adds (as
    EmbeddingGemma 300M's did). Media markers (``<|image|>`` …) become their placeholder runs."""
    return multimodal_prompt(tokenizer, text, images, videos, audio, add_bos=True) + [tokenizer.eos_id]


def media_per_text(texts, images=None, videos=None, audio=None) -> list:
    """Share the flat media lists out over the texts, in the order of their markers
    -> one ``{"image": [...], "video": [...], "audio": [...]}`` per text."""
    check_media(images, videos, audio)
    given = {"image": list(images or ()), "video": list(videos or ()), "audio": list(audio or ())}
    needed = {kind: sum(t.count(MARKERS[kind]) for t in texts) for kind in given}
    for kind in given:
        if needed[kind] != len(given[kind]):
            raise ValueError(f"the texts hold {needed[kind]} {MARKERS[kind]} markers but {len(given[kind])} "
                             f"{kind} items were passed (one per marker, in reading order)")
    per_text = []
    for text in texts:
        per_text.append({kind: [items.pop(0) for _ in range(text.count(MARKERS[kind]))]
                         for kind, items in given.items()})
    return per_text


@torch.no_grad()
def embed(model, tokenizer, texts, dim=None, images=None, videos=None, audio=None, batch_size=16):
    """Texts -> ``(len(texts), dim)`` float32 unit vectors: each text's per-token outputs averaged
    over its own tokens (padding excluded), truncated to ``dim``, L2-normalised.

    ``dim``: one of ``matryoshka_dims(model.config.embedding_dim)`` (768, 512, 256, 128 for the real
    model); None = the full width. Each text is ``<bos> text <eos>`` (``text_ids``); texts are run
    ``batch_size`` at a time, padded on the right, which gives the vectors each text gets alone.
    ``images`` / ``videos`` / ``audio``: flat lists taken in the order of the ``<|image|>``,
    ``<|video|>`` and ``<|audio|>`` markers across the texts (``"<|image|>"`` alone embeds a picture).
    """
    config = getattr(model, "config", None)
    if not getattr(config, "is_encoder", False):
        raise ValueError("embed needs an embedding model (an EmbeddingGemma 2 checkpoint, model_type "
                         "embedding_gemma2); this is a text generator: use generate")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of strings (wrap a single text in a list: [text])")
    if not texts:
        raise ValueError("texts is empty: give at least one text to embed")
    allowed = matryoshka_dims(config.embedding_dim)
    dim = config.embedding_dim if dim is None else dim
    if not isinstance(dim, int) or dim not in allowed:
        raise ValueError(f"dim={dim!r} is not a size this model was trained for: choose one of {allowed}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    media = media_per_text(texts, images, videos, audio)
    vectors = []
    for start in range(0, len(texts), batch_size):
        chunk = range(start, min(start + batch_size, len(texts)))
        ids = [text_ids(tokenizer, texts[j], media[j]["image"], media[j]["video"], media[j]["audio"]) for j in chunk]
        T = max(len(row) for row in ids)
        batch = torch.tensor([row + [0] * (T - len(row)) for row in ids])  # (b, T), pad id 0 on the right
        mask = torch.tensor([[1] * len(row) + [0] * (T - len(row)) for row in ids])  # (b, T)
        given = {kind: [m for j in chunk for m in media[j][kind]] or None for kind in ("image", "video", "audio")}
        out = model(batch, mask, images=given["image"], videos=given["video"], audio=given["audio"]).float()
        vectors.append(pool(out, mask))  # (b, E)
    return F.normalize(torch.cat(vectors)[:, :dim], dim=-1)  # (N, dim): truncate, then renormalise


def pool(out, mask):
    """out: (B, T, E), mask: (B, T) 1 at tokens -> (B, E), each row's mean over its own tokens."""
    m = mask.to(out.dtype)[..., None]  # (B, T, 1)
    return (out * m).sum(1) / m.sum(1)  # (B, E)
