"""The console's committed bundle is what its TypeScript builds to, and stays small."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "functions" / "console" / "assets"
MAX_BYTES = 64 * 1024  # the whole console, uncompressed


def test_the_bundle_is_small_and_names_no_other_origin() -> None:
    files = sorted(ASSETS.iterdir())
    assert [f.name for f in files] == ["app.css", "app.js"]
    assert sum(f.stat().st_size for f in files) <= MAX_BYTES
    index = (ROOT / "functions" / "console" / "index.html").read_text()
    for text in (index, *(f.read_text() for f in files)):
        assert "https://" not in text  # no CDN, no external font
        assert "@import" not in text


@pytest.mark.slow
def test_the_committed_bundle_is_what_the_sources_build_to(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed to rebuild the console (the bundle is committed)")
    work = tmp_path / "console"
    shutil.copytree(ROOT / "console", work, ignore=shutil.ignore_patterns("node_modules"))
    out = tmp_path / "functions" / "console" / "assets"
    out.mkdir(parents=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=work, check=True,
                   timeout=300)
    subprocess.run([npm, "run", "--silent", "build"], cwd=work, check=True, timeout=120)
    for name in ("app.js", "app.css"):
        assert (out / name).read_bytes() == (ASSETS / name).read_bytes(), (
            f"{name} is stale: run `npm ci && npm run build` in console/ and commit it")
