"""flask-locking benchmarks: the product measured side by side with its limits, in one run.

Run ``python -m benchmarks`` (``--quick`` for a short pass, ``--help`` for the sections).
Every figure is reported next to a baseline measured in the same run, in alternating
batches, so that a noisy machine moves both; the ratios are the result, not the absolute
numbers. Nothing here asserts a timing.
"""
