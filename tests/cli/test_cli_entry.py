import subprocess
import sys

import click

from stylepuppet.cli import main, run
from stylepuppet.errors import MediaError


def test_user_errors_become_one_line_and_exit_1(capsys):
    @main.command("fail-for-test", hidden=True)
    def _fail() -> None:
        raise MediaError("cannot read x.mp4: no such file; check the path")

    try:
        code = run(["fail-for-test"])
    finally:
        main.commands.pop("fail-for-test")
    err = capsys.readouterr().err
    assert code == 1
    assert err == "error: cannot read x.mp4: no such file; check the path\n"


def test_unknown_command_is_a_usage_error_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "stylepuppet", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "No such command" in proc.stderr


def test_help_lists_the_group():
    assert isinstance(main, click.Group)
    assert run(["--help"]) == 0
