"""The study: benchmark grid, sweeps and ablations as independent jobs (submitit), and reports.

Submodules: grid (protocols, cells, results layout), jobs (submitit executors).
"""
