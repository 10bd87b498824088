"""Zip members are read in bounded memory: never more than the header announces, never more than a limit."""

import struct
import zipfile
import zlib

import pytest

from stylepuppet import safe_zip
from stylepuppet.errors import WeightsError


def test_members_are_read_whole_and_checked(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data.pkl", b"x" * 5000)
    with zipfile.ZipFile(path) as zf:
        safe_zip.check_sizes(zf, "a.zip")
        assert safe_zip.read_member(zf, "a/data.pkl", "a.zip") == b"x" * 5000
        with pytest.raises(WeightsError, match="a/data.pkl claims 5000 bytes unpacked, over the 0 MiB limit"):
            safe_zip.read_member(zf, "a/data.pkl", "a.zip", limit=4999)
        with pytest.raises(WeightsError, match="over the 0 MiB limit"):
            safe_zip.check_sizes(zf, "a.zip", member_limit=4999)
        with pytest.raises(WeightsError, match="members claim 5000 bytes"):
            safe_zip.check_sizes(zf, "a.zip", total_limit=4999)


def test_a_header_that_understates_a_member_never_lets_it_inflate_further(tmp_path):
    content = bytes(10_000_000)
    data = zlib.compress(content, 9)[2:-4]  # raw deflate
    name = b"bomb"
    announced = 1000  # the header lies: the data inflates to 10 MB
    head = struct.pack("<HHHHHIIIHH", 20, 0, 8, 0, 0, zlib.crc32(content[:announced]), len(data), announced,
                       len(name), 0)
    local = b"PK\x03\x04" + head + name + data
    central = b"PK\x01\x02" + struct.pack("<H", 20) + head + struct.pack("<HHHII", 0, 0, 0, 0, 0) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local), 0)
    path = tmp_path / "liar.zip"
    path.write_bytes(local + central + end)
    with zipfile.ZipFile(path) as zf:
        assert safe_zip.read_member(zf, "bomb", "liar.zip") == bytes(announced)  # what the header promised
