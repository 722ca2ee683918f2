"""Charts in a real browser: headless Chromium (Debian's `chromium`) renders each chart gmtool
writes and a sweep's report.html; Pillow decodes the screenshots. A chart passes when its plot
area holds coloured marks (lines, cells or bars were drawn, not just a frame) and its title and
axis-label strips hold dark text pixels (labels rendered at a readable size, not clipped away).

The SVGs come from the Swift ChartsTests ($GMTOOL_INTEROP_OUT/charts, the golden inputs); the
report from a small sweep run here with $GMTOOL_BIN. Skipped, saying why, when Chromium is missing
or cannot start (e.g. no shared memory in a container).
"""
import os
import re
import shutil
import subprocess

import pytest

OUT = os.environ.get("GMTOOL_INTEROP_OUT")
GMTOOL = os.environ.get("GMTOOL_BIN")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..", "..")
SHARED_DATA = os.path.join(REPO, "..", "shared", "data", "cifar10-jpeg")

pytestmark = pytest.mark.skipif(not OUT, reason="GMTOOL_INTEROP_OUT is not set (run scripts/test.sh)")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH (scripts/setup.sh installs Debian's chromium)")


def screenshot(url, width, height, png):
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               f"--window-size={width},{height}", f"--screenshot={png}", url]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.skip("chromium did not finish within 90 s")
    if done.returncode != 0 or not os.path.exists(png):
        pytest.skip(f"chromium cannot start here (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    from PIL import Image
    return Image.open(png).convert("RGB")


def coloured(pixel):
    r, g, b = pixel
    return max(r, g, b) - min(r, g, b) > 60  # saturated: a series colour, not grey text or grid


def dark(pixel):
    return sum(pixel) < 3 * 110  # text is #222 on white; anti-aliased edges are lighter


def count(image, box, test):
    x0, y0, x1, y1 = (int(v) for v in box)
    pixels = image.crop((x0, y0, x1, y1)).getdata()
    return sum(1 for p in pixels if test(p))


def svg_size(text):
    match = re.search(r'<svg [^>]*width="([\d.]+)" height="([\d.]+)"', text)
    return int(float(match.group(1))), int(float(match.group(2)))


def chart_files():
    folder = os.path.join(OUT or "", "charts")
    return sorted(name for name in os.listdir(folder) if name.endswith(".svg")) if os.path.isdir(folder) else []


@pytest.mark.parametrize("name", chart_files() or ["(none)"])
def test_each_chart_draws_marks_and_labels(name, tmp_path):
    if name == "(none)":
        pytest.fail("no charts in $GMTOOL_INTEROP_OUT/charts: run the Swift ChartsTests with GMTOOL_INTEROP_OUT set first")
    path = os.path.join(OUT, "charts", name)
    width, height = svg_size(open(path).read())
    image = screenshot("file://" + os.path.abspath(path), width, height, str(tmp_path / "shot.png"))
    assert image.size == (width, height)
    # The plot area: inside the frame's margins (left 72+, top 44+, right and bottom margins
    # at least 110 and 58 px in every chart type).
    plot = (80, 50, width - 120, height - 70)
    area = (plot[2] - plot[0]) * (plot[3] - plot[1])
    marks = count(image, plot, coloured)
    assert marks > 0.003 * area, f"{name}: only {marks} coloured pixels in the plot area"
    # Title strip and the left strip (tick labels, the rotated y label) hold text.
    assert count(image, (0, 0, width, 36), dark) > 200, f"{name}: no title drawn"
    # Left of the y axis (x = 72 in line and bar charts; the heatmap's cells start at 96, its
    # row labels end at 90): the axis line itself is not counted.
    strip = 88 if name.startswith("heatmap") else 66
    # An 11 px digit is 15-25 dark pixels: more than 60 is at least a few tick labels (blank: 0).
    assert count(image, (0, 50, strip, height - 70), dark) > 60, f"{name}: no y-axis labels drawn"


def test_sweep_report_renders_every_chart(tmp_path):
    if not GMTOOL or not os.path.isdir(SHARED_DATA):
        pytest.skip("needs GMTOOL_BIN and ../shared/data")
    folder = tmp_path / "sweep"
    subprocess.run([GMTOOL, "sweep", os.path.join(REPO, "fixtures", "mobilenet_k2.h5"), "--beta", "0.02:0.2:4", "--gamma", "1e-3,inf",
                    "--data", SHARED_DATA, "--limit", "50", "--quiet", "-o", str(folder)], check=True, capture_output=True)
    image = screenshot("file://" + str(folder / "report.html"), 1000, 3000, str(tmp_path / "report.png"))
    # Four figures stacked in the page: each 400+ px tall band below the header has series colours.
    bands = [(0, 150 + 460 * i, 1000, 150 + 460 * (i + 1)) for i in range(4)]
    for band in bands:
        assert count(image, band, coloured) > 2000, f"report band {band} shows no chart"
