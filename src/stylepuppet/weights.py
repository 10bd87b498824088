"""Known pretrained weights, the local cache, and verified, resumable downloads.

Every file stylepuppet loads by name comes from :data:`REGISTRY`. A cached file is checked on
every load: against the published sha256 where there is one, else against the sha256 recorded
when the file first arrived (download or import; ``<file>.sha256.json`` beside it), so a file that
changes later is caught. Where a publisher gives only a sha256 prefix (the hex in FAN's file name,
torch.hub style) the prefix is checked as well. Files are rehashed on every load: ~1 s for the
360 MB 1024² pickles, cheap next to loading them.

Downloads go to ``<file>.part`` and resume with an HTTP Range request guarded by ``If-Range`` (the
ETag or Last-Modified of the first response, kept in ``<file>.part.json``), so a file that changed on
the server, or a server that ignores ranges, restarts from zero instead of being spliced; only a
complete, verified file is renamed into place. A truncated transfer keeps its ``.part`` for the
next attempt; a hash mismatch deletes it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import platformdirs
from tqdm import tqdm

from stylepuppet import atomic
from stylepuppet.errors import WeightsError
from stylepuppet.lock import exclusive

CACHE_ENV = "STYLEPUPPET_CACHE"
#: Seconds a connection attempt or a single read may stall before the download gives up.
TIMEOUT = 30.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable file. ``sha256``/``size`` are None where the publisher gives none;
    ``sha256_prefix`` is a published leading part of the sha256 (checked when the full one is unknown)."""

    name: str
    url: str
    filename: str
    sha256: str | None
    size: int | None
    licence: str
    kind: str
    resolution: int | None
    description: str
    sha256_prefix: str | None = None


_NVIDIA_SG3 = ("NVIDIA Source Code License-NC (non-commercial research and evaluation use only), "
               "https://github.com/NVlabs/stylegan3/blob/main/LICENSE.txt")
_NVIDIA_ADA = ("NVIDIA Source Code License-NC (non-commercial research and evaluation use only), "
               "https://nvlabs.github.io/stylegan2-ada-pytorch/license.html")
_FFHQ = ("; trained on FFHQ, whose images carry their own Creative Commons licences and whose dataset is "
         "CC BY-NC-SA 4.0, https://github.com/NVlabs/ffhq-dataset")
_MEDIAPIPE = "Apache-2.0, https://github.com/google-ai-edge/mediapipe/blob/master/LICENSE"
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_NGC3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
_SG3_CONFIGS = {"t": "config T, translation-equivariant", "r": "config R, translation- and rotation-equivariant"}
_SG3_DATA = {"ffhq": "FFHQ", "ffhqu": "FFHQ-U (unaligned: faces anywhere in the frame)"}
_MP_ASSETS = "https://storage.googleapis.com/mediapipe-assets/"
_MP_MODELS = "https://storage.googleapis.com/mediapipe-models/"
_DLIB_MODELS = ("public domain: its author released dlib's model files into the public domain "
                "(https://github.com/davisking/dlib-models); face-recognition-models ships them under CC0 1.0 "
                "Universal (its LICENSE file); trained on FaceScrub, VGG Face and web images, whose own terms "
                "dlib-models does not state")


def _ngc_ffhq(res: int, what: str) -> WeightsEntry:
    return WeightsEntry(
        name=f"stylegan2-ffhq-{res}", url=f"{_NGC}stylegan2-ffhq-{res}x{res}.pkl",
        filename=f"stylegan2-ffhq-{res}x{res}.pkl", sha256=None, size=None, licence=_NVIDIA_SG3 + _FFHQ,
        kind="stylegan2", resolution=res, description=f"StyleGAN2 FFHQ {res}² (NVIDIA, NGC){what}")


def _ngc3(config: str, data: str, res: int) -> WeightsEntry:
    """A network of NVIDIA's StyleGAN3 release."""
    return WeightsEntry(
        name=f"stylegan3-{config}-{data}-{res}", url=f"{_NGC3}stylegan3-{config}-{data}-{res}x{res}.pkl",
        filename=f"stylegan3-{config}-{data}-{res}x{res}.pkl", sha256=None, size=None, licence=_NVIDIA_SG3 + _FFHQ,
        kind="stylegan3", resolution=res,
        description=f"StyleGAN3-{config.upper()} ({_SG3_CONFIGS[config]}) {_SG3_DATA[data]} {res}² (NVIDIA, NGC)")


