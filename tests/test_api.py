"""The public Python API: every function documented with an example, settings from keywords, the README's example."""

import re
from pathlib import Path

import pytest
import torch

import stylepuppet
from stylepuppet.config import AnimateConfig
from stylepuppet.errors import ConfigError
from stylepuppet.generators.interface import ImageGenerator

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_api_is_functions_with_docstrings_and_examples():
    for name in ("animate", "render", "evaluate", "track", "load_generator", "make_config"):
        fn = getattr(stylepuppet, name)
        assert callable(fn) and name in stylepuppet.__all__ and name in dir(stylepuppet)
        assert "Example" in fn.__doc__ and "stylepuppet." in fn.__doc__, name
    for name in ("AnimateConfig", "LossWeights", "LandmarkConfig", "Schedule", "TrackConfig", "AnimateResult",
                 "Evaluation", "FaceTrack", "StylePuppetError"):
        assert isinstance(getattr(stylepuppet, name), type) and name in stylepuppet.__all__
    with pytest.raises(AttributeError):
        _ = stylepuppet.no_such_function


def test_settings_come_from_a_preset_a_config_and_keywords(tmp_path):
    cfg = stylepuppet.make_config("free", max_frames=3, landmarks__net="mesh", schedule__steps=7)
    assert (cfg.preset, cfg.max_frames, cfg.landmarks.net, cfg.schedule.steps) == ("free", 3, "mesh", 7)
    again = stylepuppet.make_config(config=cfg, seed=4)
    assert again == AnimateConfig(**{**cfg.__dict__, "seed": 4})
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "quick"\n[loss]\nlandmark = 12.0\n')
    from_file = stylepuppet.make_config(config=toml, subframes=1)
    assert (from_file.preset, from_file.loss.landmark, from_file.subframes) == ("quick", 12.0, 1)
    with pytest.raises(ConfigError, match="not both"):
        stylepuppet.make_config("seed", config=cfg)
    with pytest.raises(ConfigError, match="unknown config key 'landmarks.nett'"):
        stylepuppet.make_config(landmarks__nett="mesh")


def test_load_generator_reads_the_dcgan_too(models_dir):
    G = stylepuppet.load_generator(models_dir / "digiface_dcgan64_G.pt")
    assert isinstance(G, ImageGenerator) and not G.training
    with torch.no_grad():
        images = G(torch.randn(2, G.z_dim), None)
    assert images.shape == (2, 3, 64, 64)


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(models_dir, tmp_path, monkeypatch, capsys):
    """The README's example, run from a folder beside the shared one, as from the repository root."""
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(example.strip().splitlines()) <= 6
    (tmp_path / "shared").symlink_to(models_dir.parent)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    exec(compile(example, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("animated 3 frames in ") and "outputs in out/d3" in out
    assert (tmp_path / "repo" / "out" / "d3" / "animation.mp4").is_file()
