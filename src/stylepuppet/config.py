"""Settings of an animation run: frozen dataclasses, the presets, and TOML / CLI resolution.

A run is fully described by one :class:`AnimateConfig`. It is built in three layers, later ones
winning: a preset (``seed``, ``fast``, ``keep-identity``, ``free``, ``free-fast``, ``quick``), then a TOML file, then
command-line flags. Every key is checked when it is set; an unknown key or a bad value raises a
one-line :class:`~stylepuppet.errors.ConfigError` naming the key (``schedule.steps``, ...). The
resolved config is saved beside the results (``OUT/config.json``) and fingerprints a run for resume.

TOML layout (every table and key optional)::

    preset = "keep-identity"
    mode = "keep-identity"          # or "free"
    space = "w+"                    # or "w"
    network = "stylegan2-ffhq-256"  # registry name or file path
    [loss]                          # the λs
    look = 1.0
    landmark = 300.0
    [landmarks]
    net = "fan"
    form = "relative"
    groups = "mouth=5,eyes=1"       # or a table: groups = { mouth = 5, eyes = 1 }
    [schedule]
    steps_first = 300
    steps = 50
    [track]
    smooth = 1.5
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stylepuppet import weights
from stylepuppet.errors import ConfigError
from stylepuppet.landmarks.scheme import GROUPS, SEED_GROUP_WEIGHTS, parse_group_weights

Mode = Literal["keep-identity", "free"]
Space = Literal["w", "w+"]
LandmarkNetName = Literal["fan", "mesh"]
LandmarkForm = Literal["heatmap", "relative"]
Compare = Literal["coords", "heatmaps"]
LookLoss = Literal["lpips", "msssim"]
Device = Literal["cpu", "cuda"]
UntrainedSize = Literal["tiny", "full"]
Detector = Literal["dlib", "fan"]
PasteInto = Literal["look", "driving"]

PRESETS = ("seed", "fast", "keep-identity", "free", "free-fast", "quick")
#: Keep-identity on the 64² DigiFace DCGAN with the face mesh, over the keep-identity preset (measured on real faces,
#: docs/keep-identity.md; the CI proof's settings): a landmark weight at which the mouth moves against the look
#: term's pull (the preset's 300 kept it shut), the look projected from the best of 64 random faces, 30 steps a
#: frame with one jittered framing, and a pull to the look's latent of 1 (the preset's 0.05 let the latent walk
#: 12–14 from it; 2 held the identity a little better and lost d3's mouth on two looks).
DCGAN_KEEP_IDENTITY: dict[str, object] = {"loss.landmark": 1500.0, "loss.fidelity": 1.0, "start_candidates": 64,
                                          "schedule.steps_first": 150, "schedule.steps": 30,
                                          "landmarks.jitter_count": 1}
#: Seeds are numpy RandomState seeds (NVIDIA's choice for z), which take [0, 2**32).
MAX_SEED = 2**32 - 1


def _spec(default: Any = dataclasses.MISSING, *, lo: float | None = None, hi: float | None = None,
          above: float | None = None, flag: str | None = None, help: str = "", **kwargs: Any) -> Any:
    """A setting: a dataclass field with numeric bounds checked by :func:`_check_value` (lo <= x <= hi,
    x > above) and, for settings the command line offers, its flag (``--flag``) and help text."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "above": above, "flag": flag, "help": help},
                 **kwargs)


@dataclass(frozen=True)
class LossWeights:
    """The λs of the objective ``λ1·look + λ2·landmark + λ3·smoothness + λ4·fidelity + λ5·identity (+ noise reg.)``.

    Where the numbers come from: the original method used LPIPS 1, landmark 0.1 (on its heat-map
    loss), fidelity 0.05, smoothness 0.05; ``noise`` is NVIDIA's projector's noise regularisation
    weight 1e5 (applied while the noise buffers are optimised: on the look's projection, or on frame 0).
    ``identity`` weighs the face-descriptor distance of G(w) to the reference face (the look in
    keep-identity mode, the start face in free mode; :class:`~stylepuppet.optim.objective.IdentityObjective`).
    """

    look: float = _spec(1.0, lo=0, flag="lambda-look", help="λ1: look (LPIPS / MS-SSIM) weight.")
    landmark: float = _spec(0.1, lo=0, flag="lambda-landmark", help="λ2: landmark weight.")
    smoothness: float = _spec(0.05, lo=0, flag="lambda-smoothness", help="λ3: ‖w_i − w_{i−1}‖ weight.")
    fidelity: float = _spec(0.05, lo=0, flag="lambda-fidelity",
                            help="λ4: each frame's pull to its anchor latent (the look's projection, the start face, "
                                 "or the mean).")
    noise: float = _spec(1e5, lo=0, flag="lambda-noise", help="Noise regularisation weight (frame 0).")
    identity: float = _spec(0.0, lo=0, flag="lambda-identity",
                            help="λ5: identity weight (face-descriptor distance to the look, or to the start face).")