#: The entry used for each kind of weights when none is named (the generator: the fastest FFHQ network).
DEFAULTS = {"stylegan2": "stylegan2-ffhq-256", "fan": "fan-2dfan4", "mesh": "mediapipe-face-landmark",
            "lpips": "lpips-vgg16", "identity": "dlib-face-recognition-resnet-v1"}
DEFAULT_GENERATOR = DEFAULTS["stylegan2"]
#: The kinds of registry entry every generator command takes.
GENERATOR_KINDS = ("stylegan2", "stylegan3")
KINDS = (*DEFAULTS, "stylegan3")

REGISTRY: dict[str, WeightsEntry] = {e.name: e for e in (
    _ngc_ffhq(256, "; the default, fastest"),
    _ngc_ffhq(512, ""),
    _ngc_ffhq(1024, ""),
    *(_ngc3(config, data, res) for data, res in (("ffhq", 1024), ("ffhqu", 1024), ("ffhqu", 256)) for config in "tr"),
    WeightsEntry(
        name="stylegan2-ada-ffhq", url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
        filename="ffhq.pkl", sha256=None, size=None, licence=_NVIDIA_ADA + _FFHQ, kind="stylegan2",
        resolution=1024,
        description="StyleGAN2 FFHQ 1024² from the stylegan2-ada-pytorch release (the original method's network)"),
    WeightsEntry(
        name="fan-2dfan4", url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
        filename="2DFAN4-11f355bf06.pth.tar", sha256=None, sha256_prefix="11f355bf06", size=None,
        licence=("code BSD-3-Clause, https://github.com/1adrianb/face-alignment/blob/master/LICENSE; trained on "
                 "300-W-derived landmark data, whose terms allow non-commercial research use only, "
                 "https://ibug.doc.ic.ac.uk/resources/300-W/"),
        kind="fan", resolution=256, description="2DFAN4 face-alignment network, 68 iBUG points (face-alignment)"),
    WeightsEntry(
        name="lpips-vgg16", url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
        filename="vgg16.pt", sha256=None, size=None,
        licence=("distributed with NVIDIA's stylegan2-ada-pytorch metrics, " + _NVIDIA_ADA
                 + "; LPIPS itself is BSD-2-Clause, https://github.com/richzhang/PerceptualSimilarity"),
        kind="lpips", resolution=None,
        description="LPIPS-VGG16 as TorchScript (NVIDIA's projector's perceptual distance)"),
    # sha256 and size as pinned by MediaPipe's own build manifest (third_party/external_files.bzl)
    WeightsEntry(
        name="mediapipe-face-landmark", url=_MP_ASSETS + "models/face_landmark.tflite", filename="face_landmark.tflite",
        sha256="2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493", size=2_439_440,
        licence=_MEDIAPIPE, kind="mesh", resolution=192,
        description="MediaPipe face-landmark model (legacy Face Mesh, 468 points), TFLite"),
    WeightsEntry(
        name="mediapipe-face-landmarker",
        url=_MP_MODELS + "face_landmarker/face_landmarker/float16/1/face_landmarker.task",
        filename="face_landmarker.task", sha256=None, size=None, licence=_MEDIAPIPE, kind="mesh", resolution=None,
        description="MediaPipe Face Landmarker task bundle (detector + 478-point mesh + blendshapes)"),
    # the file face-recognition-models (a dependency) installs, used from there when present; sha256 and size
    # measured on that copy (0.3.0). dlib.net and dlib-models publish it only bz2-compressed.
    WeightsEntry(
        name="dlib-face-recognition-resnet-v1",
        url=("https://github.com/ageitgey/face_recognition_models/raw/master/face_recognition_models/models/"
             "dlib_face_recognition_resnet_model_v1.dat"),
        filename="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", size=22_466_066,
        licence=_DLIB_MODELS, kind="identity", resolution=150,
        description="dlib's 128-D face-recognition ResNet (99.38 % on LFW), read without dlib"),
)}


