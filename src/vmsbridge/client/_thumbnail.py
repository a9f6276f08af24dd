"""Thumbnails: a JPEG of a video's first key frame, made with PyAV (no Pillow needed)."""

from __future__ import annotations

import logging
import os

__all__ = ["first_keyframe_jpeg"]

log = logging.getLogger("vmsbridge.client")


def first_keyframe_jpeg(
    path: str | os.PathLike[str], *, max_width: int = 640, max_frames: int = 300
) -> bytes | None:
    """JPEG bytes of the first key frame of the video at `path`, at most `max_width` wide.

    Returns None (and logs why) when the file has no video stream or does not decode: a missing
    thumbnail never fails an upload. Blocking (decodes): call it in a thread.
    """
    try:
        import av

        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                log.info("no thumbnail for %s: no video stream", path)
                return None
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            for i, frame in enumerate(container.decode(stream)):
                if i >= max_frames:
                    break
                width, height = frame.width, frame.height
                if width > max_width:
                    height = max(2, round(height * max_width / width / 2) * 2)
                    width = max_width
                width -= width % 2
                height -= height % 2
                encoder = av.CodecContext.create("mjpeg", "w")
                encoder.width, encoder.height = width, height
                encoder.pix_fmt = "yuvj420p"
                encoder.time_base = stream.time_base or __import__("fractions").Fraction(1, 25)
                image = frame.reformat(width=width, height=height, format="yuvj420p")
                packets = list(encoder.encode(image)) + list(encoder.encode(None))
                data = b"".join(bytes(p) for p in packets)
                return data or None
        log.info("no thumbnail for %s: no decodable key frame", path)
    except Exception as exc:  # PyAV raises many types (FFmpegError, ValueError, ...)
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        log.info("no thumbnail for %s: %s", path, reason)
    return None
