"""The run report: WORKDIR/report.png from metrics.jsonl and the evaluation files."""

from __future__ import annotations

import io
import json

import matplotlib
from etils import epath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(workdir, out=None) -> epath.Path:
    """SFT loss, RL reward per iteration, and the held-out accuracies, in one PNG (``workdir``
    and ``out`` local or gs://)."""
    workdir = epath.Path(workdir)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    sft = [r for r in rows if r["stage"] == "sft"]
    rl = [r for r in rows if r["stage"] == "rl"]
    evals = {}
    for name in ("sft", "rl"):
        path = workdir / f"eval_{name}.json"
        if path.exists():
            evals[name] = json.loads(path.read_text())
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if sft:
        axes[0].plot([r["step"] for r in sft], [r["loss"] for r in sft])
    axes[0].set(title="SFT: next-token loss", xlabel="step")
    if rl:
        steps = [r["step"] for r in rl]
        reward = [r["reward_mean"] for r in rl]
        k = max(1, len(reward) // 10)
        smooth = [sum(reward[max(0, i - k + 1):i + 1]) / len(reward[max(0, i - k + 1):i + 1])
                  for i in range(len(reward))]
        axes[1].plot(steps, reward, alpha=0.3, label="per iteration")
        axes[1].plot(steps, smooth, label=f"mean of {k}")
        axes[1].legend()
    axes[1].set(title="RL: mean reward of sampled responses", xlabel="iteration")
    labels, values = [], []
    for name, key in (("sft", "greedy_accuracy"), ("rl", "greedy_accuracy")):
        if name in evals:
            labels.append(f"{name.upper()} greedy")
            values.append(evals[name][key])
    maj = [k for k in evals.get("rl", {}) if k.startswith("maj")]
    for key in maj:
        labels.append(f"RL {key.split('_')[0]}")
        values.append(evals["rl"][key])
    axes[2].bar(labels, values, color=["tab:gray", "tab:blue", "tab:green"][:len(values)])
    axes[2].set(title="held-out accuracy", ylim=(0, 1))
    for i, v in enumerate(values):
        axes[2].text(i, v + 0.02, f"{100 * v:.1f}%", ha="center")
    fig.tight_layout()
    out = epath.Path(out or workdir / "report.png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out.write_bytes(buf.getvalue())
    return out


def print_table(result: dict, maj_k: int) -> None:
    """The run's headline figures (a run's summary dict) as a small table on stdout."""
    rows = [("held-out greedy accuracy after SFT", result.get("sft_accuracy")),
            ("held-out greedy accuracy after RL", result.get("rl_accuracy")),
            (f"held-out maj@{maj_k} accuracy after RL", result.get(f"rl_maj{maj_k}_accuracy"))]
    width = max(len(r[0]) for r in rows)
    print("-" * (width + 10))
    for name, v in rows:
        print(f"{name:<{width}}  {'-' if v is None else f'{100 * v:5.1f}%'}")
    print("-" * (width + 10))
