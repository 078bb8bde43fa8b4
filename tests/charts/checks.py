"""Checks on what the charts produce: real PNG files and well-formed Vega-Lite specs."""

from __future__ import annotations

import io
import struct
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and that matplotlib's reader
    decodes the whole image to those dimensions."""
    from matplotlib.image import imread

    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (height, width)
    return width, height


def check_readable_png(data: bytes) -> None:
    """A PNG about 900 × 500 to 900 × 700 pixels and under 100 KB: legible in an email."""
    width, height = png_size(data)
    assert width == 900 and 450 <= height <= 750, (width, height)
    assert len(data) < 100_000, len(data)


def check_vega_lite(spec: dict[str, Any]) -> None:
    """The structure every Vega-Lite v5 view needs: the v5 $schema, inline data, and a mark
    and an encoding in each unit view (an encoding may be inherited from the enclosing
    layer)."""
    assert spec["$schema"] == "https://vega.github.io/schema/vega-lite/v5.json"
    assert spec["data"]["values"], "no data"
    units = list(_units(spec, inherited={}))
    assert units, "no view draws anything"
    for unit, encoding in units:
        assert isinstance(unit["mark"], str | dict), unit
        assert encoding, f"no encoding for {unit['mark']}"
        for channel in encoding.values():
            assert isinstance(channel, dict | list), channel


def _units(spec: dict[str, Any], inherited: dict[str, Any]) -> Any:
    encoding = {**inherited, **spec.get("encoding", {})}
    children = spec.get("layer", []) + spec.get("vconcat", []) + spec.get("hconcat", [])
    if "mark" in spec:
        yield spec, encoding
    for child in children:
        yield from _units(child, encoding)
