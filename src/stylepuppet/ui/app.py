"""The browser app (`stylepuppet ui`): drop a look image and a driving clip, run, watch, judge, download.

Gradio lays out the page; everything it calls is in :class:`Studio`, whose handlers turn every
failure into a message on the page (never a stack trace). Runs go through :mod:`.jobs`.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from stylepuppet import weights
from stylepuppet.animation.outputs import ANIMATION, CONFIG, EVALUATION, LATENTS, REPORT_HTML, REPORT_JSON, SIDE_BY_SIDE
from stylepuppet.config import PRESETS
from stylepuppet.errors import StylePuppetError
from stylepuppet.face.detect import detect_image, make_detector
from stylepuppet.ui.choices import SHARED, Engine, engines, samples
from stylepuppet.ui.jobs import POLL, Job, RunRequest, prepare_folder, resume_command, session_folder
from stylepuppet.video import load_image, probe

MODES = ("keep-identity", "free")
#: Frames a run from the page takes unless the user asks for more (the whole clip can take an hour).
DEFAULT_FRAMES = 30
#: Gradio hands a handler a live progress tracker in place of a default of this type.
PROGRESS = gr.Progress()
#: The result fields (animation, side by side, report, downloads) while there is no result.
EMPTY = (None, None, "", None)
#: What a finished run offers for download, in this order (those that exist).
DOWNLOADS = (ANIMATION, SIDE_BY_SIDE, EVALUATION, REPORT_HTML, REPORT_JSON, LATENTS, CONFIG)


def _message(exc: StylePuppetError, upload: Path, name: str) -> str:
    """The error's one line, naming the file as the user knows it rather than by its server-side path."""
    return str(exc).replace(str(upload), name)


def check_look(path: Path) -> str:
    """A one-line verdict on a look image: readable, with a face (StylePuppetError otherwise)."""
    image = load_image(path)
    detect_image(image, make_detector("dlib"), what=f"the look image {path}")
    return f"look image: {image.shape[1]}×{image.shape[0]}, face found"


def check_driving(path: Path) -> str:
    """A one-line verdict on a driving clip: readable, with frames (StylePuppetError otherwise)."""
    info = probe(path)
    return f"driving clip: {info.num_frames} frames at {info.fps:g} fps, {info.size[0]}×{info.size[1]}"


def report_frame(page: str) -> str:
    """The self-contained report page shown in an isolated frame (its styles stay out of the app's)."""
    return (f'<iframe title="Evaluation report" srcdoc="{html.escape(page, quote=True)}" '
            'style="width:100%;height:1400px;border:1px solid #ddd;border-radius:6px"></iframe>')


def optional_number(text: Any, kind: type, what: str) -> Any:
    """A field that may stay empty (None: the preset's value); ValueError naming the field otherwise."""
    if text is None or str(text).strip() == "":
        return None
    try:
        value = kind(float(str(text).strip()))
    except ValueError:
        raise ValueError(f"{what}: {str(text).strip()!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{what}: must be 0 or more, got {value}")
    return value


def overrides_of(engine: Engine, mode: str, preset: str, frames: Any, start: Any, lambdas: dict[str, Any],
                 groups: str, steps_first: Any, steps: Any) -> dict[str, Any]:
    """Dotted config keys from the page's fields (empty fields leave the preset's value); under the mode's own
    preset (``preset`` empty) the engine's settings tuned for the mode come first."""
    fields: dict[str, Any] = {
        "mode": mode, "max_frames": optional_number(frames, int, "frames"),
        "start": optional_number(start, int, "first driving frame"),
        "schedule.steps_first": optional_number(steps_first, int, "steps, first frame"),
        "schedule.steps": optional_number(steps, int, "steps, later frames"),
        "landmarks.groups": groups.strip() or None}
    fields.update({f"loss.{name}": optional_number(value, float, f"λ {name}") for name, value in lambdas.items()})
    tuned = {} if preset else engine.tuned.get(mode, {})
    return {**engine.overrides, **tuned, **{k: v for k, v in fields.items() if v is not None}}


