"""The compiled self-play step, built by one function for training (``selfplay.stage``) and for
ahead-of-time lowering (``rl.stage.lower_rl_step``, so ``python -m o1jax.plan`` plans the step
that trains): the referee, its host callback, the reward callback and the iteration over
``selfplay_collect``. The referee's worker pool starts on its first judgement, so lowering starts
no process."""

from __future__ import annotations

from typing import Callable, NamedTuple

from jax.sharding import Mesh

from o1jax.data.prompts import PromptFormat
from o1jax.models.transformer import Transformer
from o1jax.rewards.in_graph import make_reward_callback
from o1jax.rl.config import RLConfig
from o1jax.rl.search_metrics import with_search_metrics
from o1jax.rl.state import RLState
from o1jax.selfplay import scenes, search_problems
from o1jax.selfplay.config import SelfPlayConfig
from o1jax.selfplay.iteration import make_selfplay_iteration
from o1jax.selfplay.problems import Bounds
from o1jax.selfplay.referee import JUDGE, SCENES, TASK_JUDGES, Referee, make_referee_fn
from o1jax.tokenizer import Tokenizer


class SelfPlayStep(NamedTuple):
    """iteration: (state, batch, key) -> (state, metrics, results), jitted; shardings: the
    train state's (None without a mesh); referee: the host side of the referee callback;
    referee_times, reward_times: the (start, end) ``time.perf_counter()`` of each host call of
    the two callbacks (the stage reads and clears them after each iteration)."""
    iteration: Callable
    shardings: RLState | None
    referee: Referee
    referee_times: list[tuple[float, float]]
    reward_times: list[tuple[float, float]]


def selfplay_step(policy: Transformer, tokenizer: Tokenizer, fmt: PromptFormat, rl: RLConfig,
                  sp: SelfPlayConfig, mesh: Mesh | None, example_at: Callable[[int], dict],
                  seen: set[str], task: str = "", train_level: int = 0) -> SelfPlayStep:
    """The self-play step of a run: solver prompts in the run's format ``fmt`` (padded to
    ``fmt.max_prompt_len``); ``example_at(i)``: dataset row i (a seed problem's answer);
    ``seen``: the normalised forms accepted before (the buffer's, which it checkpoints);
    ``task``, ``train_level``: the seed task and its difficulty. A vision policy proposes
    pictures (``SCENES``) drawn at its encoder's image size; a seed task with a form of its
    own (``TASK_JUDGES``: countdown_search) proposes in that form, any other in the arithmetic
    forms (``JUDGE``). A task written as a stream of search adds the solver's search metrics."""
    vision = policy.cfg.vision
    referee = Referee(Bounds(sp.max_chars, sp.max_digits, sp.max_operators, sp.max_answer),
                      seen, sp.check_timeout, judge_fn=judge_of(task, bool(vision)),
                      image_size=vision.image_size if vision else 0)
    referee_times: list[tuple[float, float]] = []
    reward_times: list[tuple[float, float]] = []
    reward_fn = make_reward_callback(
        tokenizer, example_at, rl.reward_weights, mesh=mesh,
        problem_example=lambda q, i: referee.find(q, i).example(), with_correct=True,
        call_times=reward_times)
    reward_fn = with_search_metrics(reward_fn, tokenizer, task, mesh)
    referee_fn = make_referee_fn(referee, tokenizer, fmt, sp.question_bytes,
                                 call_times=referee_times)
    iteration, shardings = make_selfplay_iteration(policy, rl, sp, referee_fn, reward_fn,
                                                   fmt.max_prompt_len, tokenizer.stop_ids,
                                                   tokenizer.pad_id, train_level)
    return SelfPlayStep(iteration, shardings, referee, referee_times, reward_times)


def levels_of(task: str, pictures: bool) -> tuple[int, ...]:
    """The difficulty levels of the proposals' form (() when it has none): pictures' (scenes),
    countdown_search's (search_problems)."""
    return scenes.LEVELS if pictures else (
        search_problems.LEVELS if task == search_problems.TASK else ())


def judge_of(task: str, pictures: bool) -> str:
    """The referee's judge ("module:function") for self-play seeded by ``task``."""
    return SCENES if pictures else TASK_JUDGES.get(task, JUDGE)
