"""Every config field with its default (toy sizes). Experiment configs start from this one and
change what they need; o1jax.train reads them, they never import the trainer."""

import ml_collections

# The prompt of the real-data configs: the instruct models' own "\boxed{}" answer convention.
REASONING_TEMPLATE = ("{question}\nPlease reason step by step, and put your final answer "
                      "within \\boxed{{}}.\n")


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.mesh_shape = (-1, 1, 1)        # (data, fsdp, tensor); -1 takes the remaining devices
    c.on_nonfinite = "skip"          # or "stop"
    c.distributed = False            # multi-host: jax.distributed.initialize()
    c.progress_bar = True
    c.workdir_timeout = 60           # seconds to reach (create) the workdir at start
    c.peak_flops_per_s = 0.0         # for the MFU metric; 0: measure a matmul at start
    c.init_from = ""                 # start from another run's policy: WORKDIR[:sft|:rl]
    c.hardware = ""                  # what the config is sized for (v5p-64, v5e-8, h100x8):
                                     # python -m o1jax.plan checks it fits

    c.model = ml_collections.ConfigDict()
    c.model.preset = "tiny"          # shapes (see o1jax.models.config.PRESETS)
    c.model.hf_path = ""             # a Hugging Face directory: weights, shapes and tokenizer
    c.model.overrides = ml_collections.ConfigDict({"vocab_size": 320, "num_layers": 1,
                                                   "max_seq_len": 64})

    c.data = ml_collections.ConfigDict()
    c.data.task = "arithmetic"
    c.data.difficulty = 2
    c.data.num_train = 256
    c.data.num_test = 32
    c.data.seed = 0
    c.data.slip_rate = 0.0           # arithmetic: demonstrator forgets a carry/borrow this often
    c.data.max_prompt_len = 12
    c.data.template = "{question}\n"
    c.data.use_chat_template = False  # the template's text as the user turn of the model's chat
    c.data.data_dir = ""             # default: WORKDIR/tfds
    c.data.manual_dir = ""           # official files for gsm8k / math

    c.sft = ml_collections.ConfigDict()
    c.sft.num_steps = 0               # teacher forcing on reference solutions before RL
    c.sft.batch_size = 16
    c.sft.max_len = 48
    c.sft.lr = 1e-3
    c.sft.warmup_steps = 10

    c.eval = ml_collections.ConfigDict()
    c.eval.num_examples = 0           # held-out examples (0: no evaluation)
    c.eval.max_new_tokens = 16
    c.eval.maj_k = 4
    c.eval.curve_points = 8           # log-spaced held-out evaluations during RL (0: none)
    c.eval.temperature = 1.0
    c.eval.batch_prompts = 16

    c.rl = ml_collections.ConfigDict()
    c.rl.algorithm = "ppo"           # ppo | grpo | dr_grpo | rloo | reinforce_pp
    c.rl.num_iterations = 4
    c.rl.batch_prompts = 8
    c.rl.group_size = 2
    c.rl.max_new_tokens = 16
    c.rl.temperature = 1.0
    c.rl.top_p = 1.0
    c.rl.epochs = 1
    c.rl.minibatches = 2
    c.rl.policy_lr = 1e-4
    c.rl.value_lr = 5e-4
    c.rl.max_grad_norm = 1.0
    c.rl.clip_low = 0.2
    c.rl.clip_high = 0.2
    c.rl.dual_clip = ml_collections.FieldReference(None, field_type=float)
    c.rl.importance_level = "token"  # sequence: GSPO's length-normalised ratio per row
    c.rl.value_clip = 0.2
    c.rl.gamma = 1.0
    c.rl.lam = 1.0
    c.rl.whiten_advantages = True
    c.rl.kl_coef = 0.01
    c.rl.kl_estimator = "k3"
    c.rl.kl_in_reward = False
    c.rl.kl_target = ml_collections.FieldReference(None, field_type=float)
    c.rl.kl_horizon = 10000.0        # the adaptive controller's horizon (rows)
    c.rl.entropy_coef = 0.0
    c.rl.critic_warmup = 0
    c.rl.loss_agg = "token_mean"
    c.rl.old_logprobs = "auto"       # recompute (a training forward pass) unless compute is f32
    c.rl.tis_cap = ml_collections.FieldReference(None, field_type=float)
    c.rl.micro_batch = 0             # rows per forward/backward pass (0: whole minibatch)
    c.rl.vocab_chunk = 0             # log-probs this many vocabulary entries at a time (0: all)
    c.rl.length_buckets = 1          # padding-free: each micro-batch (rows grouped by length)
                                     # runs over the shortest of this many response lengths
                                     # that holds its rows (1: off); pair with rl.micro_batch
    c.rl.rewards = ml_collections.ConfigDict({"correctness": 1.0, "format": 0.1})
    c.rl.oversample = 1.0            # DAPO's dynamic sampling: roll out this many x the prompts,
                                     # train on the groups whose rewards differ (1: off)
    c.rl.overlong_window = 0         # DAPO's over-long shaping over the budget's last tokens
    c.rl.overlong_coef = 1.0
    c.rl.mask_truncated = False      # truncated responses leave the loss
    c.rl.routing_replay = False      # MoE: the trainer reuses the sampler's expert choices
    c.rl.router_aux_coef = 0.0       # MoE: load-balancing loss weight (always logged)
    c.rl.lora_rank = 0               # LoRA: rank-r adapters train, the base is frozen (0: off)
    c.rl.lora_alpha = 16.0
    c.rl.lora_targets = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")

    c.selfplay = ml_collections.ConfigDict()   # o1jax/selfplay/config.py says what each is
    c.selfplay.enabled = False       # the RL stage becomes self-play: propose, referee, solve
    c.selfplay.proposals = 8         # new problems an iteration (of rl.batch_prompts)
    c.selfplay.examples = 2          # buffer problems shown to the proposer
    c.selfplay.prompt_len = 40
    c.selfplay.proposal_tokens = 16
    c.selfplay.prompt_prefix = "New problem like "
    c.selfplay.learnability = "absolute_zero"   # or r_zero
    c.selfplay.buffer_fraction = 0.5
    c.selfplay.buffer_size = 512
    c.selfplay.buffer_balance = "none"   # or answer: buffer problems drawn answer-balanced
    c.selfplay.train_fresh = True    # accepted proposals in the gate train the solver at once
    c.selfplay.gate_low = 0.2
    c.selfplay.gate_high = 0.8
    c.selfplay.max_chars = 40
    c.selfplay.max_digits = 4
    c.selfplay.max_operators = 3
    c.selfplay.max_answer = 1e6
    c.selfplay.check_timeout = 1.0
    c.selfplay.sft_fraction = 0.25
    c.selfplay.sft_hard_fraction = 0.25   # countdown_search: proposer demos one level up
    c.selfplay.level_bonus = 0.0     # proposer reward x (1 + bonus x levels above training)
    c.selfplay.proposal_form = "target"   # countdown_search: listed | expression state a solution
    c.selfplay.zero_answer_weight = 1.0   # proposer reward x this for an answer-0 problem

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1
    c.checkpoint.keep = 3
    c.checkpoint.async_save = True

    c.tools = ml_collections.ConfigDict()   # <tool> programs run in the sandbox while decoding
    c.tools.enabled = False
    c.tools.max_calls = 2             # per response
    c.tools.max_output_tokens = 24    # one call's output, its <output> markers included
    c.tools.cpu_seconds = 1
    c.tools.wall_seconds = 2.0
    return c
