"""Image sizes from file headers, for folders too large to decode at load time.

``folder:`` trees with more files than ``stream_above`` (default 50,000,
``SKIPAE_STREAM_ABOVE``) are not decoded when they load: each file's header is
read (the first kilobytes: PNG's IHDR chunk, JPEG's start-of-frame marker,
anything else through Pillow, which also reads headers only), which gives the
image's size and channels, refuses files over the pixel limit and finds files
that are not images at all, by name. The pixels are decoded as training runs.
"""

from __future__ import annotations

import os
import struct
import time

try:
    import resource
except ImportError:  # not on Windows
    resource = None
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .decode import count_setting, image_channels

DEFAULT_STREAM_ABOVE = 50_000
HEAD_BYTES = 4096
#: files per unit of work, each read in the calling thread and timed until one reads slowly
CHUNK = 512
#: seconds per file above which the storage, not Python, sets the pace, and threads overlap its waits
SLOW_STORAGE_S = 50e-6
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT (C4), JPG (C8), DAC (CC)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels as TensorFlow decodes (palette -> RGB)


def stream_above(value: int | None = None) -> int:
    """The file count above which ``folder:`` streams: ``value``, else ``SKIPAE_STREAM_ABOVE``, else 50,000."""
    return count_setting(value, "stream_above", "SKIPAE_STREAM_ABOVE", DEFAULT_STREAM_ABOVE, "files", 100000,
                         minimum=0)  # fmt: skip


def _from_bytes(head: bytes) -> tuple[int, int, int] | None:
    """(height, width, channels) of a PNG or JPEG from its first bytes; None when another reader is needed."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 26:
        width, height = struct.unpack(">II", head[16:24])
        channels = _PNG_CHANNELS.get(head[25])
        return (height, width, channels) if channels else None
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _SOF:
                height, width = struct.unpack(">HH", head[i + 5:i + 9])
                components = head[i + 9] if i + 9 < len(head) else 0
                return (height, width, components) if components in (1, 3) else None
            i += 2 + struct.unpack(">H", head[i + 2:i + 4])[0]
    return None


def header_shape(path: str) -> tuple[tuple[int, int, int] | None, str | None]:
    """``((height, width, channels), None)`` of the image at ``path``, or ``(None, why it cannot be read)``."""
    try:  # os.open/os.read: a third of the time of open() and a buffered file object, per file
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.read(fd, HEAD_BYTES)
        finally:
            os.close(fd)
    except OSError as exc:
        return None, f"cannot read the file ({exc.strerror or exc})"
    found = _from_bytes(head)
    if found is not None and found[0] > 0 and found[1] > 0:
        return found, None
    try:
        from PIL import Image, UnidentifiedImageError

        with Image.open(path) as image:
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
            channels = image_channels(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return None, f"not an image Pillow or TensorFlow reads ({exc})"
    if frames > 1:
        return None, f"holds {frames} frames; expected one image per file"
    return (height, width, channels), None


def read_headers(paths, limit: int) -> tuple[np.ndarray, list]:
    """``(shapes (N, 3), problems)`` for ``paths``: zeros and a message where a file cannot be used.

    An image over ``limit`` pixels is a problem, as decoding would refuse it.
    Files are read in chunks. Where the files are in the page cache, one
    thread is fastest (about 15 us a file: the work is Python's, and threads
    would only contend for the interpreter); where the storage is slow (cold
    disks, network file systems) threads overlap its waits. Chunks are read
    in this thread and timed; from the first that spent most of its time
    waiting for the storage on, the rest go to threads.
    """
    paths = list(paths)
    shapes = np.zeros((len(paths), 3), dtype=np.int64)
    problems: list = [None] * len(paths)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]

    def read(chunk):
        return [header_shape(path) for path in chunk]

    results = []
    for k, chunk in enumerate(chunks):
        wall, (cpu, waits) = time.perf_counter(), _thread_clock()
        results.append(read(chunk))
        (cpu_after, waits_after), wall = _thread_clock(), time.perf_counter() - wall
        blocked = None if waits is None or waits_after is None else waits_after - waits
        if _storage_bound(wall, cpu_after - cpu, blocked, len(chunk)) and k + 1 < len(chunks):
            with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 4)) as pool:
                results += pool.map(read, chunks[k + 1:])
            break
    found = (item for chunk in results for item in chunk)
    for i, (shape, problem) in enumerate(found):
        if problem is None and shape[0] * shape[1] > limit:
            problem = f"{shape[1]}x{shape[0]} pixels, over the limit of {limit} (max_image_pixels)"
        if problem is None:
            shapes[i] = shape
        problems[i] = problem
    return shapes, problems


def _thread_clock() -> tuple[float, int | None]:
    """The calling thread's CPU seconds and, where the OS counts them (Linux), its voluntary context switches:
    the times it blocked, on a read that had to wait for the storage among others."""
    cpu = time.thread_time()
    try:
        return cpu, resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    except (AttributeError, OSError, ValueError):
        return cpu, None


def _storage_bound(wall: float, cpu: float, blocked: int | None, files: int) -> bool:
    """Whether reading ``files`` headers waited on the storage (cold disks, network file systems), so that threads
    would overlap the waits: slow per file, the thread off the CPU most of that time, and (where counted) blocked
    on at least one file in eight. Without the last test, other processes holding the cores, or a profiler, made
    page-cached folders go to threads, which are slower there (they contend for the interpreter)."""
    if wall / files <= SLOW_STORAGE_S or wall <= 2 * cpu:
        return False
    return blocked is None or blocked * 8 >= files