@dataclass(frozen=True)
class LandmarkConfig:
    """How the landmark loss is formed.

    ``form``:
      * ``heatmap`` — the original method: per-frame targets are the landmark net's heat maps of
        the aligned driving frame; G(w) is framed the same way and the group-weighted heat-map
        difference is penalised (FAN only: the mesh gives no heat maps).
      * ``relative`` — the targets are a base face's landmarks moved by the driver's motion
        (``base + s·(driving_t − driving_ref)``); the base is the look's landmarks as the generator
        draws them (its projection's) in keep-identity mode and those of the first frame's starting
        image in free mode, so the face keeps its own shape. ``compare`` is ``coords`` (G(w)'s landmarks
        by soft-argmax / the net's differentiable points, distance normalised by face size) or ``heatmaps``
        (target heat maps rendered at the target points; FAN only).
    ``jitter_*``: the landmark loss is averaged over ``jitter_count`` random framings per step
    (centre moved by up to ±shift·side, side scaled by up to ±scale), applied identically to
    the target and G(w), because a single framing is easy to fool. 0 uses the plain framing.
    ``jitter_flip``: every second jittered framing reads G(w)'s face mirrored (a left-right flip,
    points mapped back through the net's mirror pairs; relative form only). What G paints to satisfy
    the net at a few framings is not always a face: on d3 the mesh read the outputs of three free
    runs at the plain framing as following their targets (0.60–0.96) and mirrored as not (−0.50 to
    −0.01), and dlib agreed with the mirrored reading (correlations −0.36 to 0.08).
    ``reference``: driving frame whose landmarks are the motion's zero (None: chosen automatically).
    ``strength``: the relative form copies the driver's change times this (below 1 tones expressions
    down, for generators that cannot make them as wide as the driver). At 1.5 (free mode, the DCGAN) four of seven
    clips followed the driver better and three worse, and nothing but the judge told which (docs/motion.md).
    ``rest``: weight of the net's points outside the named groups. FAN has none; the mesh has ~300
    (cheeks, forehead, around the eyes) that hold the whole face surface in place. With only the
    named groups weighted, a 64² DCGAN face followed d0's wide-open mouth by painting a dark blob
    that the mesh read as an open mouth and dlib did not (correlation −0.09); with ``rest = 1`` the
    same start and settings reached 0.83.
    ``gamma``: the net reads the generator's faces with their pixel values (in [0, 1]) raised to this power.
    Above 1 it darkens the shadow between parted lips more than the lips. On the 64² DigiFace DCGAN the mesh
    read a small opening the face had drawn as a shut mouth (below its reading of the shut mouth, where dlib
    and the eye saw the lips part), so the optimiser opened the mouth until it gaped (docs/motion.md,
    session 13). The driver's frames are read as they are, and free mode's start faces compete as drawn; a
    look's points (keep-identity) are read at the gamma, as the loss reads G's faces.
    No preset sets it: at 2 it lifted d11 from 0.50 to 0.65 and d12 from 0.31 to 0.38, but it took d13
    (0.704 → 0.696) and d3 at seed 1 (0.73 → 0.69) under issue 13's 0.7; at 1.5 d13 fell to 0.68. In
    keep-identity mode (look 0) it lifted d12, d13 and d20 and cost d3 (0.69 → 0.44) and d18 (docs/motion.md).
    """

    net: LandmarkNetName = _spec("fan", flag="landmark-net", help="Landmark network of the loss.")
    weights: str | None = _spec(None, flag="landmark-weights", help="Landmark network weights: registry name or file.")
    form: LandmarkForm = _spec("relative", flag="form", help="Landmark loss form.")
    compare: Compare = _spec("coords", flag="compare", help="How the relative form compares.")
    groups: dict[str, float] = _spec(default_factory=lambda: dict.fromkeys(GROUPS, 1.0), flag="groups",
                                     help="Landmark group weights, e.g. mouth=5,eyes=0 (applied over the preset's).")
    jitter_count: int = _spec(2, lo=0, hi=16, flag="jitter",
                              help="Random framings per step for the landmark loss (0: none).")
    jitter_shift: float = _spec(0.03, lo=0, hi=0.5)
    jitter_scale: float = _spec(0.05, lo=0, hi=0.5)
    jitter_flip: bool = False
    reference: int | None = _spec(None, lo=0, flag="reference",
                                  help="Driving frame (in the run) whose landmarks are the motion's zero.")
    rest: float = _spec(1.0, lo=0)
    strength: float = _spec(1.0, lo=0, hi=4)
    gamma: float = _spec(1.0, above=0, hi=4)


