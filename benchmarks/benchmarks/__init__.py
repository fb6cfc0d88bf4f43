"""The asv suite of pymmu: the hot paths of DESIGN.md section 9, tracked over commits.

Each module holds classes in asv's style (``params``, ``param_names``, ``setup``,
``time_*`` and ``peakmem_*`` methods). ``benchmarks/compare.py`` measures the same paths
against their baselines in one process and prints ratios.
"""