class Studio:
    """The app's state (runs folder, networks on offer, the running job of each browser session) and handlers."""

    def __init__(self, runs: Path, shared: Path = SHARED) -> None:
        self.runs = Path(runs).resolve()
        self.shared = shared
        self.engines = engines(shared)
        self.looks, self.clips = samples(shared)
        self.jobs: dict[str, Job] = {}

    # ------------------------------------------------------------------------------------------ page text

    def networks_note(self) -> str:
        if not self.engines:
            return (f"**No networks available.** The offline DCGAN and face mesh were not found in "
                    f"`{self.shared / 'models'}` and no StyleGAN2 weights are in the cache (`{weights.cache_dir()}`); "
                    "add them with `stylepuppet weights import FILE` and restart the app.")
        if all(e.offline for e in self.engines):
            return ("**Offline networks:** the 64² DCGAN face generator (DigiFace) and MediaPipe's face mesh, both "
                    f"from `{self.shared / 'models'}`. No StyleGAN2 weights are in the cache "
                    f"(`{weights.cache_dir()}`): `stylepuppet weights import FILE` adds them, and the app offers "
                    "StyleGAN2 on its next start.")
        return "**Networks:** StyleGAN2 weights found in the cache; the offline DCGAN + face mesh stay available."

    def samples_note(self) -> str:
        if self.looks or self.clips:
            return ""
        return f"No bundled samples (`{self.shared / 'media'}` not found): upload your own files."

    # ------------------------------------------------------------------------------------------ handlers

    @staticmethod
    def verdicts(look: str | None, driving: str | None) -> list[tuple[bool, str]]:
        """(fine?, one line) for each upload given."""
        found = []
        for path, check, what in ((look, check_look, "look image"), (driving, check_driving, "driving clip")):
            if path is None:
                continue
            upload = Path(path)
            try:
                found.append((True, check(upload)))
            except StylePuppetError as exc:
                found.append((False, f"{what} {upload.name}: {_message(exc, upload, upload.name)}"))
        return found

    def check_uploads(self, look: str | None, driving: str | None) -> str:
        """The verdicts on the current uploads, one line each."""
        return "\n\n".join(("✓ " if fine else "**Error:** ") + line for fine, line in self.verdicts(look, driving))

    def _request(self, look: str | None, driving: str | None, mode: str, preset: str, engine_label: str,
                 overrides: dict[str, Any], evaluate: bool) -> RunRequest:
        if driving is None:
            raise ValueError("Upload a driving clip (or pick a sample) first.")
        if mode == "keep-identity" and look is None:
            raise ValueError("Keep-identity mode needs a look image: upload one (or pick a sample), "
                             "or choose free mode.")
        problems = [line for fine, line in self.verdicts(look if mode == "keep-identity" else None, driving)
                    if not fine]
        if problems:
            raise ValueError("; ".join(problems))
        engine = next(e for e in self.engines if e.label == engine_label)
        return RunRequest(Path(driving), Path(look) if mode == "keep-identity" and look else None, preset or None,
                          overrides_of(engine, mode, preset, **overrides), evaluate)

    async def run(self, look: str | None, driving: str | None, mode: str, preset: str, engine_label: str,
                  frames: Any, start: Any, lambda_look: Any, lambda_landmark: Any, lambda_smoothness: Any,
                  lambda_fidelity: Any, groups: str, steps_first: Any, steps: Any, evaluate: bool,
                  request: gr.Request, progress: gr.Progress = PROGRESS) -> AsyncIterator[tuple]:
        """Start (or resume) this tab's run and follow it to the end; every outcome is a message on the page,
        and the last run's outcome and results leave the page as this one starts."""
        yield ("Running…", *EMPTY)
        yield await self._follow(request.session_hash or "local", progress, look, driving, mode, preset,
                                 engine_label, evaluate, {
                                     "frames": frames, "start": start, "groups": groups or "",
                                     "steps_first": steps_first, "steps": steps,
                                     "lambdas": {"look": lambda_look, "landmark": lambda_landmark,
                                                 "smoothness": lambda_smoothness, "fidelity": lambda_fidelity}})

    async def _follow(self, session: str, progress: gr.Progress, look: str | None, driving: str | None, mode: str,
                      preset: str, engine_label: str, evaluate: bool, fields: dict[str, Any]) -> tuple:
        try:
            wanted = self._request(look, driving, mode, preset, engine_label, fields, evaluate)
            folder = session_folder(self.runs, session, wanted)
            job_request = prepare_folder(folder, wanted)
        except (ValueError, StylePuppetError, OSError) as exc:
            return (f"**Error:** {exc}", *EMPTY)
        job = Job(job_request, folder)
        self.jobs[session] = job
        outcome: tuple[str, Any] | None = None
        cautions: list[str] = []
        progress((0, None), desc="starting")
        job.start()
        try:
            while outcome is None:
                for kind, payload in job.messages():
                    if kind == "progress":
                        desc, done, total, unit, postfix = payload
                        progress((done, total), desc=f"{desc} {postfix}".strip(), unit=unit)
                    elif kind == "warning":
                        cautions.append(payload)
                        gr.Warning(payload)
                    else:
                        outcome = (kind, payload)
                if outcome is None and not job.alive:
                    outcome = next(((k, p) for k, p in job.messages() if k not in ("progress", "warning")),
                                   ("error", f"the run stopped without a result; see {folder / 'ui.log'}"))
                await asyncio.sleep(POLL)
        finally:
            job.cancel()
            self.jobs.pop(session, None)
        command = resume_command(folder, job_request)
        notes = "".join(f"\n\n**Warning:** {text}" for text in cautions)
        if outcome[0] == "error":
            return (f"**Error:** {outcome[1]}{notes}\n\nRun folder: `{folder}` (resume from a terminal: `{command}`)",
                    *EMPTY)
        return self._results(folder, outcome[1], command, notes)

    def _results(self, folder: Path, done: dict[str, Any], command: str, notes: str) -> tuple:
        lines = "\n".join(f"- {line}" for line in done["lines"])
        status = (f"**Done.** {done['summary']}{notes}\n\n{lines}\n\nRun folder: `{folder}` — to resume or "
                  f"re-render from a terminal: `{command}`")
        report = folder / REPORT_HTML
        files = [str(folder / name) for name in DOWNLOADS if (folder / name).is_file()]
        return (status, str(folder / ANIMATION), str(folder / SIDE_BY_SIDE),
                report_frame(report.read_text(encoding="utf-8")) if report.is_file() else "", files)

    def cancel(self, request: gr.Request) -> str:
        """End this tab's run; its folder keeps every finished frame."""
        job = self.jobs.pop(request.session_hash or "local", None)
        if job is None:
            return "Nothing is running in this tab."
        job.cancel()
        return (f"**Cancelled.** `{job.folder}` keeps the frames finished so far: press Run with the same inputs and "
                f"settings to resume, or from a terminal: `{resume_command(job.folder, job.request)}`")

    def closed(self, request: gr.Request) -> None:
        """A closed tab stops its run (resumable later, as after Cancel)."""
        job = self.jobs.pop(request.session_hash or "local", None)
        if job is not None:
            job.cancel()

    # ------------------------------------------------------------------------------------------ layout

    def build(self) -> gr.Blocks:
        """The page."""
        default_engine = self.engines[0].label if self.engines else None
        with gr.Blocks(title="stylepuppet", analytics_enabled=False) as page:
            gr.Markdown("# stylepuppet\nA generated face performs the facial motion of a driving clip "
                        "(no network is trained: each frame is searched for in the generator's latent space).")
            gr.Markdown(self.networks_note(), elem_id="networks-note")
            with gr.Row():
                with gr.Column():
                    look = gr.File(label="Look image (keep-identity: the face to keep)", elem_id="look")
                    look_sample = gr.Dropdown([p.name for p in self.looks], value=None, label="…or a sample look",
                                              visible=bool(self.looks))
                with gr.Column():
                    driving = gr.File(label="Driving clip", elem_id="driving")
                    clip_sample = gr.Dropdown([p.name for p in self.clips], value=None, label="…or a sample clip",
                                              visible=bool(self.clips))
            gr.Markdown(self.samples_note())
            checked = gr.Markdown(elem_id="input-status")
            with gr.Row():
                mode = gr.Radio(list(MODES), value="keep-identity", label="Mode",
                                info="free: no look image, the generator's own face")
                preset = gr.Dropdown([("the mode's own", ""), *[(p, p) for p in PRESETS]], value="", label="Preset",
                                     info="the mode's own: its preset with the settings measured for the networks")
                engine = gr.Dropdown([e.label for e in self.engines], value=default_engine, label="Networks")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    frames = gr.Number(DEFAULT_FRAMES, precision=0, minimum=1, label="Frames (at most)",
                                       elem_id="frames")
                    start = gr.Number(0, precision=0, minimum=0, label="First driving frame")
                    steps_first = gr.Textbox(label="Steps, first frame", placeholder="the preset's",
                                             elem_id="steps-first")
                    steps = gr.Textbox(label="Steps, later frames", placeholder="the preset's", elem_id="steps")
                with gr.Row():
                    lambdas = [gr.Textbox(label=f"λ {name}", placeholder="the preset's", elem_id=f"lambda-{name}")
                               for name in ("look", "landmark", "smoothness", "fidelity")]
                groups = gr.Textbox(label="Landmark group weights", placeholder="e.g. mouth=5,eyes=0",
                                    info="jaw, eyebrows, nose, eyes, mouth (or lips), over the preset's")
                evaluate = gr.Checkbox(True, label="Judge the result (dlib; FaceNet when installed), write the report")
            with gr.Row():
                run_button = gr.Button("Run", variant="primary", elem_id="run", interactive=bool(self.engines))
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
            status = gr.Markdown(elem_id="status")
            with gr.Row():
                animation = gr.Video(label="Animation", elem_id="animation", interactive=False, scale=1)
                # its own caption strip names its panels, where the label would cover the first one; two or
                # three panels wide, it gets twice the animation's width
                side = gr.Video(label="Side by side", show_label=False, elem_id="side-by-side", interactive=False,
                                scale=2)
            report = gr.HTML(elem_id="report")
            downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")

            for upload in (look, driving):
                upload.change(self.check_uploads, [look, driving], checked)
            look_sample.change(self._sample(self.looks), look_sample, look)
            clip_sample.change(self._sample(self.clips), clip_sample, driving)
            started = run_button.click(
                self.run, [look, driving, mode, preset, engine, frames, start, *lambdas, groups, steps_first, steps,
                           evaluate], [status, animation, side, report, downloads], concurrency_limit=2)
            cancel_button.click(self.cancel, None, status, cancels=[started])
            page.unload(self.closed)
        return page

    @staticmethod
    def _sample(files: list[Path]):
        by_name = {p.name: str(p) for p in files}
        return lambda name: by_name.get(name)


def launch(host: str = "127.0.0.1", port: int = 7860, runs: Path = Path("stylepuppet-runs"),
           shared: Path = SHARED) -> None:
    """Serve the app on ``host:port`` until interrupted."""
    studio = Studio(runs, shared)
    studio.runs.mkdir(parents=True, exist_ok=True)
    page = studio.build()
    page.queue()
    page.launch(server_name=host, server_port=port, show_error=False, footer_links=[],
                allowed_paths=[str(studio.runs), str(shared / "media")])
