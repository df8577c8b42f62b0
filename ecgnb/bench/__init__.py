"""Benchmarks (scripts that print tables, not tests): ``python -m ecgnb.bench softdtw|pretrain|probe|published``.

:mod:`~ecgnb.bench.timing` is the one helper module; each command has its own module.
"""
