"""The command line's settings options come from the config's fields: flags, types, choices, keys."""

import subprocess
import sys
import typing

import click

from stylepuppet.cli import main
from stylepuppet.cli.options import setting_keys
from stylepuppet.config import resolve_config, settings

#: Every settings flag `animate` has offered so far: renaming one breaks users' scripts.
FLAGS = {"mode", "space", "network", "landmark-net", "landmark-weights", "look-loss", "look-weights", "form",
         "compare", "groups", "jitter", "reference", "lambda-look", "lambda-landmark", "lambda-smoothness",
         "lambda-fidelity", "lambda-noise", "steps-first", "steps", "lr", "smooth", "detector", "subframes",
         "latent-smooth", "max-frames", "start", "end", "seed", "device", "untrained", "untrained-size",
         "start-candidates", "start-rehearsal", "lambda-identity", "identity-net", "show-points", "paste-back",
         "paste-into"}


def _options() -> dict[str, click.Option]:
    return {opt.opts[0][2:]: opt for opt in main.commands["animate"].params if isinstance(opt, click.Option)}


def test_every_flag_of_a_setting_is_an_option_with_the_settings_choices():
    options = _options()
    flagged = {f.metadata["flag"]: (key, tp) for key, f, tp in settings() if f.metadata.get("flag")}
    assert set(flagged) == FLAGS and set(options) >= FLAGS
    for flag, (key, tp) in flagged.items():
        assert f"[{key}]" in options[flag].help
        if typing.get_origin(tp) is typing.Literal:
            assert tuple(options[flag].type.choices) == typing.get_args(tp), flag
    assert tuple(options["preset"].type.choices) == ("seed", "fast", "keep-identity", "free", "free-fast", "quick")


def test_options_become_the_settings_they_name():
    keys = setting_keys()
    cfg = resolve_config("free", None, {keys["lambda_landmark"]: 12.0, keys["jitter"]: 3, keys["landmark_net"]: "mesh",
                                        keys["smooth"]: 0.5, keys["max_frames"]: 7, keys["untrained"]: True})
    assert (cfg.loss.landmark, cfg.landmarks.jitter_count, cfg.landmarks.net) == (12.0, 3, "mesh")
    assert (cfg.track.smooth, cfg.max_frames, cfg.untrained) == (0.5, 7, True)


def test_help_does_not_load_torch():
    code = "import sys; from stylepuppet.cli import run; run(['animate', '--help']); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().endswith("False")