@dataclass(frozen=True)
class Schedule:
    """Steps and learning-rate / exploration-noise schedule of each frame's optimisation.

    Defaults are NVIDIA's StyleGAN2-ADA projector: Adam at lr 0.1 with a linear ramp-up over the
    first 5% of steps and a cosine ramp-down over the last 25%; w-noise of 0.05·w_std fading to
    zero over the first 75% of steps with a squared fade. Each frame runs this schedule over its
    own step count: ``steps_first`` for frame 0 (which starts at the mean latent and also optimises
    the noise buffers), ``steps`` for later frames (which start from the previous frame's latent).
    The original method used 300 / 50.

    Speed (all off in the ``seed`` preset, which stays the original method):

    * ``predict``: a later frame starts from the linear prediction ``w_{i−1} + (w_{i−1} − w_{i−2})``
      (kept on the prior's support), which on smooth motion is already near the answer.
    * ``carry_moments``: each frame's Adam starts with the moments (and step count) the previous frame's
      Adam ended with, instead of afresh. A fresh Adam's first bias-corrected steps move every coordinate
      by about the learning rate whatever the gradient, which throws a frame that starts near its answer off.
    * ``optimizer = "lbfgs"``: later frames take quasi-Newton steps (:mod:`stylepuppet.optim.lbfgs`) with
      the curvature learnt on the frames before, and ``steps`` counts evaluations (one forward + backward
      each, an Adam step's cost). Each frame's framing jitter is drawn once, so its objective is
      deterministic, as a line search needs. Frame 0 stays Adam (it also optimises the noise), and the
      learning rate, w-noise, early stopping and ``carry_moments`` are Adam's (frame 0's only, here).
    * ``early_stop_tol`` > 0: a later frame stops once its loss has stopped improving: every
      ``early_stop_every`` steps (the only time the loop reads a value back from the device), from
      ``early_stop_min`` steps on, the mean loss of the last ``early_stop_every`` steps is compared
      with that of the ``early_stop_every`` before; a relative drop below the tolerance ends the frame.
    * ``cuda_*`` (untested: no GPU was at hand; ignored on the CPU, so CPU results never change):
      ``cuda_autocast = "bf16"`` runs the networks under bf16 autocast while latents, noise and Adam
      stay fp32 (fp16 is not offered: it needs loss scaling, whose overflow check reads back every
      step); ``cuda_channels_last`` stores the networks' weights channels-last; ``cuda_compile``
      compiles each step's loss with ``torch.compile``.
    """

    steps_first: int = _spec(300, lo=1, flag="steps-first", help="Optimisation steps of the first frame.")
    steps: int = _spec(50, lo=1, flag="steps", help="Optimisation steps of every later frame.")
    lr: float = _spec(0.1, above=0, flag="lr", help="Peak Adam learning rate.")
    lr_rampup: float = _spec(0.05, lo=0, hi=1)
    lr_rampdown: float = _spec(0.25, lo=0, hi=1)
    w_noise: float = _spec(0.05, lo=0)
    w_noise_ramp: float = _spec(0.75, above=0, hi=1)
    predict: bool = False
    carry_moments: bool = False
    optimizer: Literal["adam", "lbfgs"] = "adam"
    early_stop_tol: float = _spec(0.0, lo=0, hi=1)
    early_stop_min: int = _spec(10, lo=2)
    early_stop_every: int = _spec(5, lo=1)
    cuda_autocast: Literal["off", "bf16"] = "off"
    cuda_channels_last: bool = False
    cuda_compile: bool = False


@dataclass(frozen=True)
class TrackConfig:
    """Face tracking of the driving video: detector backend and temporal smoothing.

    ``smooth`` is the Gaussian-over-time strength in frames for the landmark track and alignment
    quads, and for the landmark-net points that drive relative motion; 0 crops every frame on its
    own from its raw landmarks, as the original method did.
    """

    detector: Detector = _spec("dlib", flag="detector", help="Face detector of the track and the look.")
    smooth: float = _spec(1.5, lo=0, flag="smooth", help="Temporal smoothing of the face track in frames (0: none).")


