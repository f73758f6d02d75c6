"""Tests of the web page at GET /: its static files, and the page in headless Chromium.

The browser tests need Debian's chromium (`apt-get install -y chromium`) and the Python
`playwright` package (the `test` extra); they are skipped when either is missing. They use
the system Chromium, so `playwright install` is never needed. Screenshots go to
test-artifacts/ at the repository root.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.routes.page import STATIC_DIR
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
CHROMIUM_PATH = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
MAX_TEXT_CHARS = 120  # small, so that the page can go over it cheaply
HINDI_TEXT = "मैं घर जा रहा हूँ। आज मौसम साफ़ है।"
SERVER_START_TIMEOUT_S = 30
UI_TIMEOUT_MS = 30_000  # the model shares the CPU with whatever else runs
DESKTOP_VIEWPORT = {"width": 1100, "height": 900}
PHONE_VIEWPORT = {"width": 390, "height": 844}


# --- Static files, through the app (no browser needed) ---


@pytest.fixture
def page_client(service_settings, fake_translator) -> Iterator[TestClient]:
    with TestClient(create_app(service_settings, fake_translator)) as client:
        yield client


def test_index_served(page_client: TestClient) -> None:
    response = page_client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    assert 'src="static/app.js"' in response.text


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")],
)
def test_static_file_served(page_client: TestClient, path: str, media_type: str) -> None:
    response = page_client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)


def test_page_not_in_openapi(page_client: TestClient) -> None:
    paths = page_client.get("/openapi.json").json()["paths"]

    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


def test_static_files_reference_no_other_host() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    css = (STATIC_DIR / "style.css").read_text(encoding="utf-8")

    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in css
    assert not re.search(r"url\(", css)


def test_limits_decoder_layers_null_without_model(page_client: TestClient) -> None:
    # FakeTranslator has no model, like the ctranslate2 engine's translator.
    assert page_client.get("/limits").json()["decoder_layers"] is None


def test_index_has_attention_note() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    assert re.search(r'<input id="show-attention"[^>]*aria-describedby="attention-note"', html)
    assert re.search(r'<p id="attention-note"[^>]*hidden', html)


# --- app.js in Node, with stand-ins for the DOM and the API (no browser needed) ---

NODE_PATH = shutil.which("node")
PAGE_HARNESS = Path(__file__).parent / "page_harness.js"
NODE_TIMEOUT_S = 30
LIMITS = {
    "max_text_chars": 200,
    "max_texts": 4,
    "max_body_bytes": 4096,
    "default_beam_size": 4,
    "max_beam_size": 8,
    "max_alternatives": 3,
    "max_output_tokens": 100,
}


def run_page(decoder_layers: int | None) -> dict:
    """Load app.js in Node against a ready server with `decoder_layers`, click Translate."""
    if NODE_PATH is None:
        pytest.skip("node is not installed; run: apt-get install -y nodejs")
    limits = json.dumps({**LIMITS, "decoder_layers": decoder_layers})
    completed = subprocess.run(
        [NODE_PATH, str(PAGE_HARNESS), str(STATIC_DIR / "app.js"), limits],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_page_without_attention_disables_checkbox() -> None:
    state = run_page(decoder_layers=None)

    assert state["checked"] is False
    assert state["disabled"] is True
    assert "no attention maps" in state["title"]
    assert state["noteHidden"] is False
    assert state["layerDisabled"] is True
    assert len(state["sent"]) == 1
    assert "return_attention" not in state["sent"][0]
    assert "attention_layer" not in state["sent"][0]


def test_page_with_attention_keeps_checkbox() -> None:
    state = run_page(decoder_layers=2)

    assert state["checked"] is True
    assert state["disabled"] is False
    assert state["title"] == ""
    assert state["noteHidden"] is True
    assert state["sent"] == [{"text": "नमस्ते", "return_attention": True}]


# --- The page in headless Chromium ---


@pytest.fixture(scope="module")
def server_url(tiny_model_dir: Path) -> Iterator[str]:
    """Run the service with the tiny model on a free loopback port; yield its base URL."""
    import uvicorn

    settings = Settings(
        model_dir=tiny_model_dir,
        max_text_chars=MAX_TEXT_CHARS,
        batch_window_ms=1,
        torch_threads=1,
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="web-page-server", daemon=True
    )
    thread.start()

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        pytest.fail(f"the service did not start on 127.0.0.1:{port}")
    yield f"http://127.0.0.1:{port}/"

    server.should_exit = True
    thread.join(SERVER_START_TIMEOUT_S)
    listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM_PATH).is_file():
        pytest.skip("chromium is not installed; run: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed; run: pip install -e '.[test]'")

    with sync_playwright() as playwright:
        # Playwright starts each browser with a fresh temporary profile.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server_url: str) -> Iterator:
    """A new page on the service, ready to translate; fails on requests to any other host."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP_VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    own_host = urlsplit(server_url).netloc
    foreign: list[str] = []

    def block_other_hosts(route) -> None:
        if urlsplit(route.request.url).netloc == own_host:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", block_other_hosts)
    page.goto(server_url)
    expect(page.locator("#status")).to_contain_text("Ready", timeout=UI_TIMEOUT_MS)
    yield page

    context.close()
    assert foreign == [], f"the page requested other hosts: {foreign}"


