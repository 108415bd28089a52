"""The benchmark harness's pure parts on tiny inputs (no timing is asserted: speed is
measured by ``offload bench``, never in tests)."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from bench import cold_start, image_candidates, inputs, memory, quality, report, stats
from bench.worker_throughput import _rate
from offload.cli import build_parser

# --- statistics ---------------------------------------------------------------------------


def test_median_and_percentiles() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert stats.median(values) == 3.0
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 5.0
    assert stats.percentile([1.0, 2.0], 50) == 1.5  # interpolated between ranks
    assert stats.percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)
    with pytest.raises(ValueError, match="no values"):
        stats.median([])
    with pytest.raises(ValueError, match="pct"):
        stats.percentile(values, 101)


def test_ratio_of_nothing_is_nan() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert math.isnan(stats.ratio(1.0, 0.0))


def test_summary_keys() -> None:
    found = stats.summary([1.0, 2.0, 3.0, 4.0])
    assert found["n"] == 4
    assert found["median"] == 2.5
    assert found["min"] == 1.0
    assert found["max"] == 4.0


def test_rotations_put_every_candidate_in_every_position() -> None:
    orders = stats.rotations(["a", "b", "c"], 6)
    assert orders[0] == ["a", "b", "c"]
    assert orders[1] == ["b", "c", "a"]
    for position in range(3):
        firsts = [order[position] for order in orders]
        assert sorted(firsts) == ["a", "a", "b", "b", "c", "c"]


# --- image quality --------------------------------------------------------------------------


def test_psnr_of_identical_images_is_infinite() -> None:
    image = inputs.photo_like((40, 30))
    assert quality.psnr(image, image.copy()) == math.inf


def test_psnr_of_a_known_error() -> None:
    # GIVEN two images that differ by 10 in one channel of every pixel
    a = Image.new("RGB", (8, 8), (100, 100, 100))
    b = Image.new("RGB", (8, 8), (110, 100, 100))
    # THEN the MSE over the three channels is 100 / 3
    expected = 10 * math.log10(255**2 / (100 / 3))
    assert quality.psnr(a, b) == pytest.approx(expected)
    with pytest.raises(ValueError, match="sizes differ"):
        quality.psnr(a, Image.new("RGB", (8, 9)))


def test_psnr_of_a_webp_against_its_reference() -> None:
    # A smooth picture survives WebP at quality 90 well; a different picture does not.
    smooth = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    source = inputs.encode(smooth, "PNG")
    webp = inputs.encode(smooth, "WEBP", quality=90)
    other = inputs.encode(Image.new("RGB", (64, 48), (255, 0, 0)), "WEBP")
    assert 30 < quality.psnr_of_webp(webp, source) < math.inf
    assert quality.psnr_of_webp(other, source) < 15


# --- inputs ------------------------------------------------------------------------------


def test_photo_like_has_detail() -> None:
    image = inputs.photo_like((120, 90))
    assert (image.mode, image.size) == ("RGB", (120, 90))
    colours = image.getcolors(maxcolors=120 * 90)
    assert colours is not None
    assert len(colours) > 1000  # grain and gradients, not flat colour


def test_generated_inputs_are_cached(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    monkeypatch.setitem(inputs.SIZES, "tiny", (64, 48))
    paths = inputs.make_inputs(directory, ["tiny_jpeg", "tiny_png"])
    assert Image.open(paths["tiny_jpeg"]).format == "JPEG"
    assert Image.open(paths["tiny_png"]).size == (64, 48)
    stamp = paths["tiny_jpeg"].stat().st_mtime_ns
    assert inputs.make_inputs(directory, ["tiny_jpeg"])["tiny_jpeg"].stat().st_mtime_ns == stamp


def test_bomb_pngs_claim_their_size() -> None:
    header_only = Image.open(io.BytesIO(inputs.header_only_png(3000, 2000)))
    assert header_only.size == (3000, 2000)
    black = Image.open(io.BytesIO(inputs.black_png(30, 20)))
    assert black.size == (30, 20)
    assert black.convert("RGB").getextrema() == ((0, 0), (0, 0), (0, 0))


# --- candidates ------------------------------------------------------------------------------


@pytest.mark.parametrize("candidate", ["offload", "naive"])
def test_pillow_candidates_make_both_outputs(candidate: str) -> None:
    data = inputs.encode(inputs.photo_like((400, 300)), "JPEG", quality=90)
    outputs = image_candidates.CANDIDATES[candidate](data)
    large = Image.open(io.BytesIO(outputs["large"]))
    thumb = Image.open(io.BytesIO(outputs["thumbnail"]))
    assert (large.format, large.size) == ("WEBP", (400, 300))
    assert thumb.size == (256, 192)


# --- cold start: which imports count -------------------------------------------------------


def test_module_level_third_party_imports() -> None:
    source = '''
from __future__ import annotations
import json
from typing import TYPE_CHECKING
import pydantic
from shared.config import Settings
from aws_lambda_powertools import Logger, Tracer
if TYPE_CHECKING:
    import boto3
try:
    import streaq
except ImportError:
    streaq = None

def lazy():
    import PIL
'''
    assert cold_start.module_level_imports(source) == [
        "import pydantic",
        "from aws_lambda_powertools import Logger, Tracer",
        "import streaq",
    ]


# --- worker throughput: the rate window ----------------------------------------------------


def test_rate_between_ten_and_ninety_percent() -> None:
    # 100 jobs, 10 finishing every second after a 5 s start-up
    timeline = [(float(t), 100 - max(0, (t - 5) * 10)) for t in range(0, 16)]
    assert _rate(timeline, 100) == pytest.approx(10.0)


# --- report ------------------------------------------------------------------------------


def test_table_and_numbers() -> None:
    table = report.render_table(["a", "b"], [[1.25, "x"], [0.0123, math.nan]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1.2 | x |", "| 0.012 | - |"]


def test_peak_memory_is_readable() -> None:
    assert memory.peak_kib() >= memory.rss_kib() > 0


def test_bench_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--only", "bomb", "--no-save"])
    assert (args.quick, args.only, args.no_save) == (True, ["bomb"], True)
