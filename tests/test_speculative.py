"""MTP drafter and speculative decoding vs transformers: small random Gemma 4 targets (E-style with
PLE and KV sharing; 31B-style with keys as values) and Gemma 4 assistants (with and without the
centroid head) saved by transformers, norms and scalars perturbed, sequences longer than the window."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import minigemma
from minigemma import CheckpointError, KVCache, generate_ids
from minigemma.mtp import Drafter, DrafterConfig, producer_layers
from minigemma.sampling import Sampling
from minigemma.speculative import PromptLookup, Stats, cached_kv, speculative_ids, verify

from .conftest import hf_greedy, perturb
from .test_gemma4 import STYLES, TINY

PAIRS = {  # name: (target style, assistant uses the centroid head)
    "e-style": ("e-style", False),
    "e-style-ordered": ("e-style", True),
    "31b-style-ordered": ("31b-style", True),
}


def assistant_config(style, ordered):
    from transformers import Gemma4AssistantConfig, Gemma4TextConfig

    target = {**TINY, **STYLES[style]}
    text = dict(TINY, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_kv_shared_layers=3,
                layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                num_key_value_heads=target["num_key_value_heads"], vocab_size_per_layer_input=0,
                num_global_key_value_heads=target.get("num_global_key_value_heads"),
                attention_k_eq_v=target.get("attention_k_eq_v", False))
    return Gemma4AssistantConfig(text_config=Gemma4TextConfig(**text), backbone_hidden_size=TINY["hidden_size"],
                                 use_ordered_embeddings=ordered, num_centroids=2048, centroid_intermediate_top_k=32)


def make_pair(directory, tokenizer_dir, name):
    """Save a random target and a random assistant for it with transformers; return both models."""
    from transformers import Gemma4AssistantForCausalLM, Gemma4ForCausalLM, Gemma4TextConfig

    style, ordered = PAIRS[name]
    torch.manual_seed(0)
    target = Gemma4ForCausalLM(Gemma4TextConfig(**{**TINY, **STYLES[style]})).eval()
    perturb(target, std=0.3)
    target.save_pretrained(directory / "target")
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", directory / "target" / "tokenizer.json")
    assistant = Gemma4AssistantForCausalLM(assistant_config(style, ordered)).eval()
    perturb(assistant, std=0.3)
    with torch.no_grad():
        for p in (assistant.pre_projection.weight, assistant.post_projection.weight):
            p.normal_(0, 0.2)  # drafts and next hidden states of a useful size
        if ordered:
            assistant.masked_embedding.token_ordering.copy_(torch.randperm(262144))
            assistant.masked_embedding.centroids.weight.normal_(0, 0.2)
    assistant.save_pretrained(directory / "assistant")
    return target, assistant


@pytest.fixture(scope="module", params=sorted(PAIRS))
def pair(request, tmp_path_factory, hf_tokenizer_dir):
    directory = tmp_path_factory.mktemp(request.param)
    ref_target, ref_assistant = make_pair(directory, hf_tokenizer_dir, request.param)
    target, _ = minigemma.load(directory / "target", progress=False)
    drafter, tokenizer = minigemma.load(directory / "assistant", progress=False)
    return request.param, ref_target, ref_assistant, target, drafter, directory


def test_load_gives_a_strictly_checked_drafter(pair):
    name, _, ref_assistant, _, drafter, directory = pair
    assert isinstance(drafter, Drafter)
    assert minigemma.load(directory / "assistant", progress=False)[1] is None  # no tokenizer.json there
    theirs = {k.removeprefix("model."): tuple(v.shape) for k, v in ref_assistant.state_dict().items()
              if k != "lm_head.weight"}  # tied to model.embed_tokens
    config = DrafterConfig.from_dict(json.loads((directory / "assistant" / "config.json").read_text()))
    assert minigemma.expected_keys(config) == theirs
    assert drafter.masked_embedding is None or drafter.masked_embedding.token_ordering.dtype == torch.long


@torch.no_grad()
def test_drafter_logits_and_hidden_states_equal_transformers(pair):
    """Three chained drafting steps after a 20-token prompt (window 8), from the target's own state."""
    _, ref_target, ref_assistant, target, drafter, _ = pair
    ids = torch.randint(3, 262144, (1, 20), generator=torch.Generator().manual_seed(1))
    out = ref_target(ids, output_hidden_states=True, return_shared_kv_states=True, use_cache=True)
    cache = KVCache(target.config, batch=1, max_len=32)
    logits, hidden = target(ids, cache=cache, return_hidden=True)
    torch.testing.assert_close(hidden, out.hidden_states[-1], atol=1e-4, rtol=0)  # the state drafters read
    # transformers hands the drafter every position's K/V; ours are in a ring of `window` slots, so
    # give our drafter the same full K/V here (the window reach is then compared too).
    theirs_kv = {t: (k, v) for t, (k, v) in out.shared_kv_states.items()}
    ours_kv = {t: (k, v, torch.arange(k.shape[2])) for t, (k, v) in theirs_kv.items()}
    assert set(ours_kv) == set(producer_layers(target.config))
    for typ, j in producer_layers(target.config).items():  # our cache holds the same K/V (latest window)
        k, v, pos = cached_kv(target, cache, j)  # keys rebuilt from values on keys-as-values layers
        order = pos.argsort()
        torch.testing.assert_close(k[:, :, order], theirs_kv[typ][0][:, :, -len(pos):], atol=1e-4, rtol=0)
        torch.testing.assert_close(v[:, :, order], theirs_kv[typ][1][:, :, -len(pos):], atol=1e-4, rtol=0)
    token, h_ours, h_theirs = 1234, hidden[:, -1:], out.hidden_states[-1][:, -1:]
    for step in range(3):
        embeds = ref_target.get_input_embeddings()(torch.tensor([[token]]))
        torch.testing.assert_close(target.embed(torch.tensor([[token]])), embeds)
        ref = ref_assistant(inputs_embeds=torch.cat([embeds, h_theirs], -1), position_ids=torch.tensor([[20]]),
                            shared_kv_states=theirs_kv, attention_mask=torch.ones(1, 21, dtype=torch.long))
        logits, h_ours = drafter(embeds, h_ours, ours_kv, position=20)
        torch.testing.assert_close(logits, ref.logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(h_ours, ref.last_hidden_state, atol=1e-4, rtol=0)
        assert logits.abs().max() > 1  # logits of a useful size, so 1e-4 means something
        h_theirs, token = ref.last_hidden_state, int(ref.logits[0, -1].argmax())


@torch.no_grad()
def test_centroid_head_scores_only_the_chosen_clusters(pair):
    name, _, _, _, drafter, _ = pair
    h = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(4))
    head = drafter.masked_embedding
    if head is None:  # the plain drafter scores every token through the tied head
        assert name == "e-style"
        return
    ids = head.candidates(h)[0, 0]
    logits = head(h, drafter.embed_tokens.weight)[0, 0]
    assert ids.numel() == 32 * 128 == ids.unique().numel()
    scored = torch.zeros(262144, dtype=torch.bool)
    scored[ids] = True
    torch.testing.assert_close(logits[ids], drafter.embed_tokens.weight[ids] @ h[0, 0])
    assert (logits[~scored] == logits[ids].min() - 1).all()