def translate_requests(page) -> list[str]:
    """Record the URLs of POST /translate requests that the page sends from now on."""
    sent: list[str] = []

    def record(request) -> None:
        if request.method == "POST" and request.url.endswith("/translate"):
            sent.append(request.url)

    page.on("request", record)
    return sent


def test_page_translates_with_attention(page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#counter")).to_have_text(f"0 / {MAX_TEXT_CHARS} characters")
    page.locator("#options summary").click()
    page.locator("#alternatives-count").fill("2")
    page.locator("#source").fill(HINDI_TEXT)
    expect(page.locator("#counter")).to_have_text(
        f"{len(HINDI_TEXT)} / {MAX_TEXT_CHARS} characters"
    )
    page.get_by_role("button", name="Translate").click()

    expect(page.locator("#result")).not_to_be_empty()
    assert page.locator("#result").inner_text().strip()
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#details")).to_contain_text("score")
    expect(page.locator("#alternatives li")).to_have_count(2)
    expect(page.locator("#alternatives li").first).to_contain_text("score")
    expect(page.locator("#copy")).to_be_enabled()

    # One heatmap per sentence, with a label for every token and a cell for every weight.
    heatmaps = page.locator("svg.attention-map")
    expect(heatmaps).to_have_count(2)
    for index in range(2):
        heatmap = heatmaps.nth(index)
        box = heatmap.bounding_box()
        assert box is not None
        assert box["width"] > 0
        assert box["height"] > 0
        shape = re.search(
            r"(\d+) English tokens by (\d+) Hindi tokens", heatmap.get_attribute("aria-label")
        )
        assert shape is not None
        rows, columns = int(shape.group(1)), int(shape.group(2))
        assert rows > 0
        assert columns > 0
        assert heatmap.locator("rect.cell").count() == rows * columns
        assert heatmap.locator("text").count() == rows + columns

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "web-page.png"), full_page=True)


def test_page_ctrl_enter_translates(page) -> None:
    from playwright.sync_api import expect

    sent = translate_requests(page)
    page.locator("#source").fill(HINDI_TEXT)
    page.locator("#source").press("Control+Enter")

    expect(page.locator("#result")).not_to_be_empty()
    assert len(sent) == 1


def test_page_shows_over_limit_error(page) -> None:
    from playwright.sync_api import expect

    page.locator("#source").fill("क" * (MAX_TEXT_CHARS + 5))
    expect(page.locator("#counter")).to_have_class(re.compile(r"\bover\b"))
    expect(page.locator("#counter")).to_contain_text("5 over the limit")
    page.get_by_role("button", name="Translate").click()

    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"over the limit of {MAX_TEXT_CHARS} characters")
    expect(error).to_contain_text("422")
    expect(page.locator("#result")).to_be_empty()

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "web-page-error.png"), full_page=True)


def test_page_shows_empty_input_error(page) -> None:
    from playwright.sync_api import expect

    page.locator("#source").fill("   ")
    page.get_by_role("button", name="Translate").click()

    expect(page.locator("#error")).to_contain_text("must not be empty")


def test_page_shows_unreachable_server(page) -> None:
    from playwright.sync_api import expect

    page.route("**/translate", lambda route: route.abort("connectionrefused"))
    page.locator("#source").fill(HINDI_TEXT)
    page.get_by_role("button", name="Translate").click()

    expect(page.locator("#error")).to_contain_text("Could not reach the translation service")


def test_page_fits_phone_width(page) -> None:
    from playwright.sync_api import expect

    page.set_viewport_size(PHONE_VIEWPORT)
    page.locator("#source").fill(HINDI_TEXT)
    page.get_by_role("button", name="Translate").click()
    expect(page.locator("svg.attention-map")).to_have_count(2)

    # Wide heatmaps scroll inside their own box; the page itself never scrolls sideways.
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= PHONE_VIEWPORT["width"]
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "web-page-phone.png"), full_page=True)
