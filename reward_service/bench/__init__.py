"""Benchmarks of the ERV and the reward service (`erv-grpo bench erv|reward`); results under bench/results/.

Run in the user's shell process; they start servers as subprocesses. Not imported by the product.
"""
