"""Batches: many animate runs (looks × driving clips) from one batch file, run in parallel on Ray
(:mod:`~stylepuppet.batches.jobs` plans them, :mod:`~stylepuppet.batches.runner` runs them,
:mod:`~stylepuppet.batches.manifest` records them)."""
