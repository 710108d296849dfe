"""The demo in a real browser: headless Chromium (Debian's package) driven by Playwright.

Chromium comes from the system (`apt-get install chromium`; `.ci/run` installs it); Playwright's own browser
download cannot work offline. Without Chromium the test is skipped, unless FLOWERS_REQUIRE_BROWSER=1 (as in CI).
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("FLOWERS_REQUIRE_BROWSER") != "1":
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.slow  # Chromium on the demo server

# Chromium's background services try to reach Google; on a closed network that only adds noise and delays.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page(demo_server):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(demo_server.url)
        yield page
        browser.close()


def test_upload_classify_and_read_the_top_label(page, tiny_run, tmp_path):
    photo = tmp_path / "flower.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photo)
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    expect(page.locator("#photo img")).to_be_visible(timeout=30_000)  # the upload is shown
    page.locator("#classify").click()

    from flowers_hf.serving.classifier import ImageClassifier

    classifier = ImageClassifier.from_pretrained(tiny_run)
    prediction = classifier.predict(photo)
    # The verdict heads the top 5: the name, or "Not a flower I know" below the model's unsure threshold.
    expected = next(iter(prediction))
    heading = "Not a flower I know" if classifier.is_unsure(prediction) else expected
    expect(page.locator("#verdict h3")).to_have_text(heading, timeout=60_000)
    first_row = page.locator("#prediction [data-testid$=confidence-set]").first
    expect(first_row).to_contain_text(expected, timeout=30_000)
    # The picture as the model saw it appears next to the label, and under it where it found the top class.
    expect(page.locator("#seen img")).to_be_visible(timeout=30_000)
    expect(page.locator("#why img")).to_be_visible(timeout=30_000)

    screenshot = Path(os.environ.get("DEMO_SCREENSHOT", tmp_path / "demo.png"))
    page.screenshot(path=str(screenshot), full_page=True)
    with Image.open(screenshot) as shot:
        assert shot.format == "PNG" and shot.size[0] >= 1280


def test_the_description_says_what_the_model_knows_with_the_i_upper_case(page):
    # The words are the verdict's, mid-sentence: only their first letter is lowered ("I" stays).
    description = page.locator("#description p").first
    expect(description).to_contain_text("says “not a flower I know” when it is unsure.", timeout=30_000)
    expect(description).to_contain_text("The model knows 6 classes")
    assert "i know" not in description.inner_text()


def test_bad_files_get_a_message_in_the_page_and_the_next_photo_works(page, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    page.reload()
    page.locator("#photo input[type=file]").set_input_files(str(text))  # Gradio's upload refuses it
    expect(page.get_by_text("Only image/* allowed")).to_be_visible(timeout=30_000)
    page.locator("#photo input[type=file]").set_input_files(str(broken))  # it passes as an image: the app decides
    page.locator("#classify").click()
    expect(page.get_by_text("not an image that can be read")).to_be_visible(timeout=30_000)

    photo = tmp_path / "flower.png"
    Image.new("RGB", (48, 48), (200, 40, 90)).save(photo)
    page.reload()
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    page.locator("#classify").click()
    expect(page.locator("#verdict h3")).to_be_visible(timeout=60_000)