@dataclass(frozen=True)
class AnimateConfig:
    """Everything that decides the result of ``stylepuppet animate`` (see the module docstring).

    ``start_candidates``: in free mode frame 0 starts from the best of this many random latents, the
    face whose neutral shape is nearest the driver's reference frame (:mod:`stylepuppet.animation.start_face`;
    the same candidates whatever ``seed``, so the face depends on the driver alone), and the fidelity term
    pulls towards it; in keep-identity mode the look's projection starts from the
    candidate nearest the look (look and identity terms; :mod:`stylepuppet.animation.look`). 0 starts from
    the generator's mean latent.
    ``start_rehearsal`` (free mode, with candidates): this many of the best candidates each rehearse
    the driver's most expressive frame (as many steps as a later frame gets, or ``start_rehearsal_steps``),
    and the one that covers the largest share of its way there starts the run; 0 or 1: the best candidate
    starts, unrehearsed. ``start_rehearsal_steps`` keeps the choice of face apart from the frames' schedule:
    a faster schedule need not choose another face (on d0, rehearsals of 15 steps chose another face than
    rehearsals of 40).
    ``start_presence`` (free mode, with candidates): of the steadily read candidates, only the half the
    landmark net is surest shows a face compete (its face-presence logit; nets without one, FAN: no
    screen). ``start_rehearse_lips``: the rehearsal covers the driver's widest-open mouth as well as its
    most expressive frame, and is scored on the lips' landmark loss alone (issue 13).

    ``latent_smooth``: σ, in driving frames, of a Gaussian filter over time applied to the optimised
    latents before they are rendered (0: none). Each frame's few steps leave it a little off its
    neighbours; the filter takes that frame-to-frame wobble out. Its gain on a motion with a period
    of P frames is exp(−2π²σ²/P²): at σ = 1, 0.95 for P = 20 and 0.58 for P = 6 (fast speech at
    25 fps), so keep it at or below 1 for talking clips. It only changes the rendering: a finished
    run given another value resumes at its end and renders again.

    ``show_points``: side_by_side.mp4 gains a panel, the output with the landmark targets it was
    optimised towards drawn on it (the output panel itself stays clean). Rendering only, like ``subframes``.

    ``paste_back``: also write ``animation_full.mp4`` (and ``side_by_side_full.mp4``): the animated face
    pasted back into the whole picture, ``paste_into`` the look image (keep-identity's default) or the
    driving video's frames (free mode's only picture). Like the latent filter it only changes the rendering.
    """

    preset: str = "keep-identity"
    mode: Mode = _spec("keep-identity", flag="mode", help="keep-identity (needs --look) or free.")
    space: Space = _spec("w+", flag="space", help="Search space: one latent (w) or one per layer (w+).")
    network: str = _spec(weights.DEFAULT_GENERATOR, flag="network",
                         help="Generator: registry name or file (StyleGAN2 pickle/.pt/safetensors, DCGAN .pt).")
    look_loss: LookLoss = _spec("lpips", flag="look-loss",
                                help="LPIPS-VGG, or the weights-free MS-SSIM + L1 (offline choice).")
    look_weights: str | None = _spec(None, flag="look-weights", help="LPIPS weights: registry name or file.")
    identity_net: str = _spec(weights.DEFAULTS["identity"], flag="identity-net",
                              help="Face-recognition network of the identity term: registry name or dlib .dat file.")
    subframes: int = _spec(2, lo=1, hi=16, flag="subframes",
                           help="Frames rendered per driving frame (k; 1 disables interpolation).")
    latent_smooth: float = _spec(0.0, lo=0, hi=8, flag="latent-smooth",
                                 help="σ in frames of a temporal Gaussian on the latents before rendering (0: none).")
    show_points: bool = _spec(False, flag="show-points",
                              help="side_by_side.mp4: add a panel of the output with its target landmarks.")
    paste_back: bool = _spec(False, flag="paste-back",
                             help="Also write animation_full.mp4: the animated face put back into the whole picture.")
    paste_into: PasteInto | None = _spec(None, flag="paste-into",
                                         help="Picture of --paste-back: look (the look image, keep-identity's default) "
                                              "or driving (the driving video's frames).")
    start_candidates: int = _spec(0, lo=0, hi=4096, flag="start-candidates",
                                  help="Start from the best of N random faces: nearest the driver's neutral face "
                                       "(free) or the look (its projection); 0: the generator's mean face.")
    start_rehearsal: int = _spec(0, lo=0, hi=64, flag="start-rehearsal",
                                 help="Free mode: the best N start faces rehearse the driver's most expressive frame; "
                                      "the one that follows furthest starts (0 or 1: no rehearsal).")
    start_rehearsal_steps: int | None = _spec(None, lo=1)
    start_presence: bool = False
    start_rehearse_lips: bool = False
    seed: int = _spec(0, lo=0, hi=MAX_SEED, flag="seed",
                      help="Random seed (runs are deterministic on CPU); free mode's start face does not depend on it.")
    device: Device = _spec("cpu", flag="device", help="Device the networks run on.")
    start: int = _spec(0, lo=0, flag="start", help="First driving frame.")
    end: int | None = _spec(None, lo=1, flag="end", help="Driving frame to stop before.")
    max_frames: int | None = _spec(None, lo=1, flag="max-frames", help="Use at most N driving frames.")
    untrained: bool = _spec(False, flag="untrained",
                            help="Substitute random networks for missing weights (output stamped UNTRAINED).")
    untrained_size: UntrainedSize = _spec("tiny", flag="untrained-size", help="Size of substituted networks.")
    loss: LossWeights = field(default_factory=LossWeights)
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    schedule: Schedule = field(default_factory=Schedule)
    track: TrackConfig = field(default_factory=TrackConfig)

    def __post_init__(self) -> None:
        _check_dataclass(self, "")
        lm = self.landmarks
        if lm.net == "mesh" and (lm.form == "heatmap" or lm.compare == "heatmaps"):
            key = "landmarks.form" if lm.form == "heatmap" else "landmarks.compare"
            raise ConfigError(f"{key}: the mesh landmark net gives no heat maps; use form = 'relative' with "
                              "compare = 'coords', or net = 'fan'")
        if self.end is not None and self.end <= self.start:
            raise ConfigError(f"end: must be greater than start ({self.start}), got {self.end}")
        steering = {"landmark": self.loss.landmark, "fidelity": self.loss.fidelity}
        if self.mode == "keep-identity":
            steering["look"] = self.loss.look
        if not any(steering.values()):
            names = ", ".join(f"loss.{name}" for name in steering)
            raise ConfigError(f"{names} are all 0: nothing steers the first frame, so there is nothing to optimise; "
                              "set --lambda-landmark above 0")
        if self.schedule.optimizer == "lbfgs" and self.schedule.carry_moments:
            raise ConfigError("schedule.carry_moments: Adam's moments are carried only between Adam frames, and with "
                              "schedule.optimizer = 'lbfgs' only frame 0 is one (L-BFGS carries its own curvature); "
                              "turn one of them off")
        if self.paste_into is not None and not self.paste_back:
            raise ConfigError(f"paste_into: {self.paste_into!r} is the picture of paste-back; turn it on too "
                              "(--paste-back)")
        if self.paste_back and self.mode == "free" and self.paste_into != "driving":
            raise ConfigError("paste_back: free mode has no look image to paste into; paste into the driving video "
                              "with --paste-into driving")

    @property
    def picture(self) -> PasteInto | None:
        """Where paste-back puts the animated face (None: no paste-back): the look image unless told otherwise."""
        return (self.paste_into or "look") if self.paste_back else None

    @property
    def frame_count_limit(self) -> int | None:
        """How many driving frames from ``start`` the run may use (None: to the end of the video)."""
        limits = [n for n in (self.max_frames, None if self.end is None else self.end - self.start) if n is not None]
        return min(limits) if limits else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able nested dict (sections as sub-dicts), the inverse of :func:`config_from_dict`."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SECTIONS: dict[str, type] = {"loss": LossWeights, "landmarks": LandmarkConfig, "schedule": Schedule,
                             "track": TrackConfig}


