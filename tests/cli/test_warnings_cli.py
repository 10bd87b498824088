"""Warnings raised during a run are shown once and never loop (issue 17, defect 1)."""

import subprocess
import sys

SCRIPT = """
import warnings
from stylepuppet.cli.animate import echo_warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    warnings.warn("Corrupt EXIF data", UserWarning)
    echo_warnings(caught)
print("done", len(caught))
"""


def test_echo_warnings_inside_the_recording_context_prints_once_and_returns():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "done 1"
    assert proc.stderr.count("UserWarning: Corrupt EXIF data") == 1