@pytest.mark.parametrize("k", [1, 4])
def test_speculative_greedy_equals_plain_greedy_and_transformers_assisted(pair, k):
    _, ref_target, ref_assistant, target, drafter, _ = pair
    ids = list(range(1000, 1012))
    plain = list(generate_ids(target, ids, max_new_tokens=30))  # 42 positions, window 8
    stats = Stats()
    ours = list(speculative_ids(target, ids, drafter, k, max_new_tokens=30, stats=stats))
    assert ours == plain
    assert sum(a + 1 for _, a, _ in stats.rounds) + 1 >= 30 and all(len(d) <= k for d, _, _ in stats.rounds)
    assert list(generate_ids(target, ids, max_new_tokens=30, assistant=drafter, num_draft_tokens=k)) == plain
    ref_assistant.generation_config.num_assistant_tokens = k
    out = ref_target.generate(torch.tensor([ids]), assistant_model=ref_assistant, max_new_tokens=30, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
    assert out[0, len(ids):].tolist() == plain == hf_greedy(ref_target, ids, 30)


class Oracle:
    """Drafts the known greedy continuation, wrong at chosen positions: exercises every accept length."""

    def __init__(self, prompt_len, continuation, wrong_at):
        self.prompt_len, self.continuation, self.wrong_at = prompt_len, continuation, wrong_at

    def start(self, max_len):
        pass

    def propose(self, ids, hidden, cache, k, draw):
        done = len(ids) - self.prompt_len
        drafts = list(self.continuation[done:done + k])
        for i in range(len(drafts)):
            if done + i in self.wrong_at:
                drafts[i] = (drafts[i] + 1) % 262144
        return drafts, [None] * len(drafts)

    def accepted(self, n):
        pass


def test_partial_acceptance_and_smaller_model_drafting_keep_greedy_exact(pair):
    _, _, _, target, _, _ = pair
    ids = list(range(2000, 2015))
    plain = list(generate_ids(target, ids, max_new_tokens=30))
    stats = Stats()
    oracle = Oracle(len(ids), plain, wrong_at={1, 2, 5, 9, 10, 11, 16, 18, 24})
    assert list(speculative_ids(target, ids, oracle, 4, max_new_tokens=30, stats=stats)) == plain
    assert {0, 1, 2, 3} <= {a for _, a, _ in stats.rounds}  # every length of accepted prefix happened
    # the target drafting for itself: every draft is accepted, k + 1 tokens per pass
    stats = Stats()
    assert list(speculative_ids(target, ids, target, 3, max_new_tokens=30, stats=stats)) == plain
    assert stats.acceptance_rate == 1.0 and [a for _, a, _ in stats.rounds][:-1] == [3] * (len(stats.rounds) - 1)


def test_prompt_lookup_drafts_by_copying():
    lookup = PromptLookup(max_ngram=2)
    ids = [5, 6, 7, 8, 9, 1, 5, 6, 7, 4, 6, 7]
    assert lookup.propose(ids, None, None, 3, None)[0] == [4, 6, 7]  # most recent earlier "6 7"
    assert lookup.propose([1, 2, 3], None, None, 3, None)[0] == []


@torch.no_grad()
def test_cache_after_a_rejection_equals_a_cache_that_never_saw_it(pair):
    name, _, _, target, _, _ = pair
    ids = torch.randint(3, 262144, (1, 27), generator=torch.Generator().manual_seed(5))
    prompt, accepted, rejected = ids[:, :19], ids[:, 19:22], ids[:, 22:]  # 19 > window 8: the rings wrapped
    a = KVCache(target.config, batch=1, max_len=40)
    target(prompt, cache=a)
    mark = a.checkpoint(8)
    target(torch.cat([accepted, rejected], 1), cache=a)
    a.rollback(mark, keep=3)
    b = KVCache(target.config, batch=1, max_len=40)
    target(prompt, cache=b)
    target(accepted, cache=b)
    assert a.seen == b.seen == 22 and torch.equal(a.blocks, b.blocks)
    for la, lb in zip(a.layers, b.layers):
        if la is None:
            assert lb is None
            continue
        assert la.filled == lb.filled and torch.equal(la.pos, lb.pos)
        assert (la.k is None) == (lb.k is None)  # None: a values-only cache (keys as values)
        if la.k is not None:
            torch.testing.assert_close(la.k, lb.k, atol=1e-5, rtol=0)
        torch.testing.assert_close(la.v, lb.v, atol=1e-5, rtol=0)
    # and decoding goes on identically
    nxt = torch.tensor([[77]])
    torch.testing.assert_close(target(nxt, cache=a), target(nxt, cache=b), atol=1e-5, rtol=0)


def test_accept_reject_rule_keeps_the_target_distribution():
    """Draw many times from a fixed target p and drafter q: the kept tokens follow p, not q."""
    gen = torch.Generator().manual_seed(0)
    p_logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0], [0.0, 0.3, 0.0, 0.0, 1.0]])
    q = torch.tensor([0.05, 0.05, 0.6, 0.2, 0.1])
    sampling = Sampling(temperature=1.0)
    counts = torch.zeros(5)
    n = 20000
    for _ in range(n):
        d = int(torch.multinomial(q, 1, generator=gen))
        accepted, token = verify(p_logits, [d], [q], sampling, gen)
        counts[d if accepted else token] += 1
    p = p_logits[0].softmax(-1)
    assert (counts / n - p).abs().max() < 0.015, (counts / n, p)
    # a deterministic (one-hot) draft, as prompt lookup makes
    counts.zero_()
    for _ in range(n):
        accepted, token = verify(p_logits, [2], [None], sampling, gen)
        counts[2 if accepted else token] += 1
    assert (counts / n - p).abs().max() < 0.015


