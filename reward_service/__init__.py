"""The ERV reward: pure reward math (`core`), the verifier model (`erv`), the service (`server`), its client, benchmarks (`bench`).

Imports nothing of the other top-level packages; see docs/DESIGN.md for who may import what.
"""
