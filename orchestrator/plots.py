"""PNG plot of a run's reward components and KL over steps (matplotlib, Agg backend). Orchestrator process."""

from __future__ import annotations

from pathlib import Path


def plot_rewards(records: list[dict], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (
        ("total", "total R"),
        ("explanation", "R_explanation"),
        ("format", "R_format"),
        ("answer", "R_answer"),
    ):
        ax.plot(steps, [r[f"reward/{key}"] for r in records], marker="o", label=label)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward over the step's completions")
    ax.set_title("Reward components")
    ax.legend()
    ax.grid(alpha=0.3)
    ax_kl.plot(steps, [r["kl"] for r in records], marker="o", color="tab:red")
    ax_kl.set_xlabel("GRPO step")
    ax_kl.set_title("KL to the reference (k3)")
    ax_kl.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
