"""Judging results with networks that are not in any loss: mouth-following, chance baseline, identity, jitter;
the evaluation video and the report."""

from stylepuppet.evaluation.figures import Evaluation, Identity, evaluate_run
from stylepuppet.evaluation.panels import write_side_by_side
from stylepuppet.evaluation.report import evaluate_output

__all__ = ["Evaluation", "Identity", "evaluate_output", "evaluate_run", "write_side_by_side"]
