"""Plausible bugs the suite must catch, applied one at a time by `make mutate` (tests/mutate.py).

Each mutation replaces `original` (which must occur exactly once in `file`; tests/test_mutations.py
checks it on every run) by `replacement`, then runs only `tests`: pytest node ids or files chosen so
that each mutation takes seconds. A mutation that leaves its tests green "survived": the behaviour
it breaks is unguarded. When you fix a bug in core code, add the bug here with the test that now
catches it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    original: str  # exact text, occurring once in `file`
    replacement: str
    breaks: str  # the behaviour a user would lose
    tests: tuple[str, ...]  # pytest node ids or test files that must fail
    also: tuple[tuple[str, str], ...] = ()  # further (original, replacement) edits in the same file

    @property
    def edits(self) -> tuple[tuple[str, str], ...]:
        return ((self.original, self.replacement), *self.also)

    def apply(self, text: str) -> str:
        """`text` with every edit made; each original must occur exactly once."""
        for original, replacement in self.edits:
            if text.count(original) != 1:
                raise ValueError(f"mutation {self.name!r}: {original!r} occurs {text.count(original)} times "
                                 f"in {self.file}, not once: update tests/mutations.py to the current code")
            text = text.replace(original, replacement)
        return text


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "sample prompts re-encoded on the CPU each time", "videosspo/trainer.py",
        '            on_cpu = "text_encoder" in encoders_on_cpu(cfg)',
        "            on_cpu = False",
        "with cached text every sample event runs the CPU text encoder again on the same prompts",
        ("tests/test_fit24gb.py::test_cached_text_keeps_the_text_encoder_off_the_accelerator_and_trains_bit_for_bit",)),
    Mutation(
        "cached text still moves the text encoder", "videosspo/latents.py",
        '    return ("text_encoder",) if config.data.latent_cache else ()\n',
        "    return ()\n",
        "a run with data.latent_cache keeps the 11 GB UMT5 encoder on the GPU (and the estimate counts it)",
        ("tests/test_fit24gb.py::test_cached_text_keeps_the_text_encoder_off_the_accelerator_and_trains_bit_for_bit",
         "tests/test_memory.py::test_cached_text_and_offloaded_checkpoints_rows")),
    Mutation(
        "keep_on_cpu ignored", "models/base.py",
        '                module.to("cpu" if name in keep_on_cpu else device)\n',
        "                module.to(device)\n",
        "the text encoder goes to the GPU although the run never uses it there",
        ("tests/test_fit24gb.py::test_cached_text_keeps_the_text_encoder_off_the_accelerator_and_trains_bit_for_bit",)),
    Mutation(
        "offloaded checkpoints not hooked", "models/base.py",
        "        with self.checkpoint_offload() if self.checkpoint_offload else contextlib.nullcontext():\n",
        "        with contextlib.nullcontext():\n",
        "model.offload_checkpoints: true keeps every checkpointed block input on the GPU",
        ("tests/test_fit24gb.py::test_offloaded_checkpoints_give_the_same_outputs_and_gradients",)),
    Mutation(
        "offloaded checkpoints copy the weights", "models/offload.py",
        "            if t.data_ptr() in weights:\n",
        "            if False:\n",
        "every step copies the frozen weights autograd saves to the host and back",
        ("tests/test_fit24gb.py::test_offloaded_checkpoints_give_the_same_outputs_and_gradients",)),
    Mutation(
        "offloaded checkpoints copy shared inputs per block", "models/offload.py",
        "            if seen is not None and seen[0]() is t:  # the same live tensor (an id is reused only after it died)\n",
        "            if False:\n",
        "the text / timestep / rotary tensors are copied to pinned memory once per block",
        ("tests/test_fit24gb.py::test_offloaded_checkpoints_give_the_same_outputs_and_gradients",)),
    Mutation(
        "estimate ignores offloaded checkpoints", "videosspo/memory.py",
        "        if checkpointing and offload:\n",
        "        if False:\n",
        "the estimate keeps counting the checkpointed inputs on the GPU with model.offload_checkpoints",
        ("tests/test_memory.py::test_cached_text_and_offloaded_checkpoints_rows",)),
    Mutation(
        "fp8 backward up-casts without the scale", "models/fp8.py",
        "        module, w = ctx.module, dequantize(w8, scale, grad.dtype)\n",
        "        module, w = ctx.module, w8.to(grad.dtype)\n",
        "model.fp8_base: LoRA gradients through every float8 layer are off by its scale (training silently wrong)",
        ("tests/test_lowmem.py::test_fp8_outputs_and_gradients",)),
    Mutation(
        "fp8 scale from the mean, not the absmax", "models/fp8.py",
        "    absmax = w.flatten(1).abs().amax(dim=1)\n",
        "    absmax = w.flatten(1).abs().mean(dim=1)\n",
        "model.fp8_base: the largest weights of each channel saturate at 448 s: outputs far from the model's",
        ("tests/test_lowmem.py::test_per_channel_scales_by_hand", "tests/test_lowmem.py::test_fp8_outputs_and_gradients")),
    Mutation(
        "fp8 state dict left in float8", "models/fp8.py",
        "        state_dict[key] = dequantize(state_dict[key], module.weight_scale, module.training_dtype)\n",
        "        pass\n",
        "model.fp8_base: merged exports and snapshots hold float8 weights without their scales",
        ("tests/test_lowmem.py::test_fp8_halves_weight_bytes_and_keeps_adapters_in_training_dtype",
         "tests/test_lowmem.py::test_fp8_state_dict_round_trips")),
    Mutation(
        "fp8 quantizes the LoRA adapters", "models/fp8.py",
        'SKIP = ("lora_", "embed",',
        'SKIP = ("embed",',
        "model.fp8_base: the trainable adapters would be stored in float8 (peft's lora_A/B are Linear layers)",
        ("tests/test_lowmem.py::test_fp8_halves_weight_bytes_and_keeps_adapters_in_training_dtype",)),
    Mutation(
        "block swap does not bring a block back for its backward", "models/offload.py",
        "        ctx.swap._bring(ctx.i)\n",
        "        pass\n",
        "model.blocks_to_swap without checkpointing: a block's backward reads released weights (NaN here, a device "
        "error on CUDA)",
        ("tests/test_lowmem.py::test_block_swap_schedule_outputs_and_gradients",)),
    Mutation(
        "block swap moves the LoRA adapters too", "models/offload.py",
        '                      for name, p in block.named_parameters() if "lora_" not in name]\n',
        "                      for name, p in block.named_parameters()]\n",
        "model.blocks_to_swap: the adapters would point back at their CPU copy after each forward: every optimizer "
        "update since install lost (diffusers' group offload's failure under training)",
        ("tests/test_lowmem.py::test_block_swap_keeps_adapters_and_unswapped_weights_on_the_device",)),
    Mutation(
        "estimator counts every block's activations under checkpointing", "videosspo/memory.py",
        "            return self.outside + sum(self.inputs) + max(self.blocks, default=0.0)\n",
        "            return self.outside + sum(self.blocks)\n",
        "videosspo estimate: checkpointing would look useless and the switches it proposes wrong",
        ("tests/test_memory.py::test_real_wan_rows_by_hand",
         "tests/test_memory.py::test_estimate_within_15_percent_of_the_measured_cpu_peak")),
    Mutation(
        "checkpoint written in place", "videosspo/trainer.py",
        'tmp = final.with_name(f".tmp-{final.name}")',
        "tmp = final",
        "a writer killed mid-checkpoint leaves a partial folder under a final step_* name",
        ("tests/test_training.py::test_a_writer_killed_between_files_leaves_the_previous_checkpoint_to_resume",),
        also=(("                commit(tmp, final)\n", ""),)),
    Mutation(
        "checkpoint rename order", "videosspo/checkpoint.py",
        "        remove(aside)\n        os.replace(final, aside)\n",
        "        remove(final)\n",
        "rewriting step_N deletes the old one before the new one is in place: a kill between leaves no step_N",
        ("tests/test_faults.py::test_kill_while_rewriting_the_final_checkpoint",)),
    Mutation(
        "checkpoint deleted in place", "videosspo/checkpoint.py",
        "    os.replace(folder, trash)\n    shutil.rmtree(trash, ignore_errors=True)",
        "    shutil.rmtree(folder, ignore_errors=True)",
        "a kill while pruning leaves a half-deleted folder under its step_* name",
        ("tests/test_faults.py::test_kill_while_pruning_then_resume_equals_uninterrupted",)),
    Mutation(
        "no fallback from a damaged newest checkpoint", "videosspo/trainer.py",
        '                if where != "latest":\n                    raise',
        "                raise",
        "resume latest stops at a truncated file although an earlier complete checkpoint exists",
        ("tests/test_faults.py::test_truncated_file_in_the_newest_checkpoint_falls_back_to_the_previous",)),
    Mutation(
        "divergence checkpoint pruned", "videosspo/checkpoint.py",
        "        if old.name != protect:",
        "        if True:",
        "after a blow-up keep_checkpoints deletes the last good checkpoint",
        ("tests/test_faults.py::test_divergence_keeps_the_last_checkpoint_before_it",)),
    Mutation(
        "metrics.jsonl not cut back at resume", "videosspo/trainer.py",
        "    if len(kept) < len(lines):",
        "    if False:",
        "steps between the last checkpoint and a kill are logged twice",
        ("tests/test_faults.py::test_truncated_file_in_the_newest_checkpoint_falls_back_to_the_previous",)),
    Mutation(
        "snapshot store collects referenced snapshots", "videosspo/checkpoint.py",
        "            if path.stem not in keep:",
        "            if True:",
        "pruning deletes replay snapshots that remaining checkpoints still refer to",
        ("tests/test_faults.py::test_kill_while_pruning_then_resume_equals_uninterrupted",)),
    Mutation(
        "fit steps against the gradient", "videosspo/trainer.py",
        "acc.backward(loss)",
        "acc.backward(-loss)",
        "training ascends the loss",
        ("tests/test_training.py::test_fit_lowers_the_loss_on_a_learnable_problem",)),
    Mutation(
        "v-prediction trained on the epsilon target (trainer)", "videosspo/trainer.py",
        "get_objective(model.objective)",
        'get_objective("epsilon")',
        "v-prediction models (SD 2.x-style, some video bases) regress onto ε and unlearn their parameterisation",
        ("tests/test_training.py::test_v_prediction_trains_on_the_velocity",)),
    Mutation(
        "v-prediction target is epsilon (objective registry)", "videosspo/objectives.py",
        "lambda scheduler, x0, noise, t: scheduler.get_velocity(x0, noise, t)",
        "lambda scheduler, x0, noise, t: noise",
        "the v_prediction objective trains on ε",
        ("tests/test_objectives.py", "tests/test_training.py::test_v_prediction_trains_on_the_velocity")),
    Mutation(
        "CFG around the conditional output", "videosspo/sampling.py",
        "out = out_u + g * (out_c - out_u)",
        "out = out_c + g * (out_c - out_u)",
        "guided samples (and SSPO's losers) over-steered by one extra conditional prediction",
        ("tests/test_sampling.py::test_one_cfg_step_is_the_guided_combination_then_the_scheduler_step",)),
    Mutation(
        "gradient checkpointing switch ignored", "videosspo/trainer.py",
        "if cfg.model.gradient_checkpointing:",
        "if False:",
        "model.gradient_checkpointing: true saves no activation memory",
        ("tests/test_training.py::test_gradient_checkpointing_gives_the_same_gradients",)),
    Mutation(
        "SSR switch condition inverted", "videosspo/losses.py",
        "switched = (ref_e_w < e_w).detach()",
        "switched = (ref_e_w > e_w).detach()",
        "SSPO falls back to SFT exactly when it should apply DPO",
        ("tests/test_losses.py",)),
    Mutation(
        "multistep solvers ignore clip_sample", "videosspo/sampling.py",
        '        if not config.get("clip_sample"):\n',
        "        if True:\n",
        "4-step UniPC / DPM++ losers of the stacked base diverge (std ~2000): SSPO trains against garbage",
        ("tests/test_sampling.py::test_multistep_solvers_clip_x0_on_a_clip_sample_schedule",)),
    Mutation(
        "SSPO's SFT anchor dropped", "videosspo/losses.py",
        "    loss = loss + sft_anchor * e_w\n",
        "",
        "method.sft_anchor silently trains plain SSPO",
        ("tests/test_losses.py::test_sft_anchor_adds_lambda_e_w_to_every_sample_of_dpo_and_sspo",)),
    Mutation(
        "winner and loser get different noise", "videosspo/trainer.py",
        "noise.repeat(k, 1, 1, 1, 1)",
        "torch.cat([noise] + [torch.randn_like(noise)] * (k - 1))",
        "Δ_w − Δ_l compares errors at different noise: DPO/SSPO's preference signal becomes noise",
        ("tests/test_trainer.py::test_winner_and_loser_share_timestep_and_noise_in_one_forward",)),
    Mutation(
        "winner and loser get different timesteps", "videosspo/trainer.py",
        "t.repeat(k)",
        "torch.cat([t] + [t.flip(0)] * (k - 1))",
        "Δ_w − Δ_l compares errors at different noise levels",
        ("tests/test_trainer.py::test_winner_and_loser_share_timestep_and_noise_in_one_forward",)),
    Mutation(
        "theta0 evicted from the replay pool", "videosspo/replay.py",
        'if self.evict == "oldest":\n            return 1',
        'if self.evict == "oldest":\n            return 0',
        "Random Checkpoint Replay loses the initial model once the pool is full",
        ("tests/test_replay.py",)),
    Mutation(
        "consistency counts negative cosines", "benchmarks/vbench/learned.py",
        "first = (feats[1:] * feats[:1]).sum(-1).clamp(min=0)",
        "first = (feats[1:] * feats[:1]).sum(-1)",
        "subject / background consistency below VBench's for clips that turn away from their first frame",
        ("tests/test_vbench_learned.py::test_learned_dimensions_by_hand_on_known_embeddings",)),
    Mutation(
        "temporal flickering on uint8 differences", "benchmarks/vbench/classical.py",
        "return _cv2().norm(a, b, _cv2().NORM_L1) / a.size",
        "return float(np.abs(a - b).mean())",
        "frame differences wrap around 255: flickering scores are wrong for any darkening pixel",
        ("tests/test_vbench.py::test_flickering_alternating_clips_hand_computed",)),
    Mutation(
        "decord trusted in every container", "videosspo/video.py",
        "    if not info.decord_exact:\n",
        "    if False:\n",
        "MPEG-4 Part 2 clips (.avi, .mp4) train on frames 90-97 when 100-107 were drawn",
        ("tests/test_video.py::test_exact_frames_deep_in_every_container",)),
    Mutation(
        "frame count from the header", "videosspo/video.py",
        "return VideoInfo(frames, height, width,",
        "return VideoInfo(stream.frames or frames, height, width,",
        "a clip whose header claims frames that do not decode is sampled past its end",
        ("tests/test_video.py::test_count_is_what_decodes_not_what_the_header_claims",)),
    Mutation(
        "decord's count not cross-checked", "videosspo/video.py",
        "if expected is not None and len(reader) != expected:",
        "if False:",
        "decord pads a clip whose index lists more frames than decode with a repeated frame",
        ("tests/test_video.py::test_decord_is_not_trusted_where_its_count_differs",)),
    Mutation(
        "a pass of unreadable clips never stops", "videosspo/data.py",
        "if len(self.rows) == self.num_rows or too_many:",
        "if too_many:",
        "with data.max_bad_fraction 1 a dataset whose every clip is unreadable loops forever",
        ("tests/test_data.py::test_unreadable_rows_are_logged_once_and_stop_the_run_past_the_fraction",)),
    Mutation(
        "metadata decoded strictly", "videosspo/data.py",
        'decode("utf-8-sig", errors="surrogateescape")',
        'decode("utf-8-sig")',
        "one Latin-1 caption crashes the run with a bare UnicodeDecodeError naming neither file nor line",
        ("tests/test_data.py::test_rows_that_are_not_utf8_are_skipped_with_their_line",)),
    Mutation(
        "large clips decoded whole at full size", "videosspo/data.py",
        "size=size if shrink else None",
        "size=None",
        "a 4096x4096 clip is held whole at full size (8 GB peak for 16 frames)",
        ("tests/test_data.py::test_a_large_clip_is_decoded_at_the_training_size",)),
    Mutation(
        "imaging quality at full size", "benchmarks/vbench/classical.py",
        "q = blur_noise_quality(downscale(frame, IQ_LONGER_SIDE, longer=True))",
        "q = blur_noise_quality(frame)",
        "imaging quality skips VBench's resize to longer side <= 512: the score depends on the video's size",
        ("tests/test_vbench.py::test_imaging_quality_resizes_longer_side_to_512",)),
    Mutation(
        "imaging quality blind to noise", "benchmarks/vbench/classical.py",
        "2.0 ** (-noise_sigma(g) / NOISE_SIGMA_HALF)",
        "1.0",
        "noisy frames and pure noise score as high as sharp ones (the BRISQUE proxy's failure)",
        ("tests/test_vbench.py::test_imaging_quality_ranks_sharp_over_blurred_noised_and_noise",
         "tests/test_vbench_proxies.py::test_imaging_quality_ranks_clean_blurred_noisy_noise_on_real_frames")),
    Mutation(
        "imaging quality's noise factor clipped at zero", "benchmarks/vbench/classical.py",
        "2.0 ** (-noise_sigma(g) / NOISE_SIGMA_HALF)",
        "max(0.0, 1.0 - noise_sigma(g) / 30.0)",
        "issue 19's proxy: sigma-30 noise costs less than a sigma-2 blur, and every noise frame ties at 0",
        ("tests/test_vbench_proxies.py::test_imaging_quality_ranks_clean_blurred_noisy_noise_on_real_frames",)),
    Mutation(
        "noise estimated over edges and texture", "benchmarks/vbench/classical.py",
        "quiet = grad <= np.quantile(grad, QUIET_FRACTION)",
        "quiet = grad >= 0",
        "textured clean frames read as noisy and lose imaging quality",
        ("tests/test_vbench_proxies.py::test_noise_estimate_ignores_texture_and_reads_added_noise",)),
    Mutation(
        "imaging quality without naturalness", "benchmarks/vbench/classical.py",
        " * naturalness(g))",
        ")",
        "smooth random blobs (a generator's noise) score like a sharp photograph",
        ("tests/test_vbench_proxies.py::test_imaging_quality_ranks_clean_blurred_noisy_noise_on_real_frames",)),
    Mutation(
        "flow vectors count as motion without the coherence test", "benchmarks/vbench/classical.py",
        "return np.where(keep, np.linalg.norm(flow, axis=-1), 0.0)",
        "return np.linalg.norm(flow, axis=-1)",
        "pure noise and noisy static clips score dynamic degree 1 (issue 19: noise 100%)",
        ("tests/test_vbench_proxies.py::test_dynamic_degree_real_motion_over_static_and_noise",
         "tests/test_vbench_proxies.py::test_flow_between_noise_frames_is_not_motion")),
    Mutation(
        "dynamic degree's last pair flowed backwards", "benchmarks/vbench/classical.py",
        "self.flow.magnitudes(*self.last[-2:], before, c_first=True)",
        "self.flow.magnitudes(*self.last[::-1])",
        "with RAFT weights the last pair's flow runs last -> previous, not VBench's previous -> last",
        ("tests/test_vbench_proxies.py::test_dynamic_degree_asks_the_backend_for_vbenchs_pairs_forward",)),
    Mutation(
        "flow correspondences not checked for transitivity", "benchmarks/vbench/classical.py",
        "keep &= miss < TRANSITIVE_PX + TRANSITIVE_FRAC * np.linalg.norm(direct, axis=-1)",
        "keep &= miss >= 0",
        "smooth noise that changes every frame scores dynamic degree 1 (issue 19's noise samples)",
        ("tests/test_vbench_proxies.py::test_dynamic_degree_real_motion_over_static_and_noise",
         "tests/test_vbench_proxies.py::test_flow_between_noise_frames_is_not_motion")),
    Mutation(
        "static filter keeps every static video", "benchmarks/vbench/runner.py",
        'if row.get("static") and kept[row["prompt"]] < VBENCH_SAMPLES:',
        'if row.get("static"):',
        "flickering averages more than VBench's 5 static videos per prompt",
        ("tests/test_vbench.py::test_static_filter_scores_first_five_static_videos_per_prompt",)),
    Mutation(
        "VBench's script total counts a missing dimension at its minimum", "benchmarks/vbench/aggregate.py",
        "full = {d: raw.get(d, 0.0) for d in VBENCH_DIMS}",
        "full = {d: raw.get(d, VBENCH_DIMS[d].lo) for d in VBENCH_DIMS}",
        "the total labelled as cal_final_score's is higher than what VBench's script prints",
        ("tests/test_vbench.py::test_vbench_script_total_counts_missing_as_zero",)),
    Mutation(
        "AnimateDiff on SD 1.5's noise schedule", "models/families.py",
        '    schedule = {"beta_schedule": "linear", ',
        '    _unused = {"beta_schedule": "linear", ',
        "AnimateDiff's motion modules are trained and sampled on scaled_linear betas, not the linear ones they learnt",
        ("tests/test_real_layouts.py::test_each_family_trains_and_samples_on_its_own_schedule",)),
    Mutation(
        "LoRA initialised from the global RNG", "models/lora.py",
        "        torch.manual_seed(seed)\n",
        "",
        "the adapter depends on whatever the global RNG holds (peft draws lora_A from it), not on train.seed alone",
        ("tests/test_models.py::test_lora_init_depends_on_its_seed_alone",
         "tests/test_real_layouts.py::test_identical_runs_from_a_pretrained_folder_are_bit_identical")),
    Mutation(
        "frozen parts exported in the training dtype", "models/export.py",
        "                module.to(dtype=model.saved_dtypes[name]).load_state_dict(model._as_loaded[name])\n",
        "                pass\n",
        "a bf16 run's merged export of a model without a source folder holds a bf16 text encoder and VAE",
        ("tests/test_real_layouts.py::test_merged_export_of_a_tiny_model_holds_its_frozen_parts_as_built",)),
    Mutation(
        "YAML's no read as False", "videosspo/config.py",
        "            value = next((word for word in YAML_BOOL_WORDS[value] if word in args), value)\n",
        "            pass\n",
        "`mixed_precision: no` and `ssr_mode: off` are rejected",
        ("tests/test_config.py::test_yaml11_boolean_words_are_the_choices_they_spell",)),
    Mutation(
        "centre crop started at floor((L - size) / 2)", "benchmarks/vbench/learned.py",
        "    return int(round((length - size) / 2.0))\n",
        "    return (length - size) // 2\n",
        "CLIP and ViCLIP frames cropped one pixel off torchvision's CenterCrop (VBench's) when L - size is 3 mod 4",
        ("tests/test_vbench_video_models.py::test_clip_transform_matches_torchvision_rules",)),
    Mutation(
        "ViCLIP without its temporal embedding", "benchmarks/vbench/viclip.py",
        "        x = x + rearrange(temporal.mean(1, keepdim=True) if x.shape[1] == 1 else temporal, \"1 t d -> 1 t 1 d\")\n",
        "",
        "ViCLIP's video feature ignores frame order: temporal style cannot tell a clip from its reverse",
        ("tests/test_vbench_video_models.py::test_viclip_scores_videos_from_weights",)),
    Mutation(
        "UMT threshold on unrounded probabilities", "benchmarks/vbench/umt.py",
        "if round(p, 4) >= THRESHOLD]",
        "if p >= THRESHOLD]",
        "a class at sigmoid 0.849996 is dropped where VBench (rounding to 4 decimals) counts it",
        ("tests/test_vbench_video_models.py::test_top5_threshold_and_label_by_hand",)),
    Mutation(
        "video models sample the first frames", "benchmarks/vbench/learned.py",
        "    picked = [int(a + b - 1) // 2 for a, b in zip(bounds[:-1], bounds[1:])]\n",
        "    picked = [int(a) for a in bounds[:-1]]\n",
        "ViCLIP and UMT see the starts of VBench's intervals instead of their middle frames",
        ("tests/test_vbench_video_models.py::test_middle_frame_sampling_by_hand",
         "tests/test_vbench_video_models.py::test_viclip_scores_videos_from_weights")),
    Mutation(
        "EMA weights the new value by d", "videosspo/ema.py",
        "lerp_(p.detach().float(), 1 - d)",
        "lerp_(p.detach().float(), d)",
        "the moving average follows the latest weights instead of averaging them (its decay inverted)",
        ("tests/test_ema.py::test_update_against_hand_computed_values_and_only_trainable_parameters",)),
    Mutation(
        "export of the trained weights with EMA on", "videosspo/trainer.py",
        "            with self.inference_weights():\n                if self.config.train.export",
        "            with contextlib.nullcontext():\n                if self.config.train.export",
        "optim.ema_decay trains an average that model/ never holds",
        ("tests/test_ema.py::test_export_holds_the_average_not_the_trained_weights",)),
    Mutation(
        "EMA not restored on resume", "videosspo/trainer.py",
        "            if self.ema and (path / EMA_FILE).is_file():",
        "            if False:",
        "a resumed run restarts the moving average from the resumed weights: not the uninterrupted run's",
        ("tests/test_trainer.py::test_resume_equals_uninterrupted",)),
    Mutation(
        "LTX prompts unmasked", "models/families.py",
        "encoder_attention_mask=cond.ne(0).any(dim=-1),",
        "encoder_attention_mask=None,",
        "the LTX transformer attends to T5's padding tokens, which LTXPipeline masks: trained and sampled models differ",
        ("tests/test_dit.py::test_ltx_prompts_latents_and_sampler_follow_ltx_pipeline",)),
    Mutation(
        "LTX sampled on the unshifted σ grid", "videosspo/sampling.py",
        '    if sched.config.get("use_dynamic_shifting"):\n',
        "    if False:\n",
        "losers and samples of LTX-Video come from another schedule than LTXPipeline's (no sequence-length shift)",
        ("tests/test_dit.py::test_ltx_prompts_latents_and_sampler_follow_ltx_pipeline",)),
    Mutation(
        "LTX timesteps without the sequence-length shift", "videosspo/objectives.py",
        "+ dynamic_shift_mu(config, seq_len)),",
        "+ 0),",
        "LTX-Video trains on another σ density than its trainer's shifted logit-normal",
        ("tests/test_dit.py::test_ltx_timestep_density_is_the_shifted_logit_normal",)),
    Mutation(
        "LTX exported with the default DDIM scheduler", "models/families.py",
        '    sampler_class = "FlowMatchEulerDiscreteScheduler"\n',
        "",
        "a merged LTX export's LTXPipeline samples with DDIM on a flow-matching model",
        ("tests/test_dit.py::test_ltx_merged_export_is_a_pipeline_folder_that_samples_as_we_do",)),
    Mutation(
        "frozen text encoder left in train mode", "models/base.py",
        "        self.text_encoder.requires_grad_(False).eval()  # frozen and deterministic (T5's dropout off)",
        "        self.text_encoder.requires_grad_(False)",
        "T5 / UMT5 keep their dropout on: a caption's embedding is random, a DiT trains on noise in its condition",
        ("tests/test_dit.py::test_prompts_and_latents_follow_wan_pipeline",
         "tests/test_dit.py::test_cogvideox_prompts_latents_and_sampler_follow_its_pipeline")),
    Mutation(
        "cached caption embeddings ignored", "videosspo/trainer.py",
        '        if "prompt_embeds" in batch:\n',
        "        if False:\n",
        "a run from the latent cache still runs T5 / UMT5 on every caption of every step",
        ("tests/test_dit.py::test_latent_cache_holds_windows_and_captions_so_no_encoder_runs_per_step",)),
    Mutation(
        "unreadable clips counted per process", "videosspo/trainer.py",
        "self.unreadable.add(gather_object(failed))",
        "self.unreadable.add(failed)",
        "with N processes data.max_bad_fraction is judged on one process's share; the count in summary.json is rank 0's",
        ("tests/test_trainer.py::test_two_processes_equal_one",)),
    Mutation(
        "unreadable-clip count not checkpointed", "videosspo/trainer.py",
        '            self.unreadable.load_state_dict(state.get("unreadable", []))\n',
        "",
        "a resumed run starts counting bad clips from zero, so kills and resumes never stop a rotten dataset",
        ("tests/test_faults.py::test_a_resumed_run_keeps_counting_unreadable_clips",)),
    Mutation(
        "replacement micro-batches not checkpointed", "videosspo/trainer.py",
        "skip=self.stream_skips)",
        "skip=0)",
        "after unreadable clips, a resumed run reads other data than the uninterrupted run would have",
        ("tests/test_faults.py::test_a_resumed_run_keeps_counting_unreadable_clips",)),
    Mutation(
        "replacement micro-batches dropped on another process count", "videosspo/trainer.py",
        "        self.stream_skips = stream_shift(skips, saved.optim.batch_size, optim.batch_size, acc.num_processes,\n"
        "                                         acc.process_index)\n",
        "        self.stream_skips = skips[acc.process_index] if len(skips) == acc.num_processes else 0\n",
        "after unreadable clips, a run resumed on another process count reads other data than the uninterrupted run",
        ("tests/test_trainer.py::test_resume_on_another_process_count",)),
    Mutation(
        "another global batch resumed", "videosspo/trainer.py",
        "            check_global_batch(saved, len(skips), self.config, acc.num_processes)\n",
        "",
        "a resume with another optim.batch_size x grad_accum x processes silently reads other data (step x global batch)",
        ("tests/test_trainer.py::test_resume_refuses_another_global_batch",)),
    Mutation(
        "shards resumed on another process count", "videosspo/trainer.py",
        "            if isinstance(self.data, ShardDataset) and len(skips) != acc.num_processes:\n",
        "            if False:\n",
        "a WebDataset run resumed on another process count silently reads other samples than the uninterrupted run",
        ("tests/test_shards.py::test_resume_on_another_process_count_is_refused",)),
    Mutation(
        "losers resumed from this process's file only", "videosspo/trainer.py",
        '        for path in sorted(folder.glob("rank*.safetensors")):',
        '        for path in folder.glob(f"rank{torch.distributed.get_rank() if torch.distributed.is_initialized() else 0}.safetensors"):',
        "resumed on another process count mid reuse window, a process resamples losers its file lacks (another reference)",
        ("tests/test_trainer.py::test_resume_on_another_process_count",)),
    Mutation(
        "accelerate's micro-batch count kept on resume", "videosspo/trainer.py",
        "            acc.step = self.step * optim.grad_accum\n",
        "",
        "resumed with another optim.grad_accum (8 GPUs -> 4, accumulating 2), an update takes micro-batches of two steps",
        ("tests/test_trainer.py::test_resume_on_another_process_count",)),
    Mutation(
        "the export advances the checkpointed RNG", "videosspo/trainer.py",
        '        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):\n',
        "        if True:\n",
        "a resumed run's RNG state differs from an uninterrupted one's (on rank 0: it alone exports)",
        ("tests/test_faults.py::test_a_two_process_run_killed_at_random_moments_resumes_bit_identical",)),
    Mutation(
        "FSDP shards read as the weights", "videosspo/reference.py",
        "        if self.sharded:\n            return get_model_state_dict(",
        "        if False:\n            return get_model_state_dict(",
        "under FSDP the replay snapshots and the export hold each process's flat shard, not the weights",
        ("tests/test_sharding.py",)),
    Mutation(
        "FSDP reference adapter written into the shard", "videosspo/reference.py",
        "        if self.sharded:\n            self.load(with_adapter_name(",
        "        if False:\n            self.load(with_adapter_name(",
        "under FSDP the reference adapter is loaded into each process's flat shard: wrong references",
        ("tests/test_sharding.py",)),
    Mutation(
        "FSDP optimizer state offloaded on CPU", "videosspo/reference.py",
        'offload = self.model.unet.device.type != "cpu"',
        "offload = True",
        "a checkpoint under FSDP on CPU crashes torch (SIGSEGV: FSDP1 frees the 'offloaded' CPU copy it returns)",
        ("tests/test_sharding.py",)),
    Mutation(
        "FSDP optimizer state not restored", "videosspo/trainer.py",
        "        self.policy.load_optimizer_state(self.optimizer.optimizer, torch.load(",
        "        (self.optimizer.optimizer, torch.load(",
        "an FSDP run resumes with fresh Adam moments: it no longer continues the interrupted run",
        ("tests/test_sharding.py",)),
    Mutation(
        "FSDP EMA file holds one shard", "videosspo/ema.py",
        "average = self.average if whole is None else {name: whole[name] for name in self.average}",
        "average = self.average",
        "under FSDP the checkpoint's EMA holds process 0's flat shard, not the average",
        ("tests/test_sharding.py",)),
    Mutation(
        "DeepSpeed clips at accelerate's default", "videosspo/trainer.py",
        '    plugin.deepspeed_config["gradient_clipping"] = max_grad_norm\n',
        "",
        "under DeepSpeed the gradient is clipped at 1.0 whatever optim.max_grad_norm says",
        ("tests/test_accelerate_configs.py",)),
    Mutation(
        "DeepSpeed on CPU without gloo", "videosspo/trainer.py",
        'return [InitProcessGroupKwargs(backend="gloo")] if deepspeed and not torch.accelerator.is_available() else []',
        "return []",
        "DeepSpeed on a CPU: accelerate counts 1 process where DeepSpeed counts all, and prepare fails",
        ("tests/test_accelerate_configs.py",)),
    Mutation(
        "DeepSpeed LoRA checkpoint holds the frozen base", "videosspo/trainer.py",
        '{"exclude_frozen_parameters": True} if deepspeed_lora else {}',
        "{}",
        "under DeepSpeed every LoRA checkpoint holds the whole frozen network (GBs), not the adapter (MBs)",
        ("tests/test_sharding.py::test_deepspeed_zero2_with_lora_equals_one_process_and_resumes",)),
    Mutation(
        "ZeRO checkpoint resumed on another process count", "videosspo/trainer.py",
        "    if partitions and (not deepspeed or partitions != processes):",
        "    if partitions and not deepspeed:",
        "a ZeRO-2 checkpoint resumed on another process count fails in DeepSpeed with an error naming no fix, and "
        "videosspo then calls every checkpoint unresumable",
        ("tests/test_accelerate_configs.py::test_deepspeed_checkpoints_resume_under_deepspeed_on_their_process_count_only",)),
    Mutation(
        "DeepSpeed checkpoints mixed with others on resume", "videosspo/trainer.py",
        '        check_zero_partitions(path / "accelerate", acc.state.deepspeed_plugin is not None, acc.num_processes)\n',
        "",
        "a ZeRO-2 checkpoint resumed without DeepSpeed (or another under it) fails with an error naming no fix",
        ("tests/test_sharding.py::test_deepspeed_zero2_resumes_exactly_on_its_process_count_only",)),
    Mutation(
        "AnimateDiff motion modules not checkpointed", "models/families.py",
        "        checkpoint_modules(m for m in self.unet.modules() if isinstance(m, AnimateDiffTransformer3D))\n",
        "",
        "gradient checkpointing keeps the motion modules' activations (temporal attention over every frame)",
        ("tests/test_models.py::test_gradient_checkpointing_recomputes_and_keeps_gradients",)),
    Mutation(
        "a repeated prompt keeps only its last entry", "benchmarks/vbench/inputs.py",
        '        p["dimensions"] += [d for d in e.get("dimension", []) if d not in p["dimensions"]]\n',
        '        p["dimensions"] = list(e.get("dimension", []))\n',
        "a prompt VBench's JSON lists twice loses the first entry's dimensions (appearance style)",
        ("tests/test_vbench.py::test_load_prompts_keeps_auxiliary_info_and_merges_repeated_prompts",)),
    Mutation(
        "scene matched as a whole phrase", "benchmarks/vbench/tag2text.py",
        "    return sum(all(w in c for w in words) for c in caption_list)\n",
        "    return sum(scene in c for c in caption_list)\n",
        "a two-word scene (\"coffee shop\") no longer matches captions naming its words apart, unlike VBench",
        ("tests/test_vbench_tag2text.py::test_scene_matching_rule_by_hand",)),
    Mutation(
        "each frame's caption from its own tags", "benchmarks/vbench/tag2text.py",
        "    return torch.arange(frames * beams) // beams ** 2\n",
        "    return torch.arange(frames * beams) // beams\n",
        "captions no longer reproduce VBench's (its frames f read the tags of frame f // 3)",
        ("tests/test_vbench_tag2text.py::test_beam_rows_read_the_tags_vbench_reads",)),
    Mutation(
        "beam search cache not reordered", "benchmarks/vbench/tag2text.py",
        "                past = [(k[rows], v[rows]) for k, v in past]\n",
        "",
        "a beam continuing another beam's caption attends to its own earlier tokens: wrong captions",
        ("tests/test_vbench_tag2text.py::test_cached_decoding_equals_recomputing_every_prefix",)),
    Mutation(
        "ROIAlign without the half-pixel shift", "benchmarks/vbench/grit.py",
        "x0, y0, x1, y1 = (boxes * scale - 0.5).unbind(1)", "x0, y0, x1, y1 = (boxes * scale).unbind(1)",
        "GRiT pools every box half a feature pixel off (ROIAlign instead of detectron2's ROIAlignV2)",
        ("tests/test_vbench_grit.py::test_roi_align_matches_torchvision_aligned_rules_by_hand",)),
    Mutation(
        "GRiT repeats its last token", "benchmarks/vbench/grit.py",
        "logits = textual(memory, tokens).scatter(1, last[:, None], -10000.0)",
        "logits = textual(memory, tokens)",
        "GRiT's descriptions differ from VBench's (its decoder bans the previous token)",
        ("tests/test_vbench_grit.py::test_greedy_decoding_bans_the_last_token_and_stops_at_sep",)),
    Mutation(
        "colour pairs phrases with the wrong box's name", "benchmarks/vbench/grit_rules.py",
        "pairs = [(d, names[0]) for d, _, names in frame]", "pairs = [(d, names[-1]) for d, _, names in frame]",
        "colour scores differ from VBench's, which pairs every phrase with the first box's class name",
        ("tests/test_vbench_grit.py::test_color_pairs_every_phrase_with_the_first_boxs_name",)),
    Mutation(
        "spatial relationship on the wrong axis", "benchmarks/vbench/grit_rules.py",
        "        along = abs(dx) > abs(dy)\n", "        along = abs(dy) > abs(dx)\n",
        "objects side by side do not count as left / right of each other",
        ("tests/test_vbench_grit.py::test_position_score_by_hand",)),
    Mutation(
        "colour scored on class names", "benchmarks/vbench/learned.py",
        '"color": "DenseCap"}', '"color": "ObjectDet"}',
        "colour reads GRiT's class names, which never name a colour, instead of its dense captions",
        ("tests/test_vbench_grit.py::test_dimensions_run_tiny_grit_from_weights",)),
    Mutation(
        "Wan exports UniPC built from the flow Euler config", "models/families.py",
        "        return flow_unipc(self.scheduler.config)\n",
        "        return super().inference_scheduler_of()\n",
        "a merged Wan export's scheduler/ is UniPC on a DDPM schedule predicting epsilon: WanPipeline samples noise",
        ("tests/test_dit.py::test_merged_export_ships_the_pipeline_sampler",)),
    Mutation(
        "a library module left out of the import layers", "pyproject.toml",
        "videosspo.synth : videosspo.synth_scores : ", "videosspo.synth : ",
        "a module no layer names is never checked: its imports may go any way and lint-imports stays green",
        ("tests/test_layers.py::test_every_library_module_is_in_a_layer",)),
    Mutation(
        "model adapters lumped in with training", "pyproject.toml",
        ' : videosspo.memory",\n    "models",\n', ' : videosspo.memory : models",\n',
        "models/ may import the sampler, the reference and the trainer again: the layers pass with a cycle in them",
        ("tests/test_layers.py::test_a_back_edge_breaks_the_contract",)),
    Mutation(
        "Wan 2.2 experts swapped", "models/experts.py",
        "zip((self.transformer, self.transformer_2), rows)",
        "zip((self.transformer_2, self.transformer), rows)",
        "high-noise samples run through the low-noise expert and back: another model, trained and sampled",
        ("tests/test_wan22.py::test_each_expert_gets_exactly_its_samples",
         "tests/test_wan22.py::test_sampler_equals_wan_pipeline_with_both_experts_and_guidance_scale_2")),
    Mutation(
        "Wan 2.2 boundary timestep sent to the low-noise expert", "models/experts.py",
        "high = timestep >= self.boundary",
        "high = timestep > self.boundary",
        "t = 875 (a sampling step of WanPipeline's grid for some step counts) runs the wrong expert",
        ("tests/test_wan22.py::test_each_expert_gets_exactly_its_samples",)),
    Mutation(
        "guidance_2 ignored", "videosspo/sampling.py",
        "            g = guidance if boundary is None or t >= boundary or guidance_2 is None else guidance_2\n",
        "            g = guidance\n",
        "Wan 2.2's low-noise steps sample with the high-noise CFG scale: not WanPipeline's guidance_scale_2",
        ("tests/test_wan22.py::test_sampler_equals_wan_pipeline_with_both_experts_and_guidance_scale_2",)),
    Mutation(
        "one expert trained on every timestep", "videosspo/trainer.py",
        "                                sigma_range=model.sigma_range).to(device)",
        "                                ).to(device)",
        "model.experts high / low trains its expert on the other expert's noise levels too (they never reach it)",
        ("tests/test_wan22.py::test_one_expert_trains_alone_on_its_timesteps",)),
    Mutation(
        "LoRA in both experts whatever model.experts", "models/families.py",
        '        names = {"both": EXPERTS, "high": EXPERTS[:1], "low": EXPERTS[1:]}[self.experts]',
        "        names = EXPERTS",
        "a one-expert run carries (and exports) an untrained LoRA in the other expert",
        ("tests/test_wan22.py::test_one_expert_trains_alone_on_its_timesteps",)),
    Mutation(
        "Wan 2.2 under DDP without unused parameters", "models/families.py",
        "    unused_parameters = True  # a micro-batch",
        "    unused_parameters = False  # a micro-batch",
        "DDP stops at the step after a micro-batch that reached one expert only (the other's LoRA got no gradient)",
        ("tests/test_wan22.py::test_one_expert_trains_alone_on_its_timesteps",
         "tests/test_wan22.py::test_ddp_needs_unused_parameters_for_an_idle_expert")),
    Mutation(
        "few-step solvers built on another noise schedule", "videosspo/sampling.py",
        "            return cls.from_config(config)\n",
        '            return cls.from_config({**config, "beta_schedule": "scaled_linear"})\n',
        "UniPC / DPM-Solver++ losers (animatediff_sspo.yaml's UniPC 6) integrate SD's schedule, not AnimateDiff's: "
        "another sample than the model's",
        ("tests/test_benchmarks.py::test_loser_fidelity_measures_each_sampler_against_the_exact_sample",)),
    Mutation(
        "bench_train's loser options inherit the config's reuse", "benchmarks/bench_train.py",
        '            extra = {"loser.reuse": 1, **extra}\n',
        "            extra = dict(extra)\n",
        "the cost table prices each option at the shipped reuse window, not at its own cost",
        ("tests/test_benchmarks.py::test_counted_unet_work_follows_the_config",)),
    Mutation(
        "loser.spacing not passed to the loser sampler", "videosspo/trainer.py",
        "                scheduler=lcfg.scheduler, spacing=lcfg.spacing,\n",
        "                scheduler=lcfg.scheduler,\n",
        "modelscope / sd15 losers start 6 UniPC steps at t = 852 (their leading spacing): 2.3x further from the "
        "model's sample than the 20-step DDIM loser they replace",
        ("tests/test_sampling.py::test_the_trainer_samples_losers_with_loser_spacing",)),
    Mutation(
        "make_scheduler ignores the spacing it is given", "videosspo/sampling.py",
        '        config = {**config, "timestep_spacing": spacing}\n',
        "        config = dict(config)\n",
        "loser.spacing: trailing silently samples on the schedule's leading timesteps",
        ("tests/test_sampling.py::test_loser_spacing_replaces_the_schedules_own",)),
    Mutation(
        "the console script exits with main()'s summary", "videosspo/cli.py",
        "        run(argv)\n",
        "        return run(argv)\n",
        "every successful `videosspo train` exits 1 (sys.exit of a dict) and prints the summary again on stderr",
        ("tests/test_console.py::test_a_training_run_exits_0_with_its_summary_on_stdout",)),
    Mutation(
        "synthetic data for a --data.path typed on the command line", "videosspo/cli.py",
        "    if given or not n or path.suffix",
        "    if not n or path.suffix",
        "a typo in --data.path with a tiny config trains on coloured shapes instead of the user's clips",
        ("tests/test_console.py::test_synthetic_data_only_where_the_config_asks_for_it",)),
    Mutation(
        "SIGTERM left to its default action", "videosspo/interrupt.py",
        "SIGNALS = (signal.SIGINT, signal.SIGTERM)\n",
        "SIGNALS = (signal.SIGINT,)\n",
        "a SIGTERM (a scheduler's stop) kills the run without releasing its lock or saying where to resume",
        ("tests/test_console.py::test_an_interrupted_run_stops_in_one_line_and_releases_its_lock",)),
    Mutation(
        "sample writes no captions", "videosspo/cli.py",
        '        rows.append({"video": path.name, "caption": prompts[i], "seed": seeds[i], '
        '"checkpoint": str(args.checkpoint)})\n',
        "",
        "vbench_eval --videos on sampled clips scores prompts made up from file names",
        ("tests/test_console.py::test_sample_writes_captions_vbench_eval_reads_and_honours_the_umask",)),
    Mutation(
        "written videos keep mkstemp's mode", "videosspo/video.py",
        "        chmod_like_open(tmp)\n",
        "",
        "sampled clips are mode 0600 whatever the umask: other users and web servers cannot read them",
        ("tests/test_console.py::test_sample_writes_captions_vbench_eval_reads_and_honours_the_umask",)),
    Mutation(
        "decord's FFmpeg left talking", "videosspo/video.py",
        "decord.logging.ERROR if log.isEnabledFor(logging.DEBUG) else decord.logging.QUIET",
        "decord.logging.ERROR",
        "every damaged packet prints `[h264 @ 0x...]` lines into the progress bar",
        ("tests/test_console.py::test_ffmpeg_chatter_of_decord_only_with_verbose",)),
    Mutation(
        "divergence warned again at the end", "videosspo/trainer.py",
        "        acc.end_training()\n",
        "        acc.end_training()\n        if self.divergence:\n            log.warning(self._divergence_note())\n",
        "the divergence warning is printed twice",
        ("tests/test_console.py::test_divergence_is_warned_once",)),
    Mutation(
        "every config file's runs in one folder", "videosspo/config.py",
        '{"train": {"output_dir": f"runs/{path.stem}"}}',
        '{"train": {"output_dir": "runs/default"}}',
        "a second config without train.output_dir is told to resume the first one's run",
        ("tests/test_console.py::test_run_folders_default_to_the_config_name_and_no_two_configs_share_one",)),
    Mutation(
        "the demo's base looked up in the current directory only", "videosspo/cli.py",
        "    for candidate in (Path(pretrained), ROOT / pretrained) if pretrained else ():\n",
        "    for candidate in (Path(pretrained),) if pretrained else ():\n",
        "`videosspo demo` run outside the repository ignores the committed base and pre-trains one for minutes",
        ("tests/test_console.py::test_demo_finds_the_committed_base_from_any_directory",)),
    Mutation(
        "--compare silent on success", "benchmarks/vbench_eval.py",
        '        print("\\n".join(table[1:]))',
        "        table",
        "`vbench_eval.py --compare` prints nothing: the user must find and open compare.md",
        ("tests/test_console.py::test_vbench_eval_compare_prints_the_comparison",)),
    Mutation(
        "config --list takes the next field's comment", "videosspo/config_help.py",
        "            above, line = [], stmt.lineno - 1\n",
        "            above, line = [], stmt.lineno + 1\n",
        "`videosspo config --list` explains each key with another key's text, or none",
        ("tests/test_console.py::test_config_list_gives_every_key_a_default_and_a_meaning",)),
    Mutation(
        "log lines written into the progress bar", "videosspo/cli.py",
        "    with stop_on_signals(), logging_redirect_tqdm():",
        "    with stop_on_signals():",
        "a warning during training is glued to the end of the progress bar's line",
        ("tests/test_console.py::test_warnings_during_training_are_lines_of_their_own_above_the_bar_once_each",)),
    Mutation(
        "a documented subcommand renamed", "videosspo/cli.py",
        's = data_sub.add_parser("cache-latents",',
        's = data_sub.add_parser("cache_latents",',
        "the docs' `videosspo data cache-latents` line fails in the reader's shell",
        ("tests/test_docs.py::test_every_documented_command_names_real_things[your-own-videos.md]",)),
    Mutation(
        "a documented make target renamed", "Makefile",
        "lint: install",
        "ruff: install",
        "`make lint`, which the docs and CI run, no longer exists",
        ("tests/test_docs.py::test_every_documented_command_names_real_things[development.md]",)),
    Mutation(
        "a signal lost in a destructor forgotten", "videosspo/interrupt.py",
        "    _received.append(signum)\n",
        "",
        "Ctrl-C or SIGTERM landing inside a destructor is dropped by Python and the run trains on",
        ("tests/test_console.py::test_a_signal_whose_exception_python_drops_still_stops_the_run",)),
    Mutation(
        "ComfyUI / kohya LoRA alpha written as the rank", "models/lora_formats.py",
        'f"{name}.alpha": torch.tensor(float(lora.lora_alpha))}',
        'f"{name}.alpha": torch.tensor(float(lora.r))}',
        "a LoRA trained with alpha != rank loads in ComfyUI at the wrong strength (alpha / rank = 1)",
        ("tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[wan]", "tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[sd]")),
    Mutation(
        "LTX ComfyUI LoRA without alpha / rank", "models/lora_formats.py",
        'f"diffusion_model.{module}.lora_B.weight": up * scale}',
        'f"diffusion_model.{module}.lora_B.weight": up}',
        "the LTX LoRA loads at rank / alpha times its trained strength (the format has no .alpha key)",
        ("tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[ltx]",)),
    Mutation(
        "Wan cross-attention query named as the self-attention's", "models/lora_formats.py",
        '"attn2.to_q": "cross_attn.q"',
        '"attn2.to_q": "self_attn.q"',
        "ComfyUI applies the cross-attention query's LoRA to the self-attention and drops the self-attention's",
        ("tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[wan]", "tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[wan22]", "tests/test_lora_formats.py::test_comfyui_names_by_hand")),
    Mutation(
        "AnimateDiff's kohya LoRA keeps the motion modules", "models/lora_formats.py",
        "        if MOTION in module:\n            continue\n",
        "",
        "the motion layers' keys (no place in an SD 1.5 checkpoint) are unmatched: 'lora key not loaded'",
        ("tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[animatediff]",)),
    Mutation(
        "adapter export without the ComfyUI file", "models/base.py",
        "        if cls.comfy_format:\n",
        "        if False:\n",
        "train.export: adapter writes no lora_comfyui.safetensors",
        ("tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[sd]",)),
    Mutation(
        "motion LoRA's config targets every attention projection", "models/families.py",
        "        LORA_FORMATS[cls.lora_format].save(Path(path) / \"motion_lora\", motion_only(adapter), motion, cls)",
        "        LORA_FORMATS[cls.lora_format].save(Path(path) / \"motion_lora\", motion_only(adapter), lora, cls)",
        "loading motion_lora/ warns that its config names spatial layers its weights do not hold",
        ("tests/test_lora_formats.py::test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file[animatediff]",)),
    Mutation(
        "bucketed stream chunked by the micro-batch, not the global batch", "videosspo/trainer.py",
        "self.buckets.order(self.seed, epoch, self.global_batch)",
        "self.buckets.order(self.seed, epoch, self.batch)",
        "with data.buckets, 2 processes x batch 1 read other clips than 1 process x batch 2: N processes != 1",
        ("tests/test_buckets.py::test_streams_of_any_layout_with_one_global_batch_read_the_same_positions",)),
    Mutation(
        "SSPO losers sampled at data.frames x height x width, not their winners' bucket", "videosspo/trainer.py",
        '        frames, height, width = batch.get("size", (cfg.data.frames, cfg.data.height, cfg.data.width))',
        "        frames, height, width = cfg.data.frames, cfg.data.height, cfg.data.width",
        "a bucketed SSPO run fails (or, at one frame count, compares winners with losers of another shape)",
        ("tests/test_buckets.py::test_bucketed_sspo_micro_batches_have_one_shape_and_losers_take_it",)),
    Mutation(
        "DPO loser read at the dataset's size, not its winner's bucket", "videosspo/data.py",
        '            item["loser_pixels"] = self._load(record.loser_video, indices, (height, width))',
        '            item["loser_pixels"] = self._load(record.loser_video, indices)',
        "a bucketed DPO pair is cropped to two shapes: the batch cannot stack, or winner and loser show other crops",
        ("tests/test_buckets.py::test_a_dpo_pair_is_read_at_its_winners_bucket_with_the_same_frames",)),
    Mutation(
        "bucket choice ignores the clip's length", "videosspo/buckets.py",
        "    fitting = [i for i, s in enumerate(shapes) if s[0] <= frames] or \\\n",
        "    fitting = list(range(len(shapes))) or \\\n",
        "short clips land in long buckets and repeat their last frame instead of taking a bucket they fill",
        ("tests/test_buckets.py::test_each_clip_takes_the_nearest_aspect_among_the_frame_counts_it_holds",)),
    Mutation(
        "data.buckets planned but not given to the dataset", "videosspo/trainer.py",
        "            self.data.buckets = plan_buckets(cfg.data, self.data, self.model)\n",
        "            plan_buckets(cfg.data, self.data, self.model)\n",
        "every clip is read at data.frames x height x width: buckets silently do nothing",
        ("tests/test_buckets.py::test_bucketed_sspo_micro_batches_have_one_shape_and_losers_take_it",)),
    Mutation(
        "data.buckets accepted with a latent cache", "videosspo/config.py",
        '        _check(self.buckets is None or self.latent_cache is None, "data.buckets", self.buckets,',
        '        _check(True, "data.buckets", self.buckets,',
        "the cache's one clip shape silently overrides the buckets",
        ("tests/test_buckets.py::test_bad_buckets_are_refused_in_one_line",)),
    Mutation(
        "data.frames breaking the family's rule not checked at start", "videosspo/trainer.py",
        "        check_shape(self.model, (cfg.data.frames, cfg.data.height, cfg.data.width))",
        "        pass",
        "videosspo train with data.frames: 8 on Wan starts a run on clips its VAE cannot take instead of one line "
        "and exit 2 (latent_shape raises the one-line ConfigError itself; the start is where it must be asked)",
        ("tests/test_buckets.py::test_bad_buckets_are_refused_in_one_line",)),
    Mutation(
        "frozen parts exported from the bf16 training copy", "models/export.py",
        "            if name in model.sources:\n",
        "            if False:\n",
        "a bf16 run's merged export holds a VAE / text encoder rounded to bf16 (cast back or not): the merged pipeline "
        "differs from base + adapter by 0.002-0.012 in pixels, the T5 loses its shards",
        ("tests/test_real_layouts.py::test_merged_export_holds_the_frozen_parts_bit_equal_to_the_source",)),
    Mutation(
        "training latents without the VAE scaling factor", "models/base.py",
        "        latents = latents * self.vae.config.scaling_factor\n",
        "        latents = latents\n",
        "SD / AnimateDiff / ModelScope train on latents 5.5x larger than the ones they sample and decode",
        ("tests/test_invariants.py::test_encode_and_decode_are_inverse_conventions_of_one_latent_space",)),
    Mutation(
        "Wan latent normalisation inverted on encode", "models/families.py",
        "        return (z - mean) / std\n",
        "        return (z - mean) * std\n",
        "Wan trains on latents in another space than WanPipeline samples and decodes",
        ("tests/test_invariants.py::test_encode_and_decode_are_inverse_conventions_of_one_latent_space",)),
    Mutation(
        "CogVideoX scale left out on encode", "models/families.py",
        "        z = clip_posterior_mode(self.vae, pixels)\n        return z * self.vae.config.scaling_factor\n",
        "        z = clip_posterior_mode(self.vae, pixels)\n        return z\n",
        "CogVideoX trains on raw posteriors while its sampler and decode use latents times scaling_factor",
        ("tests/test_invariants.py::test_encode_and_decode_are_inverse_conventions_of_one_latent_space",)),
    Mutation(
        "merged LoRA ignores alpha / rank", "videosspo/reference.py",
        "(b.float() @ a.float()) * module.scaling[adapter]",
        "(b.float() @ a.float())",
        "a merged export with lora_alpha != rank is another model than base + adapter",
        ("tests/test_invariants.py::test_merged_lora_equals_peft_merge_with_alpha_not_rank",
         "tests/test_real_layouts.py::test_documented_load_lines_generate_from_hub_shaped_folders")),
    Mutation(
        "Diffusion-DPO's reference drawn from the replay pool", "videosspo/trainer.py",
        '            replay = dataclasses.replace(replay, size=1, strategy="initial")\n',
        "            pass\n",
        "Diffusion-DPO's reference drifts to recent snapshots instead of the frozen initial model",
        ("tests/test_invariants.py::test_reference_pass_builds_no_graph_and_dpo_reference_is_theta0",)),
    Mutation(
        "reference pass builds a graph", "videosspo/trainer.py",
        "            with torch.no_grad(), self.policy.reference(self.pool, ref_index) as ref, self.accelerator.autocast():",
        "            with self.policy.reference(self.pool, ref_index) as ref, self.accelerator.autocast():",
        "every step keeps the reference's activations (memory x2) and sends gradients into its adapter slot",
        ("tests/test_invariants.py::test_reference_pass_builds_no_graph_and_dpo_reference_is_theta0",)),
    Mutation(
        "reference adapter cached by pool position", "videosspo/reference.py",
        "        key = (id(pool), pool.steps[index])\n",
        "        key = (id(pool), index)\n",
        "after an eviction the reference keeps the evicted snapshot's adapter at that index",
        ("tests/test_invariants.py::test_lora_reference_after_evictions_is_a_fresh_load_of_its_snapshot",)),
    Mutation(
        "LR schedule stepped per micro-batch", "videosspo/trainer.py",
        "                    self.lr_schedule.step()\n",
        "                    [self.lr_schedule.step() for _ in range(cfg.optim.grad_accum)]\n",
        "with accumulation the warm-up and decay run grad_accum times too fast",
        ("tests/test_invariants.py::test_lr_at_every_step_under_accumulation_equals_the_unaccumulated_runs",)),
    Mutation(
        "initial noise not scaled by init_noise_sigma", "videosspo/sampling.py",
        '        x = noise * getattr(sched, "init_noise_sigma", 1.0)  # flow matching: x_1 = ε\n',
        "        x = noise  # flow matching: x_1 = ε\n",
        "Euler samples start from noise 3-15x too small: not the pipeline's samples, nor good ones",
        ("tests/test_invariants.py::test_samplers_equal_the_pipeline_for_the_same_seed",)),
    Mutation(
        "LTX training shift counts the channel axis", "videosspo/trainer.py",
        "seq_len=x_w[0, 0].numel(),  # f·h·w",
        "seq_len=x_w[0].numel(),  # f·h·w",
        "LTX trains at the σ density of a 128x longer sequence than it samples with",
        ("tests/test_invariants.py::test_ltx_trains_with_the_timestep_shift_of_its_latent_sequence_length",)),
    Mutation(
        "Wan 2.2 second scale from exactly the boundary", "videosspo/sampling.py",
        "t >= boundary or guidance_2 is None",
        "t > boundary or guidance_2 is None",
        "the step at the boundary runs the high-noise expert with the low-noise scale (WanPipeline: guidance_scale)",
        ("tests/test_invariants.py::test_wan22_step_at_exactly_the_boundary_is_a_high_noise_step_as_in_wan_pipeline",)),
    Mutation(
        "losers ignore loser.guidance_2", "videosspo/trainer.py",
        "guidance=lcfg.guidance, guidance_2=lcfg.guidance_2,",
        "guidance=lcfg.guidance,",
        "Wan 2.2's losers use the high-noise CFG scale on the low-noise expert's steps, unlike its samples",
        ("tests/test_invariants.py::test_wan22_losers_are_sampled_with_the_loser_guidance_2",)),
    Mutation(
        "training timesteps never reach T - 1", "videosspo/rng.py",
        "torch.randint(0, num_train_timesteps, (1,)",
        "torch.randint(0, num_train_timesteps - 1, (1,)",
        "the noisiest timestep (the one sampling starts from) is never trained",
        ("tests/test_invariants.py::test_training_timesteps_cover_the_whole_range_including_the_last",)),
    Mutation(
        "noise frozen per loser-reuse window", "videosspo/trainer.py",
        "        noise = rng.sample_noise(x_w.shape[1:], seed, self.step, positions).to(device)\n",
        "        noise = rng.sample_noise(x_w.shape[1:], seed, self.losers.start, positions).to(device)\n",
        "with loser.reuse k every step of a window trains on the same noise: k times fewer noise draws",
        ("tests/test_invariants.py::test_noise_and_timestep_are_drawn_per_step_inside_a_loser_reuse_window",)),
    Mutation(
        "timesteps frozen per loser-reuse window", "videosspo/trainer.py",
        "        t = objective.timesteps(sched, seed, self.step, positions,",
        "        t = objective.timesteps(sched, seed, self.losers.start, positions,",
        "with loser.reuse k every step of a window trains at the same timesteps",
        ("tests/test_invariants.py::test_noise_and_timestep_are_drawn_per_step_inside_a_loser_reuse_window",)),
    Mutation(
        "caption dropout keyed on the micro-batch row", "videosspo/trainer.py",
        "        dropped = rng.drop_captions(cfg.data.caption_dropout, seed, self.step, positions).to(device)\n",
        "        dropped = rng.drop_captions(cfg.data.caption_dropout, seed, self.step, list(range(len(positions)))).to(device)\n",
        "which captions drop depends on the micro-batch cut and the process count (N processes != 1)",
        ("tests/test_invariants.py::test_caption_dropout_is_keyed_on_the_global_sample_so_accumulation_1x2_equals_2x1",)),
    Mutation(
        "CogVideoX noise drawn channels first", "models/families.py",
        '    noise_layout = "f c h w"  # CogVideoXPipeline.prepare_latents draws its noise frames first\n',
        "",
        "CogVideoX samples for a seed differ completely from CogVideoXPipeline's with generator=seed",
        ("tests/test_dit.py::test_cogvideox_prompts_latents_and_sampler_follow_its_pipeline",)),
    Mutation(
        "frame rule a traceback", "models/base.py",
        '            raise ConfigError(f"data.frames={frames} is invalid',
        '            raise ValueError(f"data.frames={frames} is invalid',
        "a frame count the VAE refuses ends the CLI with a traceback, exit 1",
        ("tests/test_cli.py::test_user_errors_of_every_command_are_one_line_and_exit_2",)),
    Mutation(
        "β note from a constant shift", "videosspo/objectives.py",
        "    return float(((1 - sigma_of(u, config, seq_len)) ** 2).mean())\n",
        "    return float(((1 - sigma_of(u, {**config, \"shift\": 12.0}, seq_len)) ** 2).mean())\n",
        "Wan 2.2's β and its logged note assume shift 12 whatever shift the folder holds",
        ("tests/test_wan22.py::test_shipped_beta_is_derived_from_the_shift_the_hub_folder_holds",)),
    Mutation(
        "data epoch frozen", "videosspo/trainer.py",
        "        epoch = p // length\n",
        "        epoch = 0\n",
        "every epoch visits the clips in the same order",
        ("tests/test_invariants.py::test_each_epoch_is_a_new_permutation_and_each_read_of_a_clip_a_new_frame_window",)),
    Mutation(
        "frame window keyed on the clip", "videosspo/trainer.py",
        'rng.derive_seed(self.seed, 0, position, "frames")',
        'rng.derive_seed(self.seed, 0, index, "frames")',
        "a clip gets the same frame window in every epoch",
        ("tests/test_invariants.py::test_each_epoch_is_a_new_permutation_and_each_read_of_a_clip_a_new_frame_window",)),
    Mutation(
        "unexpected pickle in a checkpoint accepted", "videosspo/checkpoint.py",
        "        if Path(name).suffix in PICKLE_SUFFIXES and not PICKLES.fullmatch(name):\n",
        "        if False:\n",
        "a shared checkpoint holding accelerate's custom_checkpoint_0.pkl (or any stray pickle) is not refused",
        ("tests/test_trust.py::test_a_crafted_pickle_never_runs",)),
    Mutation(
        "file digests not checked on resume", "videosspo/checkpoint.py",
        "        if digest is not None and sha256(path) != digest:\n",
        "        if False:\n",
        "a flipped byte in weights, optimizer state, EMA or losers resumes silently",
        ("tests/test_trust.py::test_a_flipped_byte_in_any_file_falls_back_naming_it",)),
    Mutation(
        "replay snapshot not checked against its name", "videosspo/checkpoint.py",
        "    expected.update({store.path(digest): (size, digest) for digest, size in info[\"snapshots\"].items()})\n",
        "    expected.update({store.path(digest): (size, None) for digest, size in info[\"snapshots\"].items()})\n",
        "a replay snapshot whose bytes were flipped is used as the reference",
        ("tests/test_trust.py::test_a_flipped_byte_in_any_file_falls_back_naming_it",)),
    Mutation(
        "damaged RNG state left to accelerate", "videosspo/checkpoint.py",
        "        elif path.name.startswith(\"random_states_\"):",
        "        elif False:",
        "a damaged random_states_0.pkl is skipped with a line at INFO and the run resumes with another RNG",
        ("tests/test_trust.py::test_a_damaged_rng_state_without_digests_falls_back",)),
    Mutation(
        "files the marker does not list accepted", "videosspo/checkpoint.py",
        "    if unlisted:\n",
        "    if False:\n",
        "a file added to a checkpoint after it was written is never verified (accelerate lists folders itself)",
        ("tests/test_trust.py::test_a_file_added_after_the_marker_is_refused",)),
    Mutation(
        "the checkpoint's lr wins over --optim.lr", "videosspo/resume.py",
        "        group.update(initial_lr=optim.lr, lr=optim.lr,",
        "        group.update(lr=optim.lr,",
        "--optim.lr on a resumed run trains at the checkpoint's lr while config.yaml records the new one",
        ("tests/test_trust.py::test_each_resumable_flag_changes_what_the_resumed_run_does",)),
    Mutation(
        "LR schedule restarted at step 0 on resume", "videosspo/resume.py",
        "                         last_epoch=step - 1)",
        "                         last_epoch=-1)",
        "a resumed run's warm-up and decay start over",
        ("tests/test_trust.py::test_each_resumable_flag_changes_what_the_resumed_run_does",)),
    Mutation(
        "data shape changeable on resume", "videosspo/resume.py",
        "           \"replay.size\", \"replay.strategy\", \"replay.interval\", \"data.frames\", \"data.height\", \"data.width\")",
        "           \"replay.size\", \"replay.strategy\", \"replay.interval\")",
        "--data.frames or --data.height on resume ends in 'Sizes of tensors must match' inside a reuse window",
        ("tests/test_trust.py::test_each_refused_flag_is_one_line_and_exit_2",)),
    Mutation(
        "an interrupted newest checkpoint blocks resume", "videosspo/checkpoint.py",
        "    if legacy and not done and where in (None, \"latest\"):",
        "    if legacy and where in (None, \"latest\"):",
        "a newest checkpoint missing COMPLETE.json stops --train.resume latest although the previous one is good",
        ("tests/test_trust.py::test_an_unmarked_newest_checkpoint_is_skipped_and_upgrade_refuses_a_partial_one",)),
    Mutation(
        "upgrade blesses a partial checkpoint", "videosspo/checkpoint.py",
        "        missing = _missing(folder, store)\n",
        "        missing = []\n",
        "upgrade-checkpoints marks a half-deleted checkpoint (no EMA, no losers) complete; it then diverges",
        ("tests/test_trust.py::test_an_unmarked_newest_checkpoint_is_skipped_and_upgrade_refuses_a_partial_one",)),
    Mutation(
        "divergence trains on", "videosspo/trainer.py",
        "            if why and self.config.train.on_anomaly == \"stop\":\n",
        "            if False:\n",
        "a blown-up run trains on, checkpoints wrecked weights and ends in a FloatingPointError traceback",
        ("tests/test_trust.py::test_a_divergent_run_stops_in_one_line_and_never_checkpoints_it",)),
    Mutation(
        "non-finite weights checkpointed", "videosspo/trainer.py",
        "        if any(gather_object(nonfinite(self.model.unet.named_parameters()))):",
        "        if False:",
        "a checkpoint of NaN weights becomes the newest, and resume latest takes it",
        ("tests/test_trust.py::test_non_finite_weights_are_never_checkpointed",)),
    Mutation(
        "a full disk between checkpoints is a traceback", "videosspo/checkpoint.py",
        "        if e.errno not in (errno.ENOSPC, errno.EDQUOT):\n",
        "        if True:\n",
        "TensorBoard's flush or metrics.jsonl on a full disk ends in a traceback, exit 1",
        ("tests/test_trust.py::test_a_full_disk_between_checkpoints_is_one_line",)),
    Mutation(
        "a relaunched finished run rewrites its final checkpoint", "videosspo/trainer.py",
        "        if final == self.resumed:",
        "        if False:",
        "relaunching a finished run (e.g. after a kill in its final save) drops the reuse window's losers: extending "
        "it then diverges from extending the original",
        ("tests/test_trust.py::test_a_finished_run_killed_in_its_final_save_relaunched_and_extended_is_the_same_run",)),
    Mutation(
        "thin image scaled before its crop", "videosspo/data.py",
        "    if size[0] * size[1] > MAX_COVER * height * width:\n",
        "    if False:\n",
        "a 140-byte 1 x 20000 PNG is scaled to 32 x 640000 (2.2 GB) before cropping",
        ("tests/test_inputs.py::test_a_thin_image_is_cropped_before_it_is_scaled",)),
    Mutation(
        "rotation metadata ignored", "videosspo/video.py",
        "    turns = round(frame.rotation / 90) % 4  # counterclockwise, as np.rot90\n",
        "    turns = 0\n",
        "phone videos train sideways",
        ("tests/test_inputs.py::test_a_clip_with_rotation_metadata_comes_out_upright",)),
    Mutation(
        "JSON list captions stringified", "videosspo/data.py",
        "    if isinstance(row.get(\"caption\"), (list, dict)):\n",
        "    if False:\n",
        "a caption [\"a\", \"b\"] trains as the text \"['a', 'b']\"",
        ("tests/test_inputs.py::test_rows_that_are_no_readable_file_or_text_are_named_for_what_they_are",)),
    Mutation(
        "a FIFO or a symlink loop reported as not found", "videosspo/data.py",
        "            return f\"{key} {problem}\" if problem == \"file not found\" else f\"{key} is {problem}\"\n",
        "            return f\"{key} file not found\"\n",
        "a symlink loop, a FIFO or /dev/zero is reported as 'video file not found'",
        ("tests/test_inputs.py::test_rows_that_are_no_readable_file_or_text_are_named_for_what_they_are",)),
    Mutation(
        "short-clip warning names the winner", "videosspo/data.py",
        "        shortest = paths[counts.index(min(counts))]\n",
        "        shortest = paths[0]\n",
        "the short-clip warning names another clip than the short one",
        ("tests/test_inputs.py::test_the_short_clip_warning_names_the_short_clip_of_a_pair",)),
    Mutation(
        "long captions truncated silently", "videosspo/data.py",
        "    if long:\n",
        "    if False:\n",
        "captions past the text encoder's limit lose their end without a word",
        ("tests/test_inputs.py::test_captions_longer_than_the_text_encoder_takes_are_counted_once",)),
    Mutation(
        "sspo-ipo reads no margin target", "videosspo/methods.py",
        '"sspo-ipo": Method(sspo_loss, (*SSPO, "margin_target")',
        '"sspo-ipo": Method(sspo_loss, SSPO',
        "method.name: sspo-ipo silently trains the paper's unbounded logistic loss",
        ("tests/test_methods.py::test_bounded_margin_is_squared_distance_to_the_target",)),
    Mutation(
        "DPO-Positive penalty charged both ways", "videosspo/losses.py",
        "dpop_lambda * F.relu(delta_w)",
        "dpop_lambda * delta_w",
        "sspo-dpop rewards a winner predicted better than the reference, not only charges one predicted worse",
        ("tests/test_methods.py::test_dpo_positive_charges_a_winner_error_above_the_reference",)),
    Mutation(
        "loser weight on the winner term", "videosspo/losses.py",
        "z = 0.5 * beta * (loser_weight * delta_l - delta_w",
        "z = 0.5 * beta * (delta_l - loser_weight * delta_w",
        "sspo-lw weakens the winner's term instead of the loser's",
        ("tests/test_methods.py::test_loser_weight_scales_the_loser_term_only",)),
    Mutation(
        "slow reference snapshots the policy", "videosspo/trainer.py",
        "with self.slow.applied() if self.slow else contextlib.nullcontext():",
        "with contextlib.nullcontext():",
        "sspo-ema's reference chases the policy exactly like sspo's",
        ("tests/test_methods.py::test_slow_reference_snapshots_the_moving_average",)),
    Mutation(
        "guard drift against the wrong model", "videosspo/guard.py",
        "drift = e_fixed / e0 - 1",
        "drift = e0 / e_fixed - 1",
        "a run displacing its winners reads as improving: the guard never fires",
        ("tests/test_guard.py::test_fires_once_when_the_winners_error_drifts_up_against_theta0",)),
    Mutation(
        "guard fires on a part-filled loser window", "videosspo/guard.py",
        "if len(self.losers) == WINDOW and loser > self.max_loser:",
        "if loser > self.max_loser:",
        "one noisy first step raises a false alarm",
        ("tests/test_guard.py::test_fires_when_the_loser_term_dominates_over_a_full_window",)),
    Mutation(
        "guard state not checkpointed", "videosspo/trainer.py",
        "            self.guard.load_state_dict(state.get(\"guard\", {}))\n",
        "",
        "a resumed run loses θ0's errors on the fixed winners: the drift is no longer watched",
        ("tests/test_guard.py::test_a_real_run_trips_the_guard_and_stops_naming_the_kept_checkpoint",)),
    Mutation(
        "guard's fixed batch mixes buckets", "videosspo/guard.py",
        'collate([item for item in items if item.get("size") == items[0].get("size")])',
        'collate(items)',
        "a bucketed run stops at its start: the guard's fixed batch of winners mixes clip shapes",
        ("tests/test_buckets.py::test_bucketed_resume_equals_uninterrupted",)),
    Mutation(
        "empty sample_prompts sampled", "videosspo/trainer.py",
        "        if not prompts:  # the same config on every process: none of them enters the collective below\n",
        "        if False:\n",
        "a run with train.sample_prompts: [] crashes in the tokenizer after its final checkpoint",
        ("tests/test_trainer.py::test_a_run_without_sample_prompts_writes_no_samples",)),
    Mutation(
        "travel option ignored", "videosspo/synth.py",
        "    speed = rng.uniform(*travel) * room / max(frames - 1, 1)\n",
        "    speed = rng.uniform(0.4, 0.8) * room / max(frames - 1, 1)\n",
        "a v2 world's objects crawl across part of the frame as in v1: the direction word no longer fixes positions",
        ("tests/test_synth.py::test_travel_one_crosses_the_frame_from_edge_to_edge",
         "tests/test_synth.py::test_world_records_its_object_options_and_refuses_others")),
    Mutation(
        "world options not passed to the mismatched clip", "videosspo/synth.py",
        "    x0, y0, speed = _place(rng, new, spec.size, frames, height, width, travel)\n",
        "    x0, y0, speed = _place(rng, new, spec.size, frames, height, width)\n",
        "v2 web clips relabelled in direction (and DPO losers) move like v1 clips: the world mixes two kinds of motion",
        ("tests/test_synth.py::test_travel_one_crosses_the_frame_from_edge_to_edge",
         "tests/test_synth.py::test_world_records_its_object_options_and_refuses_others")),
    Mutation(
        "world options not recorded", "videosspo/synth.py",
        "    if sizes is not None or tuple(travel) != TRAVEL:",
        "    if False:",
        "a v1 and a v2 world in the same folder pass for one another: the rerun check cannot tell them apart",
        ("tests/test_synth.py::test_world_records_its_object_options_and_refuses_others",)),
    Mutation(
        "named world not applied", "videosspo/alignment.py",
        "                   size=data.height, progress=progress, **WORLDS[data.world])",
        "                   size=data.height, progress=progress)",
        "data.world: v2 writes a v1 world",
        ("tests/test_alignment.py::test_prepare_writes_the_named_world",)),
)
