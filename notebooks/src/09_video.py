# %% [markdown]
# # 09 · Video: frames, timestamps and tokens
#
# **What you will learn**
# - how Gemma 4 watches a clip: a fixed number of frames sampled uniformly over it, each frame
#   read as a small image (70 soft tokens by default) by the vision tower of notebook 08;
# - how the frames are placed in the prompt, each behind its `MM:SS` timestamp;
# - how the token count depends on the clip's length and on the per-frame budget;
# - the whole path on a tiny random model, checked against transformers.
#
# **Prerequisites:** notebook 08 (vision).

# %%
import numpy as np
import torch
import matplotlib.pyplot as plt
import minigemma
from minigemma.preprocess import BUDGETS, VIDEO_FRAMES, preprocess_video, resized_size, sample_frames

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. A clip made with numpy
# We need no video file: a clip is just an array of frames, `(T, H, W, 3)` uint8, and a frame rate.
# Ours lasts 10 seconds at 12 frames per second: a red ball crosses a 96 × 128 frame from left to
# right while a blue bar grows at the bottom, so that every moment looks different.

# %%
fps, seconds, H, W = 12, 10, 96, 128
T = fps * seconds
yy, xx = np.mgrid[:H, :W]
clip = np.full((T, H, W, 3), 235, np.uint8)  # light grey background
for t in range(T):
    cx, cy = 10 + (W - 20) * t / (T - 1), H / 2 + 20 * np.sin(2 * np.pi * t / T)
    clip[t][(xx - cx) ** 2 + (yy - cy) ** 2 < 100] = (220, 40, 40)  # the ball
    clip[t, H - 8:, : int(W * t / (T - 1)) + 1] = (40, 80, 200)  # the progress bar
print("clip:", clip.shape, clip.dtype, f"= {T / fps:.0f} s at {fps} fps")

# %% [markdown]
# ## 2. Which frames the model sees
# A clip can hold thousands of frames; the model sees a fixed number of them, **32** by default
# (transformers' `Gemma4VideoProcessor.num_frames`), spread uniformly: out of `T` frames it takes
# frame `i · T // 32` for `i = 0 … 31`. Each gets the time `index / fps`. A clip shorter than 32
# frames keeps all of its frames (transformers refuses such a clip instead; we chose to accept it).
# The frame rate is required: without it there are no timestamps.

# %%
indices, times = sample_frames(T, fps)
print("indices:", indices[:6], "…", indices[-2:])
print("times (s):", [round(t, 2) for t in times[:6]], "…", [round(t, 2) for t in times[-2:]])
from transformers.video_utils import VideoMetadata, default_sample_indices_fn
reference = default_sample_indices_fn(VideoMetadata(total_num_frames=T, fps=fps), num_frames=VIDEO_FRAMES)
assert indices == reference.tolist()  # transformers samples the same frames
hour, hour_times = sample_frames(3600 * 30, 30)  # an hour at 30 fps
print(f"an hour at 30 fps: {3600 * 30:,} frames -> {len(hour)} sampled, one every {hour_times[1]:.1f} s, "
      f"the last at {int(hour_times[-1] // 60):02d}:{int(hour_times[-1] % 60):02d}")

# %%
fig, ax = plt.subplots(figsize=(9, 1.4))
ax.vlines(np.arange(T) / fps, 0, 0.5, color="0.75", lw=0.8, label="every frame")
ax.vlines(times, 0, 1, color="C3", lw=1.5, label="sampled (32)")
ax.set_yticks([]); ax.set_xlabel("time (s)"); ax.legend(loc="upper right", fontsize=8, ncol=2)
ax.set_title("uniform sampling over the clip")
plt.show()

# %% [markdown]
# **Long clips.** Nothing in the processor limits a clip's length: an hour at 30 fps (108,000
# frames) is still 32 frames, one every 112.5 seconds (printed above). The timestamps keep growing
# (the last frame of that hour is stamped `58:07`), and `MM` simply passes 60 for clips over an
# hour, as transformers writes it. A clip given without a
# frame rate is refused with an error (transformers silently assumes 24 fps and warns); a clip
# with no frames is refused too.
#
# ## 3. The sampled frames
# `preprocess_video` samples the frames and turns each into an image of `max_soft_tokens` (70 by
# default) exactly as `preprocess_image` would, with the same Pillow resize. transformers' video
# processor resizes with torchvision (antialiased bicubic on tensors), which cannot be installed
# beside our CPU torch; its pixels may differ from ours by a rounding step. The model path after
# the pixels is the same and is compared below.