def settings() -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """Every setting as (dotted key, dataclass field, type), in the config's order with the sections in place."""
    hints = typing.get_type_hints(AnimateConfig)
    for f in dataclasses.fields(AnimateConfig):
        if f.name in SECTIONS:
            section = SECTIONS[f.name]
            inner = typing.get_type_hints(section)
            for g in dataclasses.fields(section):
                yield f"{f.name}.{g.name}", g, inner[g.name]
        else:
            yield f.name, f, hints[f.name]


# ---------------------------------------------------------------------------------------------- checking


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " or ".join("none" if a is type(None) else _describe(a) for a in args)
    if tp == dict[str, float]:
        return "group weights such as 'mouth=5,eyes=0'"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it normalised (ints to float where asked)."""
    bad = ConfigError(f"{key}: must be {_describe(tp)}, got {value!r}")
    if typing.get_origin(tp) is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and type(None) in typing.get_args(tp):
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(key, inner[0], value) if len(inner) == 1 else value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise bad
        return value
    if tp == dict[str, float]:
        if not isinstance(value, Mapping) or set(value) != set(GROUPS):
            raise bad
        return {g: float(value[g]) for g in GROUPS}
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _check_value(key: str, f: dataclasses.Field, value: Any) -> None:
    if value is None or isinstance(value, (bool, str, dict)):
        return
    lo, hi, above = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("above")
    if lo is not None and value < lo:
        raise ConfigError(f"{key}: must be >= {_number(lo)}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: must be <= {_number(hi)}, got {value!r}")
    if above is not None and not value > above:
        raise ConfigError(f"{key}: must be > {_number(above)}, got {value!r}")


def _number(bound: float) -> str:
    """A bound for a message: integers in full (a seed's 4294967295), other numbers short."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _check_dataclass(obj: Any, prefix: str) -> None:
    """Type- and range-check every field of a config dataclass (nested sections included)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        key = prefix + f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            if not isinstance(value, hints[f.name]):
                raise ConfigError(f"{key}: must be a table of settings, got {value!r}")
            _check_dataclass(value, key + ".")
            continue
        normalised = _coerce(key, hints[f.name], value)
        if normalised is not value:
            object.__setattr__(obj, f.name, normalised)
        _check_value(key, f, normalised)


# ---------------------------------------------------------------------------------------------- presets


def preset(name: str) -> AnimateConfig:
    """The named preset's config (ConfigError for an unknown name); see the README's table."""
    if name == "seed":
        # The original method: W+, its λs and group weights, FAN heat-map loss on per-frame targets,
        # each driving frame cropped on its own (no smoothing), 300 / 50 steps, no framing jitter.
        return AnimateConfig(
            preset="seed", mode="keep-identity", space="w+",
            loss=LossWeights(look=1.0, landmark=0.1, smoothness=0.05, fidelity=0.05),
            landmarks=LandmarkConfig(net="fan", form="heatmap", groups=dict(SEED_GROUP_WEIGHTS), jitter_count=0),
            schedule=Schedule(steps_first=300, steps=50),
            track=TrackConfig(smooth=0.0),
        )
    if name == "fast":
        # The seed's objective with a faster schedule and the latent filter (benchmarks/bench_convergence.py, at equal
        # or lower landmark loss and output jitter: 7.1x on 48 frames, 5.6x on 24; docs/performance.md). Frame 0 runs
        # 150 Adam steps at 0.03 without w-noise (100 steps, or lr 0.1, missed the seed's loss). Later frames start from
        # the linear prediction and take L-BFGS steps, 5 forward + backward passes, with the curvature carried from
        # frame to frame: a fresh optimiser per frame (Adam or L-BFGS) spends its first steps finding the scale. The
        # objective has no framing jitter or w-noise, so each frame's is deterministic, as the line search needs. Few
        # passes leave each frame its own error; the filter (sigma 1) averages it out.
        seed = preset("seed")
        return dataclasses.replace(seed, preset=name, latent_smooth=1.0,
                                   schedule=Schedule(steps_first=150, steps=5, lr=0.03, w_noise=0.0, predict=True,
                                                     optimizer="lbfgs"))
    # Our presets use the relative coordinate loss. Its λ is set so that a one-heat-map-pixel error
    # (1/64 of the face crop) costs about what it costs in the original's heat-map loss with λ 0.1
    # (≈ 5 per point-group sum): 5 / (1/64) ≈ 300. Smoothed track, framing jitter.
    ours = LandmarkConfig(net="fan", form="relative", compare="coords", groups=dict(SEED_GROUP_WEIGHTS),
                          jitter_count=2)
    # Keep-identity adds the identity term (dlib's face descriptor of G(w) against the look's) and the latent
    # filter at sigma 0.75: on the one real generator at hand (the DCGAN with the mesh, docs/keep-identity.md) the
    # term kept the face the look's person where the run without it drifted past dlib's same-person distance, and
    # the filter cut the output's landmark jitter by 40 % at no loss of mouth correlation. At 256² with FAN and
    # LPIPS the descriptor's forward + backward is 0.5 % of a step (benchmarks/bench_step.py: 0.05 s of 10 s).
    keep = LossWeights(look=1.0, landmark=300.0, smoothness=0.05, fidelity=0.05, identity=1.0)
    if name == "keep-identity":
        return AnimateConfig(preset=name, mode="keep-identity", space="w+", latent_smooth=0.75, loss=keep,
                             landmarks=ours)
    if name in ("free", "free-fast"):
        # No look image. Tuned on the one real generator / landmark-net pair at hand (the 64² DigiFace
        # DCGAN with the mesh, judged by dlib; see the README's proof section), and untested
        # on StyleGAN2: W space (one vector for all layers) keeps the face on the generator's manifold;
        # the start is the best of many random faces, and the fidelity term (0.9, not 0.05) pulls every
        # frame back to it — at 0.05 the face wandered off (dlib's identity distance ~0.55) into
        # regions where the mesh read open mouths that dlib did not see; at 0.5 d0 collapsed (0.27),
        # 0.7 left 44% of d0's frames past dlib's same-person distance, 0.9 none (d0 0.76 -> 0.82, d3
        # 0.68 -> 0.65), at 2 the face no longer moved. Small, noise-free steps (lr 0.03, no w-noise)
        # and four wider framings per step (±6%, ±10%) for the same reason. 40 steps per later frame,
        # not 20: dlib's correlation +0.05 to +0.09 on d0 and d3 at twice the time (60: no better).
        # The latent filter (σ 0.5) cuts the output's landmark jitter by 10–20% and left the
        # correlation as it was (σ 1: −35–40% jitter, but d0's correlation fell by up to 0.1 in one
        # of three runs). The start face decides most runs: of the steady candidates only those with bare
        # skin round the mouth compete, the best 8 rehearse the driver's most expressive frame, and every
        # second framing is mirrored; d3 seeds 0/1/2 went 0.65/-/- -> 0.86/0.76/0.64, d0 -0.27/0.32/0.82
        # -> -0.22/0.94/0.80; the rehearsal adds 8 x 40 steps.
        base = AnimateConfig(preset=name, mode="free", space="w", start_candidates=256, start_rehearsal=8,
                             latent_smooth=0.5,
                             loss=LossWeights(look=0.0, landmark=300.0, smoothness=0.05, fidelity=0.9),
                             landmarks=dataclasses.replace(ours, jitter_count=4, jitter_shift=0.06,
                                                           jitter_scale=0.1, jitter_flip=True),
                             schedule=Schedule(steps_first=100, steps=40, lr=0.03, w_noise=0.0))
        if name == "free-fast":
            # The objective and start face above (free's until issue 13; not remeasured with free's later pieces)
            # on later frames about 2.5 times shorter (benchmarks/bench_real_convergence.py, issue 16). Later
            # frames run 15 steps, not 40, and start from the linear prediction of the last two (15 steps without
            # it: dlib's correlation on d3 0.86 against the prediction's 0.92). The start face is rehearsed with
            # 40 steps (at 15 it chose the same face on d3 but another on d0). Fewer steps leave each frame more
            # of its own error: the output's landmark jitter rose 16–43 % (20 steps did not bring it down), so the
            # latent filter is σ 0.75, not 0.5, which took it below. Tried and dropped on d3's first 40 frames:
            # carrying Adam's moments across frames (correlation 0.80, jitter +43 %), two jittered framings
            # instead of four (a step 28 % cheaper, but correlation −0.04 and jitter +29 % at 20 steps).
            # Measured against the 40-step schedule (same start face, frames' wall time; docs/performance.md): d3
            # 80 frames 2.83× (CPU 2.59×), dlib 0.851 vs 0.812, jitter 0.0125 vs 0.0155; d3 40 frames 2.50×,
            # 0.928 vs 0.830, 0.0120 vs 0.0132; d0 40 frames 2.60×, 0.690 vs −0.294, 0.0096 vs 0.0098 (both under
            # d0's random walks); d0 seed 1, 40 frames: 2.49×, 0.937 vs 0.974, 0.0092 vs 0.0103.
            return dataclasses.replace(base, latent_smooth=0.75, start_rehearsal_steps=base.schedule.steps,
                                       schedule=dataclasses.replace(base.schedule, steps=15, predict=True))
        # Issue 13 (docs/motion.md, judged on all seven clips at seed 0 and d0, d3 at seeds 1, 2): 512 candidates,
        # the presence screen and the lips' rehearsal choose a face that dlib sees and that opens its mouth,
        # Adam's moments carry from frame to frame, and the identity term holds the start face's person.
        # Against the pieces above alone, seed 0: d0 -0.22 -> 0.96, d13 0.31 -> 0.70, d18 0.54 -> 0.79,
        # d20 0.13 -> 0.65, d11's frames without a face 40 -> 0 (its correlation 0.78 -> 0.51), d3 0.86 -> 0.83,
        # d12 0.17 -> 0.13; the mouth's amplitude at least half the driver's on 6 of 7 clips (was 1 of the 5 measured).
        return dataclasses.replace(base, start_candidates=512, start_presence=True, start_rehearse_lips=True,
                                   loss=dataclasses.replace(base.loss, identity=1.0),
                                   schedule=dataclasses.replace(base.schedule, carry_moments=True))
    if name == "quick":
        # Previews: the keep-identity recipe with about a sixth of the steps and one jittered framing.
        return AnimateConfig(preset=name, mode="keep-identity", space="w+", latent_smooth=0.75, loss=keep,
                             landmarks=dataclasses.replace(ours, jitter_count=1),
                             schedule=Schedule(steps_first=50, steps=8))
    raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")


# ---------------------------------------------------------------------------------------------- layering


def flatten_settings(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Nested TOML/JSON tables of settings -> dotted keys, rejecting unknown sections and keys (named with
    ``source``, e.g. the file)."""
    top = {f.name for f in dataclasses.fields(AnimateConfig)} - set(SECTIONS)
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}: must be a table of settings in {source}, got {value!r}")
            names = {f.name for f in dataclasses.fields(SECTIONS[key])}
            for sub, v in value.items():
                if sub not in names:
                    raise ConfigError(f"unknown config key '{key}.{sub}' in {source}; valid keys in [{key}]: "
                                      f"{', '.join(sorted(names))}")
                out[f"{key}.{sub}"] = v
        elif key in top:
            out[key] = value
        else:
            raise ConfigError(f"unknown config key {key!r} in {source}; valid keys: "
                              f"{', '.join(sorted(top | set(SECTIONS)))}")
    return out


