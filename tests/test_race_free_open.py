"""An image path checked against the roots and then opened: a folder swapped for a symlink to
an outside folder in between (renameat2 RENAME_EXCHANGE in a loop, as a hostile local user
does) must never make `Detect` answer with the outside image. A real inference service started
with --allow-root, called through the client library."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import free_port

from facesets.client import Endpoint, ImageInput, InferenceClient
from facesets.v1 import common_pb2
from services import ServiceProcess

INSIDE_SIZE, OUTSIDE_SIZE = (48, 40), (72, 56)  # width, height: tell the two images apart
REQUESTS = 400

# Swaps the two names until the stop file appears (at most 2,000,000 swaps: bounded even if
# the test dies); prints how many swaps it made.
_SWAPPER = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    a, b, stop = (p.encode() for p in sys.argv[1:4])
    print("ready", flush=True)
    swaps = 0
    while swaps < 2_000_000 and not (swaps % 64 == 0 and os.path.exists(stop)):
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")
        swaps += 1
    print(swaps, flush=True)
    """
)


def _blank(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))


@pytest.fixture
def race(tmp_path: Path) -> Iterator[dict]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "photos").mkdir(parents=True)
    outside.mkdir()
    _blank(allowed / "photos" / "img.png", INSIDE_SIZE)
    _blank(outside / "img.png", OUTSIDE_SIZE)
    (allowed / "decoy").symlink_to(outside, target_is_directory=True)
    service = ServiceProcess(
        "inference", free_port(), tmp_path / "inference.log", "--workers", "2", roots=[allowed]
    ).start()
    try:
        yield {"service": service, "allowed": allowed, "tmp": tmp_path}
    finally:
        service.stop()


def test_a_folder_swapped_for_a_symlink_never_hands_out_an_outside_image(race) -> None:
    allowed, stop = race["allowed"], race["tmp"] / "stop"
    swapper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SWAPPER,
            str(allowed / "photos"),
            str(allowed / "decoy"),
            str(stop),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout is not None and swapper.stdout.readline().strip() == "ready"
    client = InferenceClient(Endpoint(race["service"].address))
    target = str(allowed / "photos" / "img.png")
    sizes: dict[tuple[int, int], int] = {}
    refused = 0
    try:
        images = [ImageInput(id=str(i), path=target) for i in range(REQUESTS)]
        for result in client.detect(images, by_path=True, max_inflight=8):
            if result.HasField("error"):
                # Refused while the name was the symlink (or a folder half-way through a swap):
                # an error result, never a file's content.
                assert result.error.reason == common_pb2.ERROR_REASON_UNREADABLE, result.error
                refused += 1
            else:
                size = (result.width, result.height)
                sizes[size] = sizes.get(size, 0) + 1
    finally:
        stop.touch()
        swaps = int(swapper.communicate(timeout=60)[0].strip())
        client.close()
    assert swaps > REQUESTS  # the names really were swapped while the service answered
    assert sum(sizes.values()) + refused == REQUESTS
    assert OUTSIDE_SIZE not in sizes, f"the outside image was returned {sizes[OUTSIDE_SIZE]} times"
    assert set(sizes) <= {INSIDE_SIZE}
    assert sizes.get(INSIDE_SIZE, 0) > 0 and refused > 0  # both names were seen by the service