# %%
frames, stamps = preprocess_video(clip, fps)  # 32 × (patches, positions), 32 timestamps
h, w = resized_size(H, W, 70)
print(f"{len(frames)} frames, each resized to {h}×{w}: {len(frames[0][0])} patches → {len(frames[0][0]) // 9} soft tokens")
fig, axes = plt.subplots(4, 8, figsize=(12, 5.4))
for ax, (patches, positions), t in zip(axes.flat, frames, stamps):
    img = patches.reshape(h // 16, w // 16, 16, 16, 3).permute(0, 2, 1, 3, 4).reshape(h, w, 3)  # un-patchify
    ax.imshow(img.numpy()); ax.axis("off")
    ax.set_title(f"{int(t // 60):02d}:{int(t % 60):02d} ({t:.2f} s)", fontsize=7)
plt.show()

# %% [markdown]
# The labels show the catch: the prompt writes times as `MM:SS`, whole seconds, so three or four
# frames share each label here. The model tells them apart by their order, not by their stamps.
# Each frame is also encoded *on its own*: the vision tower never sees two frames together, so all
# motion has to be inferred by the text model, which reads the frames' soft tokens one after the
# other. That is the simplest possible video model — an image model applied to a flip-book — and
# it costs nothing extra to train or to run beyond the tokens themselves.
#
# ## 4. The prompt
# Each frame is written like an image, with the *video* placeholder (258884) instead of the image
# one, behind its timestamp; frames are joined by spaces:
#
# ```
# 00:00 <start_of_image> <|video|>×63 <end_of_image> 00:00 <start_of_image> … <end_of_image> 00:01 …
# ```
#
# (63 placeholders per frame for this clip's 336 × 432 frames: a budget of 70 is a ceiling.)
#
# `multimodal_prompt` writes one `<|video|>` marker this way. We check it against what transformers'
# processor writes (its `replace_video_token`, given the same frame indices and fps).

# %%
from types import SimpleNamespace
from transformers.models.gemma4.processing_gemma4 import Gemma4Processor
from minigemma.multimodal import BOI_ID, EOI_ID, VIDEO_ID
from minigemma.weights import resolve
tok = minigemma.Tokenizer.from_file(resolve("gemma3-270m"))
ids = minigemma.multimodal_prompt(tok, "What happens in <|video|>?", videos=[(frames, stamps)])
names = {BOI_ID: "<start_of_image>", EOI_ID: "<end_of_image>", VIDEO_ID: "<|video|>"}
text = "".join(names.get(i) or tok.decode([i]) for i in ids[1:])  # without <bos>
proc = SimpleNamespace(boi_token="<start_of_image>", eoi_token="<end_of_image>", video_token="<|video|>")
meta = VideoMetadata(total_num_frames=T, fps=fps, frames_indices=indices)
theirs = Gemma4Processor.replace_video_token(proc, {"num_soft_tokens_per_video": [len(frames[0][0]) // 9],
                                                    "video_metadata": [meta]}, 0)
assert text == f"What happens in {theirs}?"
import re
short = re.sub(r"(<\|video\|>)+", lambda m: f"<|video|>×{len(m.group(0)) // 9}", text)  # collapse runs
print(len(ids), "ids:", short[:170], "…", short[-60:])

# %% [markdown]
# ## 5. Tokens against length and budget
# The frame count is fixed, so a clip's cost does not grow with its length: 32 frames × the
# per-frame tokens (plus 2 markers and a timestamp per frame). What grows is the **gap** between
# sampled frames: a 2-minute clip is seen once every 3.75 s, and anything shorter can slip between
# two frames. The per-frame budget trades resolution against length: with a budget of 280 tokens
# per frame, a single video can take up to 8,960 positions (32 × 280; this clip's frames use 266 of
# the 280, so 8,512).

# %%
durations = np.array([2, 5, 10, 30, 60, 120, 300])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for budget in BUDGETS[:3]:
    per_frame = (lambda s: s[0] * s[1] // 256 // 9)(resized_size(H, W, budget))
    tokens = [min(VIDEO_FRAMES, d * fps) * per_frame for d in durations]
    axes[0].plot(durations, tokens, "o-", label=f"{budget} tokens / frame")
axes[0].set_xscale("log"); axes[0].set_xlabel("clip length (s), 12 fps"); axes[0].set_ylabel("soft tokens")
axes[0].legend(fontsize=8); axes[0].set_title("placeholders in the prompt")
axes[1].plot(durations, durations / np.minimum(VIDEO_FRAMES, durations * fps), "o-", color="C3")
axes[1].set_xscale("log"); axes[1].set_yscale("log"); axes[1].set_xlabel("clip length (s)")
axes[1].set_ylabel("seconds between sampled frames"); axes[1].set_title("how closely the clip is watched")
plt.show()
print(f"gap between sampled frames: {1000 / fps:.0f} ms while every frame is kept (clips under "
      f"{VIDEO_FRAMES / fps:.2f} s), {120 / VIDEO_FRAMES:.2f} s at 2 minutes, {300 / VIDEO_FRAMES:.1f} s at 5 minutes")
per_280 = (lambda s: s[0] * s[1] // 256 // 9)(resized_size(H, W, 280))
print(f"budget 280 per frame: at most {VIDEO_FRAMES * 280:,} positions; this clip: {per_280} per frame, "
      f"{VIDEO_FRAMES * per_280:,} in all")

# %% [markdown]
# Left: the placeholders stop growing once the clip has 32 frames (under 3 s at 12 fps); only the
# budget moves the curve, roughly doubling per step. Right: the gap between sampled frames grows in
# proportion to the length, from one frame every 83 ms (every frame) to one every 9 s at 5 minutes.
#
# Two practical consequences. To read a fast event (a ball bouncing once), cut the clip around it
# or pass more frames (`num_frames`), at the price of more tokens. To read small text in a video,
# raise the per-frame budget instead, at 32 times the per-frame price.
#
# ## 6. A tiny model watches the clip
# Same construction as notebook 08: a small random `Gemma4ForConditionalGeneration` from
# transformers (E2B-style text with per-layer embeddings and KV sharing, a clipped vision tower),
# saved, and read by the package's loader. To keep the sequence short we sample 8 frames.
# Its weights are random, so its words mean nothing; what matters is that our model and the
# reference compute the same numbers from the same frames, timestamps and placeholders. If they
# agree on a random model with every norm perturbed, a missing offset or a misplaced frame cannot
# hide, and the same code then runs a real checkpoint unchanged.

# %%
import tempfile
from pathlib import Path
from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4TextConfig, Gemma4VisionConfig
from transformers.utils.logging import disable_progress_bar
disable_progress_bar()  # the stored outputs should not show stuck progress bars
from minigemma.weights import read_hf_directory, build_model
text_cfg = Gemma4TextConfig(vocab_size=262144, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
    num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=32, sliding_window=64,
    layer_types=["sliding_attention", "full_attention"] * 2, num_kv_shared_layers=2, hidden_size_per_layer_input=8,
    use_bidirectional_attention="vision", initializer_range=0.2)
vision_cfg = Gemma4VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=2, head_dim=16, use_clipped_linears=True, initializer_range=0.2)
hf_model = Gemma4ForConditionalGeneration(Gemma4Config(text_config=text_cfg, vision_config=vision_cfg)).eval()
torch.nn.init.normal_(hf_model.model.embed_vision.embedding_projection.weight, std=1.0)
folder = Path(tempfile.mkdtemp())
hf_model.save_pretrained(folder)
config, state, towers = read_hf_directory(folder, progress=False)
model = build_model(config, state, **towers)

# %% [markdown]
# transformers' model takes all frames of all videos as one padded batch, `pixel_values_videos`
# `(frames, max patches, 768)`, with `video_position_ids` (padding at `(-1, -1)`) and
# `num_frames_per_video`; our model takes the list of frames. Both write the soft tokens over the
# video placeholders in order; video tokens are marked `2` in `mm_token_type_ids` for transformers'
# bidirectional mask (each frame's run of tokens is one block).

# %%
few, few_stamps = preprocess_video(clip, fps, num_frames=8)
ids = minigemma.multimodal_prompt(tok, "What happens in <|video|>? Answer:", videos=[(few, few_stamps)])
x = torch.tensor([ids])
with torch.no_grad():
    ours = model(x, videos=[(few, few_stamps)])
    theirs = hf_model(input_ids=x, pixel_values_videos=torch.stack([p for p, _ in few]),
                      video_position_ids=torch.stack([q for _, q in few]), num_frames_per_video=torch.tensor([8]),
                      mm_token_type_ids=(x == VIDEO_ID).long() * 2).logits
same = torch.allclose(ours, theirs, rtol=0, atol=1e-4 * theirs.abs().max().item())
print(f"{x.shape[1]} positions, {int((x == VIDEO_ID).sum())} video tokens; logits equal to transformers' "
      f"(1e-4 relative): {same}")
assert same

# %% [markdown]
# And greedy decoding with the KV cache: the frames go into the prompt's forward pass only, then
# each new token is one cached step. transformers' `generate` gives the same tokens.

# %%
mine = list(minigemma.generate_ids(model, ids, max_new_tokens=6, videos=[(few, few_stamps)]))
ref_ids = hf_model.generate(input_ids=x, pixel_values_videos=torch.stack([p for p, _ in few]),
                            video_position_ids=torch.stack([q for _, q in few]), num_frames_per_video=torch.tensor([8]),
                            mm_token_type_ids=(x == VIDEO_ID).long() * 2, max_new_tokens=6, do_sample=False,
                            eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
print("ours:", mine, "\ntransformers:", ref_ids)
assert mine == ref_ids

# %% [markdown]
# The weights are random, so the tokens mean nothing; what matters is that the whole path — frame
# sampling, preprocessing, the tower, the placeholders, bidirectional blocks per frame, the cache —
# runs together and agrees with the reference. With a real checkpoint,
# `model, tok = minigemma.load("path/to/gemma-4-E2B-it")` then
# `minigemma.generate(model, tok, prompt_with_<|video|>, videos=[(frames, stamps)])` runs the same
# code (the optional cell at the end of this section does it for you).
#
# The same in three lines, without transformers: `minigemma.tiny_random("gemma4-e2b")` is a model
# with E2B's structure at toy width, the real Gemma tokenizer and **random weights**, and
# `preprocess_video` returns exactly the `(frames, timestamps)` item that `generate` takes.

# %%
tiny, tiny_tok = minigemma.tiny_random("gemma4-e2b", seed=0)
item = minigemma.preprocess_video(clip, fps=fps, max_soft_tokens=70)
print(len(item[0]), "frames at", item[1][:3], "...")
print(repr(minigemma.generate(tiny, tiny_tok, "What happens in <|video|>?", videos=[item], max_new_tokens=8)))

# %% [markdown]
# ### Run it on the real model (optional)
# With a Gemma 4 checkpoint on disk, start Jupyter with `MINIGEMMA_GEMMA4=path/to/gemma-4-e2b-it`
# and this cell asks it, in its chat format, what happens in our clip (the 32 frames of `item`
# above, 70 tokens per frame at most); without it, it prints how to enable it and skips (the same
# cell as in notebooks 06, 08, 10 and 13). Nothing checks the answer: unlike the random model
# above, a real model's words mean something, and reading them is the test — does it see the ball
# move, or only a ball?

# %%
from real_weights import ask, real_gemma4
real = real_gemma4()  # (model, tokenizer) from $MINIGEMMA_GEMMA4, or None after a one-line note
if real:
    print(ask(*real, "What happens in <|video|>? Answer in one sentence.", videos=[item]))

# %% [markdown]
# ## Summary
# - A clip is `(T, H, W, 3)` frames and a frame rate. 32 frames are sampled uniformly
#   (`i · T // 32`), fewer if the clip has fewer; each is a small image (70 tokens by default).
# - In the prompt, each frame is `MM:SS <start_of_image> <|video|>×n <end_of_image>`, frames joined
#   by spaces; the timestamps are whole seconds.
# - Cost is fixed per clip (32 × the per-frame tokens); longer clips are watched more sparsely.
#
# ## Exercises
# Solutions: `../solutions/09_video.py`.
#
# **Exercise 9.1** — Write `frame_indices(total, n)`: the indices of the frames the model sees out
# of `total`, `n` at most, spread as in section 2.

# %%
from checks import check_exercise_9_1, check_exercise_9_2

def frame_indices(total, n):
    raise NotImplementedError  # your code here

check_exercise_9_1(frame_indices)

# %% [markdown]
# **Exercise 9.2** — Write `video_text(timestamps, tokens_per_frame)`: the prompt text of one video
# with the markers written as `<start_of_image>`, `<|video|>` and `<end_of_image>` (section 4).

# %%
def video_text(timestamps, tokens_per_frame):
    raise NotImplementedError  # your code here

check_exercise_9_2(video_text)

# %% [markdown]
# ## References
# - Gemma Team, [Gemma 3 Technical Report](https://arxiv.org/abs/2503.19786) (2025) — the
#   SigLIP-based vision path and soft tokens that Gemma 4 builds on.
# - Hugging Face transformers, [Gemma 4 model documentation](https://huggingface.co/docs/transformers/model_doc/gemma4),
#   `video_processing_gemma4.py`, `processing_gemma4.py` and `video_utils.default_sample_indices_fn` —
#   frame sampling and the prompt layout we match.
# - A. Arnab et al., [ViViT: A Video Vision Transformer](https://arxiv.org/abs/2103.15691) (2021) —
#   the other way to read video: patches across time instead of frame by frame.