def apply_overrides(cfg: AnimateConfig, overrides: Mapping[str, Any]) -> AnimateConfig:
    """A copy of ``cfg`` with dotted-key overrides applied (``landmarks.groups`` merges onto the current
    weights: ``"mouth=5"`` changes the mouth only)."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section:
            if section not in SECTIONS or name not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
                raise ConfigError(f"unknown config key {key!r}")
            if key == "landmarks.groups":
                base = sections.get("landmarks", {}).get("groups", cfg.landmarks.groups)
                if not isinstance(value, (str, Mapping)):
                    raise ConfigError(f"landmarks.groups: must be a string such as 'mouth=5,eyes=0' or a table, "
                                      f"got {value!r}")
                try:
                    value = parse_group_weights(value, base=base)
                except ConfigError as exc:
                    raise ConfigError(f"landmarks.groups: {exc}") from None
            sections.setdefault(section, {})[name] = value
        elif key in SECTIONS or key not in {f.name for f in dataclasses.fields(AnimateConfig)}:
            raise ConfigError(f"unknown config key {key!r}")
        else:
            top[key] = value
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)


def load_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The table of the TOML file ``path`` (a ``what``: "config file", "batch file"); ConfigError saying what to
    fix when it is missing, unreadable or not TOML."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML ({exc}); fix the syntax") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path} ({exc.strerror})") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Dotted-key settings from a TOML file (ConfigError if missing, unparsable or holding unknown keys)."""
    return flatten_settings(load_toml(path, "config file"), str(path))


