"""Judging results with detectors that are not in any loss: mouth-following, chance baseline, identity, jitter."""

from stylepuppet.evaluation.report import Evaluation, evaluate_output, evaluate_run, write_side_by_side

__all__ = ["Evaluation", "evaluate_output", "evaluate_run", "write_side_by_side"]
