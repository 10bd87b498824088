"""Reading the members of zip archives (TorchScript files, ``torch.save`` files, MediaPipe ``.task`` bundles)
in bounded memory, whatever their headers claim.

A zip member of a few megabytes can inflate to gigabytes (a "zip bomb"). Every member read here is
capped twice: by the size its header announces (more is never read, so a header that lies about the
size cannot make it inflate further) and by a sane maximum (so an honest header announcing 4 GiB is
refused before anything is unpacked). :func:`check_sizes` applies the same caps to a whole archive
before another reader (``torch.load``) unpacks it.
"""

from __future__ import annotations

import zipfile
import zlib

from stylepuppet.errors import WeightsError

#: Largest member unpacked: a 1024² StyleGAN2's largest tensor is 32 MiB, VGG16's 392 MiB.
MAX_MEMBER_BYTES = 1 << 30
#: Largest total of the members of one archive.
MAX_TOTAL_BYTES = 4 << 30
#: What zipfile raises for damaged data, an unknown compression method or an encrypted member.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def check_sizes(zf: zipfile.ZipFile, source: str, member_limit: int = MAX_MEMBER_BYTES,
                total_limit: int = MAX_TOTAL_BYTES) -> None:
    """Refuse (WeightsError) an archive whose headers announce a member over ``member_limit`` bytes or
    members over ``total_limit`` bytes in all."""
    total = 0
    for info in zf.infolist():
        if info.file_size > member_limit:
            raise WeightsError(f"{source}: {info.filename} claims {info.file_size} bytes unpacked, over the "
                               f"{_mib(member_limit)} limit; refusing to unpack it (not weights, or a zip bomb)")
        total += info.file_size
    if total > total_limit:
        raise WeightsError(f"{source}: its members claim {total} bytes unpacked, over the {_mib(total_limit)} "
                           "limit; refusing to unpack it (not weights, or a zip bomb)")


def read_member(zf: zipfile.ZipFile, member: str | zipfile.ZipInfo, source: str,
                limit: int = MAX_MEMBER_BYTES) -> bytes:
    """The bytes of one member, never more than its header announces nor more than ``limit``; WeightsError
    when it is larger than that or unpacks to another size than announced (damaged, or a zip bomb)."""
    info = member if isinstance(member, zipfile.ZipInfo) else zf.getinfo(member)
    if info.file_size > limit:
        raise WeightsError(f"{source}: {info.filename} claims {info.file_size} bytes unpacked, over the "
                           f"{_mib(limit)} limit; refusing to unpack it (not weights, or a zip bomb)")
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except ZIP_ERRORS as exc:
        raise WeightsError(f"{source}: {info.filename} is damaged or unreadable ({type(exc).__name__}: "
                           f"{str(exc)[:100]}); download the file again") from None
    if len(data) != info.file_size:
        raise WeightsError(f"{source}: {info.filename} unpacks to a size other than its header says; refusing it")
    return data