def resolve_config(preset_name: str | None = None, config_file: str | Path | None = None,
                   overrides: Mapping[str, Any] | None = None) -> AnimateConfig:
    """Preset, then the TOML file, then ``overrides`` (dotted keys, e.g. from CLI flags; None values skipped).

    The preset is ``preset_name`` if given, else the file's ``preset``, else ``free`` when the mode is
    set to free and ``keep-identity`` otherwise.
    """
    from_file = read_toml(config_file) if config_file is not None else {}
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    mode = cli.get("mode", from_file.get("mode"))
    name = preset_name or from_file.get("preset") or ("free" if mode == "free" else "keep-identity")
    if not isinstance(name, str):
        raise ConfigError(f"preset: must be one of {', '.join(PRESETS)}, got {name!r}")
    cfg = preset(name)
    from_file.pop("preset", None)
    cfg = apply_overrides(cfg, from_file)
    cli.pop("preset", None)
    return apply_overrides(cfg, cli)


def config_from_dict(data: Mapping[str, Any]) -> AnimateConfig:
    """Rebuild a config from :meth:`AnimateConfig.to_dict` output (e.g. a saved ``config.json``)."""
    flat = flatten_settings(data, "config")
    name = flat.pop("preset", "keep-identity")
    return apply_overrides(preset(name), flat)
