"""The dataset registry: it lists exactly the generators' tasks, gives the TFDS builders the
settings (and so the prepared files' names) of earlier runs, the answer check each task's
reward runs, and the prompt formats the shipped configs write out by hand."""

import pytest

from configs import arithmetic_ppo, base, gsm8k_h100x8, math_qwen7b_v5p64, smoke, visual_grpo
from o1jax.config import datasets
from o1jax.data import tasks, visual


def test_generated_entries_are_exactly_the_generators_tasks():
    assert datasets.names(generated=True, visual=False) == tuple(tasks.TASKS)
    assert datasets.names(generated=True, visual=True) == visual.TASKS
    assert set(datasets.DATASETS) == set(tasks.TASKS) | set(visual.TASKS) | {
        "gsm8k", "math", "jsonl", "code_jsonl", "image_qa"}
    assert datasets.names(visual=True) == ("count", "chart", "pixel_sum", "count_chart",
                                            "image_qa")


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown dataset 'gsm9k'; known: \('arithmetic'"):
        datasets.get("gsm9k")


@pytest.mark.parametrize("module, name", [
    # the TFDS config names today's runs prepared their data under (written out by hand): a
    # change here would prepare every run's data again under another name
    (smoke, "arithmetic-difficulty2-num_test32-num_train256-seed0"),
    (arithmetic_ppo, "arithmetic-difficulty2-num_test200-num_train8000-seed0-slip_rate0.6"),
    (visual_grpo, "count-askscolour-difficulty1-num_test200-num_train6000-seed0-slip_rate0.6"),
])
def test_builder_settings_keep_the_prepared_files_names(module, name):
    cfg = module.get_config()
    settings = datasets.get(cfg.data.task).builder_config(cfg.data)
    assert cfg.data.task + "".join(f"-{k}{v}" for k, v in sorted(settings.items())) == name


def test_builder_settings_by_family():
    data = dict(base.get_config().data.to_dict(), train_path="a.jsonl", hard_levels=2)
    assert datasets.get("jsonl").builder_config(data) == {"train_path": "a.jsonl"}
    assert datasets.get("gsm8k").builder_config(data) == {}
    assert datasets.get("linear").builder_config(dict(data, slip_rate=0.5)) == {
        "difficulty": 2, "num_train": 256, "num_test": 32, "seed": 0, "hard_levels": 2}
    assert datasets.get("arithmetic").builder_config(dict(data, slip_rate=0.5))["slip_rate"] == 0.5


def test_answer_checks():
    assert datasets.answer_check("countdown") == "countdown"
    for task in ("arithmetic", "gsm8k", "math/Counting & Probability", "count", "image_qa",
                 "a form self-play has not heard of", ""):
        assert datasets.answer_check(task) == "equivalence", task


def test_prompt_formats_are_the_ones_the_configs_write():
    assert datasets.REASONING_TEMPLATE == base.REASONING_TEMPLATE
    for module in (gsm8k_h100x8, math_qwen7b_v5p64, visual_grpo, smoke):
        cfg = module.get_config()
        assert datasets.get(cfg.data.task).template == cfg.data.template, module.__name__
