"""`stylepuppet animate --evaluate`: the run is judged at its end and its report written."""

import json

from stylepuppet.cli import run


def test_animate_with_evaluate_writes_the_report_with_the_look_distance(media_dir, models_dir, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["animate", "--look", str(media_dir / "s3.jpg"), "--driving", str(media_dir / "d0.mp4"),
            "--network", str(models_dir / "digiface_dcgan64_G.pt"), "--space", "w", "--look-loss", "msssim",
            "--landmark-net", "mesh", "--landmark-weights", str(models_dir / "face_landmark.tflite"),
            "--subframes", "1", "--max-frames", "3", "--steps-first", "6", "--steps", "3", "--quiet", "--evaluate",
            "-o", str(out)]
    assert run(args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("animated 3 frames")
    assert printed[-1] == f"report: {out / 'report.html'} (figures and series: {out / 'report.json'})"
    data = json.loads((out / "report.json").read_text())
    assert data["lines"] == printed[1:1 + len(data["lines"])]
    assert data["figures"]["frames"] == 3 and data["run"]["mode"] == "keep-identity"
    for judge in data["series"]["identity"]:  # dlib, and FaceNet when installed
        to_look = data["series"]["identity"][judge]["to_look"]
        assert len(to_look) == 3 and any(v is not None for v in to_look)  # keep-identity: the look is judged too
        assert any(line.startswith(f"identity to the look image, {judge}") for line in data["lines"])
    assert (out / "evaluation.mp4").is_file() and (out / "report.html").stat().st_size > 10_000
