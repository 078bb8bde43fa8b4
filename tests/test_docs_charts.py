"""The README's charts are drawn by the project's own code: docs/make_charts.py regenerates
them from a simulated run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.charts.checks import check_readable_png, png_size

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ("chart-trajectory.png", "chart-srm.png", "chart-exposures.png")


def test_the_docs_script_regenerates_the_readme_charts(tmp_path: Path) -> None:
    """Its main function records the simulator's checkout experiment and writes the three
    charts; they, and the committed ones the README shows, are readable PNGs of one size."""
    spec = importlib.util.spec_from_file_location("make_charts", ROOT / "docs" / "make_charts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--days", "10"]) == 0
    readme = (ROOT / "README.md").read_text()
    for name in CHARTS:
        fresh = (tmp_path / name).read_bytes()
        committed = (ROOT / "docs" / name).read_bytes()
        check_readable_png(fresh)
        check_readable_png(committed)
        assert png_size(fresh) == png_size(committed)
        assert f"docs/{name}" in readme