# ---------------------------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """The weights cache: ``$STYLEPUPPET_CACHE`` if set, else the platform's user cache folder."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("stylepuppet"))


def cache_path(entry: WeightsEntry) -> Path:
    """Where ``entry``'s file lives in the cache."""
    return cache_dir() / entry.filename


def record_path(path: Path) -> Path:
    """The JSON beside a cached file that holds the sha256 recorded when it arrived."""
    return path.with_name(path.name + ".sha256.json")


def part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def url_entry(url: str) -> WeightsEntry:
    """The registry entry whose URL this is, else an ad-hoc entry cached under a name derived from the URL
    (hash of the URL + its base name, so two different URLs never share a file)."""
    for entry in REGISTRY.values():
        if entry.url == url:
            return entry
    base = Path(urllib.parse.urlparse(url).path).name or "download"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return WeightsEntry(name=url, url=url, filename=f"url/{digest}-{base}", sha256=None, size=None,
                        licence="unknown (a file given by URL; check its publisher's terms)", kind="",
                        resolution=None, description=f"file from {url}")


# ---------------------------------------------------------------------------------------------- hashes


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_record(path: Path) -> dict | None:
    """The recorded hash of a cached file, None when there is none; an unreadable record is an error."""
    rec = record_path(path)
    if not rec.exists():
        return None
    try:
        data = json.loads(rec.read_text())
        if not isinstance(data, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(data.get("sha256", ""))):
            raise ValueError("no sha256")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"the hash record {rec} is unreadable ({exc}); delete it and {path.name} and fetch "
                           "the file again") from None
    return data


