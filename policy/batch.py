"""The batch a GRPO update consumes: `RolloutBatch`.

Plain data, no torch: the orchestrator (Ray driver process) builds it from scored rollout
groups and sends it to the learner actor(s), which turn it into padded tensors.

Rows are completions. A batch of B prompts with G samples each has B*G rows, groups being
consecutive runs of G rows (row i belongs to prompt i // G), the same layout
`policy.advantages.group_advantages` expects. Advantages are computed by the caller (with
`group_advantages` on the rewards) so the learner never needs rewards or the reward service.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RolloutBatch:
    """One GRPO batch of B*G completions (one row per completion).

    Fields (all lists have one entry per row, in the same order):
    - prompt_token_ids: the chat-formatted prompt's token ids, repeated for each of its G rows.
    - completion_token_ids: the sampled token ids, EOS included when the sampler emitted it
      (the EOS token is trained on; a completion cut at the length limit simply has no EOS).
    - advantages: one float per row, (r - mean_g) / (std_g + eps) of its group.
    - sampler_logprobs: per completion token, the logprob the sampler (vLLM) assigned to the
      token it drew; same length as completion_token_ids. Only used for the mismatch metric.
    - completion_ids: the completion's string id (e.g. "<prompt_id>/<k>"), carried so that
      nothing is matched by position alone; echoed in errors.
    - policy_version: the learner version whose weights sampled this batch (the oldest row's
      when rows differ).
    - sampled_versions: per row, the version whose weights sampled it (async rollouts mix
      versions); None: every row was sampled by `policy_version`.

    Multimodal prompts (all three None for a text batch): the media travel once per prompt.
    - media: one dict per prompt group ({"video": uint8 (T, H, W, 3), "audio": float32 (N,) at
      16 kHz, optional "video_fps"}; None for a text-only prompt of the batch).
    - prompt_texts: per group, the chat-templated prompt text the sampler got (the processor's input).
    - row_group: per row, the index of its group in `media` / `prompt_texts`.
    For such rows prompt_token_ids are the ids as vLLM expanded them (placeholders repeated); the
    learner's processor must produce exactly these, or the update fails naming the completion.
    """

    prompt_token_ids: list[list[int]]
    completion_token_ids: list[list[int]]
    advantages: list[float]
    sampler_logprobs: list[list[float]]
    completion_ids: list[str]
    policy_version: int
    media: list[dict | None] | None = None
    prompt_texts: list[str | None] | None = None
    row_group: list[int] | None = None
    sampled_versions: list[int] | None = None

    def row_version(self, i: int) -> int:
        """The policy version that sampled row i."""
        return self.policy_version if self.sampled_versions is None else self.sampled_versions[i]

    def __len__(self) -> int:
        return len(self.completion_token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return sum(len(c) for c in self.completion_token_ids)

    def validate(self) -> None:
        """Raise ValueError naming the field when the rows do not line up."""
        n = len(self.completion_token_ids)
        names = ["prompt_token_ids", "advantages", "sampler_logprobs", "completion_ids"]
        for name in names + (["sampled_versions"] if self.sampled_versions is not None else []):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RolloutBatch.{name} has {len(getattr(self, name))} rows, expected {n}")
        for i, (toks, lps) in enumerate(zip(self.completion_token_ids, self.sampler_logprobs, strict=True)):
            if len(toks) != len(lps):
                raise ValueError(
                    f"RolloutBatch.sampler_logprobs[{i}] (completion {self.completion_ids[i]!r}) has "
                    f"{len(lps)} entries for {len(toks)} completion tokens"
                )
            if not self.prompt_token_ids[i]:
                raise ValueError(f"RolloutBatch.prompt_token_ids[{i}] is empty")
        if self.media is None and self.prompt_texts is None and self.row_group is None:
            return
        if self.media is None or self.prompt_texts is None or self.row_group is None:
            raise ValueError(
                "RolloutBatch.media, prompt_texts and row_group are given together or not at all"
            )
        if len(self.prompt_texts) != len(self.media):
            raise ValueError(
                f"RolloutBatch.prompt_texts has {len(self.prompt_texts)} groups, media {len(self.media)}"
            )
        if len(self.row_group) != n:
            raise ValueError(f"RolloutBatch.row_group has {len(self.row_group)} rows, expected {n}")
        for i, g in enumerate(self.row_group):
            if not 0 <= g < len(self.media):
                raise ValueError(
                    f"RolloutBatch.row_group[{i}] = {g} names no group (0..{len(self.media) - 1})"
                )
            if self.media[g] and not self.prompt_texts[g]:
                raise ValueError(f"RolloutBatch.prompt_texts[{g}] is empty for a prompt with media")

    def is_multimodal(self, row: int) -> bool:
        return self.media is not None and bool(self.media[self.row_group[row]])

    def select(self, rows: list[int]) -> RolloutBatch:
        """The sub-batch of the given rows (used to shard a batch over data-parallel learners)."""
        mm = {}
        if self.media is not None:
            groups = sorted({self.row_group[i] for i in rows})
            new = {g: k for k, g in enumerate(groups)}
            mm = {"media": [self.media[g] for g in groups], "prompt_texts": [self.prompt_texts[g] for g in groups],
                  "row_group": [new[self.row_group[i]] for i in rows]}  # fmt: skip
        return RolloutBatch(
            prompt_token_ids=[self.prompt_token_ids[i] for i in rows],
            completion_token_ids=[self.completion_token_ids[i] for i in rows],
            advantages=[float(self.advantages[i]) for i in rows],
            sampler_logprobs=[self.sampler_logprobs[i] for i in rows],
            completion_ids=[self.completion_ids[i] for i in rows],
            policy_version=self.policy_version,
            **mm,
            sampled_versions=None
            if self.sampled_versions is None
            else [self.sampled_versions[i] for i in rows],
        )

    def shard(self, rank: int, world_size: int) -> RolloutBatch:
        """Contiguous shard `rank` of `world_size` (sizes differ by at most one row)."""
        n = len(self)
        start, stop = rank * n // world_size, (rank + 1) * n // world_size
        return self.select(list(range(start, stop)))


def micro_batches(batch: RolloutBatch, size: int) -> list[list[int]]:
    """Row indices of each micro-batch of <= `size` rows: the rows of one prompt together, by completion length.

    A prompt's G rows share micro-batches, so it runs once per micro-batch (policy.forward's shared
    prompts), and rows of like length are neighbours, so less of each is padding. The loss and
    gradients do not depend on the grouping: every micro-batch divides by the whole batch's counts,
    only the order of the sums changes.
    """
    n = len(batch)
    prompts, completions = batch.prompt_token_ids, batch.completion_token_ids
    order = sorted(range(n), key=lambda i: (len(prompts[i]), prompts[i], len(completions[i])))
    return [order[i : i + size] for i in range(0, n, size)]