def test_speculative_sampling_runs_and_is_reproducible(pair):
    _, _, _, target, drafter, _ = pair
    ids = list(range(1000, 1010))
    kw = dict(max_new_tokens=20, temperature=0.8, top_k=50, seed=3)
    first = list(speculative_ids(target, ids, drafter, 3, **kw))
    assert len(first) == 20 and first == list(speculative_ids(target, ids, drafter, 3, **kw))


def test_bad_input_errors(pair, tmp_path):
    name, _, _, target, drafter, directory = pair
    ids = [1000, 1001]
    with pytest.raises(ValueError, match="num_draft_tokens must be an integer >= 1, got 0"):
        list(generate_ids(target, ids, 5, assistant=drafter, num_draft_tokens=0))
    with pytest.raises(ValueError, match="num_draft_tokens needs an assistant"):
        list(generate_ids(target, ids, 5, num_draft_tokens=3))
    with pytest.raises(ValueError, match=r"a verification pass of 9 tokens must fit in the smallest ring buffer "
                                         r"\(8 positions"):
        list(generate_ids(target, ids, 20, assistant=drafter, num_draft_tokens=8))
    with pytest.raises(TypeError, match="assistant must be a Gemma 4 assistant"):
        list(generate_ids(target, ids, 5, assistant="a drafter"))
    for option in ({"quantize": "int8"}, {"pack": True}):  # speed options belong to the target
        with pytest.raises(ValueError, match=f"{next(iter(option))}= applies to a decoder model"):
            minigemma.load(directory / "assistant", progress=False, **option)
    with pytest.raises(ValueError, match="takes text prompts only"):
        list(generate_ids(target, ids, 5, assistant=drafter, images=[torch.zeros(3, 8, 8)]))
    cfg = json.loads((directory / "assistant" / "config.json").read_text())
    for change, message in [({"backbone_hidden_size": 48}, "built for a target of width 48 .* hidden_size is 64"),
                            ({"text_config": {**cfg["text_config"], "vocab_size": 131072}},
                             r"the drafter's vocabulary \(131072\) differs from the target's \(262144\)"),
                            ({"text_config": {**cfg["text_config"], "head_dim": 8}},
                             r"drafter layer 0 \(sliding_attention\) expects \(KV heads, head dim\) = \(\d, 8\)")]:
        other = Drafter(DrafterConfig.from_dict({**cfg, **change}))
        with pytest.raises(ValueError, match=message):
            list(generate_ids(target, ids, 5, assistant=other))
    from minigemma.config import TextConfig

    with torch.device("meta"):  # only its config is read
        small = minigemma.Gemma(TextConfig(vocab_size=131072, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                           num_attention_heads=1, head_dim=8, layer_types=("full_attention",)))
    with pytest.raises(ValueError, match=r"drafting model's vocabulary \(131072\) differs from the target's"):
        list(generate_ids(target, ids, 5, assistant=small))
    with pytest.raises(ValueError, match="num_kv_shared_layers=1: every one of the 3 layers of a drafter"):
        DrafterConfig.from_dict({**cfg, "text_config": {**cfg["text_config"], "num_kv_shared_layers": 1}})
    with pytest.raises(ValueError, match="text_config.enable_moe_block=True is not supported by a drafter"):
        DrafterConfig.from_dict({**cfg, "text_config": {**cfg["text_config"], "enable_moe_block": True}})
    with pytest.raises(ValueError, match="vocab_size 262144 is not a multiple of num_centroids 3000"):
        DrafterConfig.from_dict({**cfg, "use_ordered_embeddings": True, "num_centroids": 3000})
    # a drafter checkpoint is checked as strictly as any other
    from safetensors.torch import load_file, save_file

    state = load_file(directory / "assistant" / "model.safetensors")
    state.pop("pre_projection.weight")
    save_file(state, tmp_path / "model.safetensors")
    shutil.copy(directory / "assistant" / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"missing tensors: pre_projection\.weight"):
        minigemma.load(tmp_path, progress=False)