def write_record(path: Path, entry: WeightsEntry, sha256: str, size: int, how: str) -> None:
    data = {"name": entry.name, "url": entry.url, "sha256": sha256, "size": size, "how": how,
            "recorded": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        atomic.write_text(record_path(path), json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise _unwritable(path.parent, exc) from None


def _unwritable(folder: Path, exc: OSError) -> WeightsError:
    return WeightsError(f"cannot write in {folder} ({_reason(exc)}); free some space or set {CACHE_ENV} to a "
                        "writable folder")


def published_mismatch(entry: WeightsEntry, sha256: str, size: int) -> str | None:
    """Why a file of this hash and size cannot be ``entry`` by what its publisher states, else None."""
    if entry.size is not None and size != entry.size:
        return f"size {size} bytes, expected {entry.size}"
    if entry.sha256 is not None and sha256 != entry.sha256:
        return f"sha256 {sha256}, expected {entry.sha256}"
    if entry.sha256_prefix is not None and not sha256.startswith(entry.sha256_prefix):
        return f"sha256 {sha256} does not start with the published {entry.sha256_prefix}"
    return None


@dataclass(frozen=True)
class VerifyResult:
    """The check of one cached file: ``status`` is "ok", "recorded" (first seen, hash recorded now) or "bad"."""

    name: str
    path: Path
    status: str
    sha256: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != "bad"


def check_file(entry: WeightsEntry, path: Path) -> VerifyResult:
    """Hash ``path`` and compare it with what is published for ``entry`` and with its recorded hash; a file
    with neither (placed in the cache by hand) gets its hash recorded now."""
    size = path.stat().st_size
    sha = sha256_file(path)
    why = published_mismatch(entry, sha, size)
    if why is not None:
        return VerifyResult(entry.name, path, "bad", sha, why)
    if entry.sha256 is not None:
        return VerifyResult(entry.name, path, "ok", sha, "matches the published sha256")
    rec = read_record(path)
    if rec is None:
        write_record(path, entry, sha, size, "first use")
        return VerifyResult(entry.name, path, "recorded", sha, "no published sha256; recorded it now")
    if rec["sha256"] != sha:
        return VerifyResult(entry.name, path, "bad", sha, f"sha256 {sha}, recorded {rec['sha256']} on "
                                                          f"{rec.get('recorded', '?')}")
    return VerifyResult(entry.name, path, "ok", sha, "matches the sha256 recorded on " + str(rec.get("recorded", "?")))


def _require_verified(entry: WeightsEntry, path: Path) -> Path:
    result = check_file(entry, path)
    if not result.ok:
        raise WeightsError(f"{path} fails verification ({result.detail}): it is corrupt or was changed; delete it "
                           f"and run `stylepuppet weights fetch {entry.name}`")
    return path


# ---------------------------------------------------------------------------------------------- download


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _unreachable(entry: WeightsEntry, dest: Path, reason: str) -> WeightsError:
    return WeightsError(f"cannot download {entry.name} from {entry.url} ({reason}); put the file at {dest} "
                        "or run `stylepuppet weights import PATH`")


def _reason(exc: BaseException) -> str:
    """A short cause for an error message."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0]


def _open(url: str, offset: int, validator: str | None) -> http.client.HTTPResponse:
    """GET ``url`` from byte ``offset``; with ``If-Range`` the server sends the whole file (200) if it changed."""
    headers = {"User-Agent": "stylepuppet (weights download)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)


def _validator(response: http.client.HTTPResponse) -> str | None:
    """What identifies this version of the file for a later ``If-Range``: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _part_meta(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_validator(part: Path, url: str) -> str | None:
    try:
        meta = json.loads(_part_meta(part).read_text())
        return str(meta["validator"]) if meta.get("url") == url and meta.get("validator") else None
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, total or None) of a ``Content-Range: bytes a-b/total`` header."""
    m = re.fullmatch(r"bytes\s+(\d+)-\d+/(\d+|\*)", (value or "").strip())
    if m is None:
        return None
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _unsatisfied_total(value: str | None) -> int | None:
    """The file size a 416 answer states (``Content-Range: bytes */total``)."""
    m = re.fullmatch(r"bytes\s+\*/(\d+)", (value or "").strip())
    return int(m.group(1)) if m else None


def _transfer(entry: WeightsEntry, dest: Path, part: Path, progress: bool) -> None:
    """Bring ``part`` to the complete file (resuming what it holds); raises on a short or failed transfer."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(entry.url, offset, _read_validator(part, entry.url))
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise _unreachable(entry, dest, _reason(exc)) from None
        if _unsatisfied_total(exc.headers.get("Content-Range")) == offset:
            return  # the part already holds the whole file (a previous run stopped before renaming it)
        part.unlink()  # what we hold is longer than this file: it is not a prefix of it
        _transfer(entry, dest, part, progress)
        return
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _unreachable(entry, dest, _reason(exc)) from None
    with response:
        _say(f"downloading {entry.name} from {entry.url}\n  into {dest}\n  licence: {entry.licence}")
        length = response.headers.get("Content-Length")
        if response.status == 206:
            got = _content_range(response.headers.get("Content-Range"))
            if got is None or got[0] != offset:
                raise WeightsError(f"{entry.url} answered a resumed download with the wrong range "
                                   f"({response.headers.get('Content-Range')}); delete {part} and try again")
            total = got[1] if got[1] is not None else (offset + int(length) if length else None)
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # no range asked, the server ignored it, or the file changed: start over
            total = int(length) if length else None
            validator = _validator(response)
            if validator:
                atomic.write_text(_part_meta(part), json.dumps({"url": entry.url, "validator": validator}))
            else:
                _part_meta(part).unlink(missing_ok=True)
        if entry.size is not None and total is not None and total > entry.size:
            raise _oversized(entry, part, total)
        done = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.filename,
                   disable=None if progress else True, leave=False)
        try:
            with open(part, mode) as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
                    if entry.size is not None and done > entry.size:
                        raise _oversized(entry, part, done)
        except (OSError, http.client.HTTPException) as exc:
            raise _stopped(entry, part, done, total, _reason(exc)) from None
        finally:
            bar.close()
    if total is not None and done != total:
        raise _stopped(entry, part, done, total, "the connection closed early")


def _oversized(entry: WeightsEntry, part: Path, size: int) -> WeightsError:
    """The error for a download larger than its published size (stopped at once; what arrived is deleted)."""
    part.unlink(missing_ok=True)
    _part_meta(part).unlink(missing_ok=True)
    return WeightsError(f"the download of {entry.name} from {entry.url} is larger than its published size "
                        f"({size} bytes or more, published {entry.size}); stopped and deleted it; the server does "
                        "not serve the published file")


def _stopped(entry: WeightsEntry, part: Path, done: int, total: int | None, reason: str) -> WeightsError:
    of = f" of {total}" if total is not None else ""
    return WeightsError(f"download of {entry.name} from {entry.url} stopped at {done}{of} bytes ({reason}); run "
                        f"`stylepuppet weights fetch {entry.name}` again to resume ({part} keeps what arrived)")


def download(entry: WeightsEntry, *, progress: bool = True) -> Path:
    """Download ``entry`` into the cache (resuming a ``.part``), verify it, record its hash, rename it into place."""
    dest = cache_path(entry)
    part = part_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(dest.with_name(f".{dest.name}.lock")):
            return _download_locked(entry, dest, part, progress)
    except OSError as exc:
        raise _unwritable(dest.parent, exc) from None


def _download_locked(entry: WeightsEntry, dest: Path, part: Path, progress: bool) -> Path:
    if dest.exists():  # another process finished it while we waited
        return _require_verified(entry, dest)
    _transfer(entry, dest, part, progress)
    size = part.stat().st_size
    sha = sha256_file(part)
    why = published_mismatch(entry, sha, size)
    _part_meta(part).unlink(missing_ok=True)
    if why is not None:
        part.unlink()
        raise WeightsError(f"the download of {entry.name} from {entry.url} is corrupt ({why}); nothing was cached; "
                           "try again, and report it if it persists")
    if entry.sha256 is None:
        write_record(dest, entry, sha, size, "download")
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------------------------- public API


def _unknown(name: str) -> WeightsError:
    return WeightsError(f"unknown weights name {name!r}; known: {', '.join(REGISTRY)} (or give a file path "
                        "or an http(s) URL)")


def lookup(name: str) -> WeightsEntry:
    """The registry entry ``name``; an unknown name is an error that lists the known ones."""
    if name not in REGISTRY:
        raise _unknown(name)
    return REGISTRY[name]


def fetch(name: str, *, progress: bool = True) -> Path:
    """The verified cached file of registry entry ``name`` (or of an http(s) URL), downloading it first if needed."""
    entry = url_entry(name) if _is_url(name) else lookup(name)
    dest = cache_path(entry)
    return _require_verified(entry, dest) if dest.exists() else download(entry, progress=progress)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def resolve(source: str | os.PathLike[str], *, kind: str | tuple[str, ...] | None = None,
            allow_download: bool = True) -> Path:
    """A local, verified file for ``source``: a registry name, an http(s) URL (cached), or an existing file.

    ``kind`` ("fan", ..., or several such as :data:`GENERATOR_KINDS`) rejects a registry entry of another kind.
    """
    text = os.fspath(source)
    if text in REGISTRY or _is_url(text):
        entry = REGISTRY[text] if text in REGISTRY else url_entry(text)
        kinds = (kind,) if isinstance(kind, str) else kind
        if kinds is not None and entry.kind and entry.kind not in kinds:
            wanted = " or ".join(kinds)
            raise WeightsError(f"{entry.name} is a {entry.kind} file, not {wanted} weights; choose a {wanted} entry "
                               f"(`stylepuppet weights list`)")
        dest = cache_path(entry)
        if dest.exists():
            return _require_verified(entry, dest)
        if not allow_download:
            partial = " (a partial download is there; fetching resumes it)" if part_path(dest).exists() else ""
            raise WeightsError(f"{entry.name} is not in the cache{partial}; run `stylepuppet weights fetch "
                               f"{entry.name}`, or put the file at {dest} or run `stylepuppet weights import PATH`")
        return download(entry)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise WeightsError(f"{path} is not a file; give a weights file, a registry name or a URL")
    if looks_like_path(text):
        raise WeightsError(f"no such weights file: {path}; check the path, or give a registry name "
                           "(`stylepuppet weights list`)")
    raise _unknown(text)


def looks_like_path(text: str) -> bool:
    """Whether the user meant a file (a folder separator or a file extension) rather than a registry name."""
    return "/" in text or os.sep in text or Path(text).suffix != ""


def verify(name: str) -> VerifyResult:
    """Check the cached file of registry entry ``name`` (which must be cached)."""
    entry = lookup(name)
    dest = cache_path(entry)
    if not dest.exists():
        raise WeightsError(f"{name} is not in the cache ({dest}); run `stylepuppet weights fetch {name}`")
    return check_file(entry, dest)


def verify_cached() -> list[VerifyResult]:
    """Check every cached registry file and every file cached from a URL; a file whose check fails (an
    unreadable hash record, say) is reported as bad and the others are still checked."""
    results = [_checked(e, cache_path(e)) for e in REGISTRY.values() if cache_path(e).is_file()]
    url_dir = cache_dir() / "url"
    if url_dir.is_dir():
        for path in sorted(url_dir.iterdir()):
            if not path.is_file() or path.name.endswith((".json", ".part", ".lock")) or path.name.startswith("."):
                continue
            try:
                rec = read_record(path)
            except WeightsError as exc:
                results.append(VerifyResult(path.name, path, "bad", "", str(exc)))
                continue
            url = str(rec.get("url") or "") if rec else ""
            results.append(_checked(url_entry(url) if url else _orphan(path), path))
    return results


def _checked(entry: WeightsEntry, path: Path) -> VerifyResult:
    """:func:`check_file`, with a failure of the check itself reported as a bad result."""
    try:
        return check_file(entry, path)
    except (WeightsError, OSError) as exc:
        return VerifyResult(entry.name, path, "bad", "", str(exc))


def _orphan(path: Path) -> WeightsEntry:
    return WeightsEntry(name=path.name, url="", filename=f"url/{path.name}", sha256=None, size=None,
                        licence="unknown", kind="", resolution=None, description="")


@dataclass(frozen=True)
class ImportResult:
    entry: WeightsEntry
    path: Path
    sha256: str
    replaced: bool


def identify(sha256: str, size: int, filename: str) -> WeightsEntry:
    """Which registry entry a file is: by published sha256 (or prefix), else by file name."""
    by_hash = [e for e in REGISTRY.values()
               if e.sha256 == sha256 or (e.sha256_prefix and sha256.startswith(e.sha256_prefix))]
    if len(by_hash) == 1:
        return by_hash[0]
    by_name = [e for e in REGISTRY.values() if e.filename == filename and published_mismatch(e, sha256, size) is None]
    if len(by_name) == 1:
        return by_name[0]
    candidates = by_hash or by_name
    if candidates:
        raise WeightsError(f"{filename} could be any of {', '.join(e.name for e in candidates)}; give --name NAME")
    raise WeightsError(f"cannot tell which registry entry {filename} is (sha256 {sha256}); give --name NAME, one of "
                       f"{', '.join(REGISTRY)}")


def _copy_verified(src: Path, dest: Path, sha: str) -> None:
    """Copy atomically (temp file beside ``dest``, then rename; a plain file's permissions), checking the copy
    has hash ``sha``."""
    with atomic.replacing(dest) as tmp:
        shutil.copyfile(src, tmp)
        if sha256_file(tmp) != sha:
            raise WeightsError(f"{src} changed while it was copied; import it again")


def import_file(path: str | os.PathLike[str], name: str | None = None) -> ImportResult:
    """Copy a local file into the cache as a registry entry (identified from its hash or name, or ``name``),
    checked against what is published and recorded as the entry's trusted hash."""
    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsError(f"no such file: {src}; give the path of a downloaded weights file")
    size = src.stat().st_size
    sha = sha256_file(src)
    if name is None:
        entry = identify(sha, size, src.name)
    else:
        entry = lookup(name)
        why = published_mismatch(entry, sha, size)
        if why is not None:
            raise WeightsError(f"{src} is not {name} ({why})")
    dest = cache_path(entry)
    replaced = dest.exists() and dest.resolve() != src.resolve() and sha256_file(dest) != sha
    if not dest.exists() or replaced:
        try:
            _copy_verified(src, dest, sha)
        except OSError as exc:
            raise _unwritable(dest.parent, exc) from None
    if entry.sha256 is None:
        write_record(dest, entry, sha, size, f"import of {src.resolve()}")
    part_path(dest).unlink(missing_ok=True)
    _part_meta(part_path(dest)).unlink(missing_ok=True)
    return ImportResult(entry, dest, sha, replaced)
