"""The ground truth the benchmark judges policies by: a per-request serving simulator built from raw
measurements, independent of the planner (issue 16).

It never imports :mod:`greenmodel.planning` or the benchmark's planner-driven replay (an import-linter contract in
pyproject.toml enforces it). What it takes from a ModelCatalog is only facts about a model (weights size, layers,
KV heads, head dimension, parameters) and a deployment's engine settings; step time and power come from
ML.ENERGY's measured rows (:mod:`.measured`), prefill time from Vidur's measured operator profiles
(:mod:`.prefill`), and the scheduling from a vLLM-style engine (:mod:`.engine`).

Every number it returns says whether it was measured, derived (and by which rule) or sampled.
"""
