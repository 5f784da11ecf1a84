"""The browser chat end to end: `cdarec serve` on loopback, driven by Playwright in a
real headless Chromium (Debian's, installed by scripts/test.sh), on the small test
model. Open the page, send a message, see items and live steps, click feedback, see
the next turn change."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from cdarec.llm.server import free_port
from cdarec.settings import Settings
from tests.fixtures.serve import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def web(smol_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: scripts/test.sh installs Debian's chromium")
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "serve.log"
    s = smol_settings
    env = {
        **os.environ,
        "CDAREC_JUDGE_TOP": str(s.judge_top),
        "CDAREC_SHOW_TOP": str(s.show_top),
        "CDAREC_LLM_THREADS": str(s.llm_threads),
        "LANGSMITH_TRACING": "false",
    }
    cmd = [
        sys.executable,
        "-m",
        "cdarec.cli",
        "serve",
        "--port",
        str(port),
        "--home",
        str(s.home),
        "--dataset",
        s.dataset,
        "--device-model",
        s.device_model,
        "--cloud-model",
        s.cloud_model,
        "--user",
        "196",
    ]
    url = f"http://127.0.0.1:{port}"
    with serving(cmd, f"{url}/healthz", log, env=env):
        yield url, signin_link(log)


def signin_link(log: Path) -> str:
    """The one-off sign-in link `cdarec serve` printed at start."""
    found = re.search(r"(http://\S+/signin\?token=\S+)", log.read_text())
    assert found, f"serve printed no sign-in link:\n{log.read_text()[-2000:]}"
    return found.group(1)


def test_chat_in_a_real_browser(web: tuple[str, str], tmp_path: Path) -> None:
    url, link = web
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)  # signed out: only the sign-in form
        expect(page.locator("body[data-ready='signin']")).to_have_count(1, timeout=30_000)
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#chat")).to_be_hidden()
        page.goto(link)  # the printed link signs in as --user and lands on the chat
        expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=30_000)
        expect(page.locator("#who")).to_contain_text("196")

        page.fill("#message", "a funny animated movie")
        page.click("#send")
        items = page.locator(".turn").nth(0).locator("li.item")
        expect(items.first).to_be_visible(timeout=180_000)
        expect(page.locator("#steps .step.cloud").first).to_be_visible()
        expect(page.locator("#steps .step.device").first).to_be_visible()
        assert items.count() >= 2
        first_turn = items.evaluate_all("els => els.map(e => e.dataset.itemId)")
        # every item has its own reason (checked true on the device) and its signals
        reasons = items.locator(".why").all_inner_texts()
        assert all(r.strip() for r in reasons) and len(set(reasons)) == len(reasons), reasons
        assert items.first.locator(".chips span").count() >= 1
        # the header is a slim bar; the list is where the eye lands
        assert page.locator("header").bounding_box()["height"] < 60
        assert items.first.bounding_box()["y"] < 450
        page.screenshot(path=str(tmp_path / "chat-desktop.png"))

        # dislike the top item: it is saved on the device and never shown again
        items.first.locator("button.dislike").click()
        expect(page.locator(".turn .note").first).to_contain_text("disliked")
        page.fill("#message", "a funny animated movie")
        page.click("#send")
        second = page.locator(".turn").nth(1).locator("li.item")
        expect(second.first).to_be_visible(timeout=180_000)
        second_turn = second.evaluate_all("els => els.map(e => e.dataset.itemId)")
        assert first_turn[0] not in second_turn
        assert second_turn != first_turn
        page.screenshot(path=str(tmp_path / "chat.png"))
        # "more like this": a turn of its own, said as the click, the item not shown again
        anchor = second_turn[0]
        label = second.first.locator(".title").inner_text()
        second.first.locator("button.more").click()
        third = page.locator(".turn").nth(2)
        expect(third.locator(".you")).to_contain_text(f"more like {label}", timeout=30_000)
        expect(third.locator("li.item").first).to_be_visible(timeout=180_000)
        third_turn = third.locator("li.item").evaluate_all("els => els.map(e => e.dataset.itemId)")
        assert anchor not in third_turn, (label, third_turn)
        # a phone-sized window: one column, the list still on the first screen
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.locator("header").bounding_box()["height"] < 110
        first = page.locator(".turn").nth(0).locator("li.item").first
        first.scroll_into_view_if_needed()
        box = first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        page.screenshot(path=str(tmp_path / "chat-phone.png"))
        browser.close()
