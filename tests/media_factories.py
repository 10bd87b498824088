"""Small crafted media files shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import av


def zero_frame_video(path: Path) -> Path:
    """A container whose header declares a video stream but which holds no frame."""
    container = av.open(str(path), mode="w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height = 32, 32
    container.start_encoding()
    container.close()
    return path
