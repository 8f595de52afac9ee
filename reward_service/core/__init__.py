"""Pure reward math and emotion labels (docs/REWARD_SPEC.md): no I/O, no model, no RPC.

Imported wherever completions are scored or parsed: the reward service, evaluation, the SFT
format check, tests. Depends on numpy only.
"""
