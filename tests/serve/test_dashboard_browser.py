"""The supervisor dashboard in headless Chromium: a live alert appears and its conversation moves to the top.
And the API docs page (Swagger UI) renders every operation with requests to other hosts refused.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and ``pip install
playwright``; Playwright's own browser is never downloaded. Set
``TONEWATCH_DASHBOARD_SCREENSHOT=docs/dashboard.png`` to save the screenshot
shown in the docs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tonewatch.serve.app import create_app
from tonewatch.serve.config import ApiKey, ServeConfig

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WRITE_KEY = "browser-write-key-0123"
READ_KEY = "browser-read-key-01234"

# What the scripted model says of each text: (label, escalation score).
SCRIPT = {
    "Здравствуйте, у меня не работает интернет": ("calm", 0.02),
    "Я уже третий раз звоню, ну сколько можно": ("frustrated", 0.35),
    "Вы что там издеваетесь?! Позовите руководителя!": ("angry", 0.86),
    "你好，我想查一下话费": ("calm", 0.08),
    "怎么又扣费了，算了": ("frustrated", 0.3),
    "Подскажите, как сменить тариф?": ("calm", 0.06),
}


@pytest.fixture(scope="module")
def sync_playwright():
    api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return api.sync_playwright


def post(client: httpx.Client, conversation_id: str, speaker: str, text: str, **fields) -> dict:
    response = client.post(
        f"/v1/conversations/{conversation_id}/turns", json={"speaker": speaker, "text": text, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


def first_conversation_id(page) -> str | None:
    return page.evaluate("document.querySelector('#conversations .conversation')?.dataset.conversationId ?? null")


def test_dashboard_shows_a_live_alert_and_moves_its_conversation_to_the_top(
    sync_playwright, make_scripted, live_server, tmp_path
):
    config = ServeConfig(
        api_keys=[ApiKey(WRITE_KEY, ["write"], "telephony"), ApiKey(READ_KEY, ["read"], "supervisors")],
        alert={"cooldown_seconds": 0.0},
    )
    app = create_app(config, classifier=make_scripted(SCRIPT))
    with (
        live_server(app) as server,
        httpx.Client(base_url=server.url, headers={"X-API-Key": WRITE_KEY}, timeout=10) as client,
        sync_playwright() as playwright,
    ):
        # The conversation that will escalate starts calm, and others speak after it: it is not on top.
        post(client, "ru-call-17", "agent", "Добрый день, чем могу помочь?", lang="ru", queue="internet", team="north")
        post(client, "ru-call-17", "customer", "Здравствуйте, у меня не работает интернет")
        post(client, "zh-chat-3", "customer", "你好，我想查一下话费", lang="zh", queue="billing", team="east")
        post(client, "ru-chat-9", "customer", "Подскажите, как сменить тариф?", lang="ru", queue="billing")

        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            # The read key comes in the address (EventSource cannot send headers) and leaves it at once.
            page.goto(f"{server.url}/?key={READ_KEY}")
            page.wait_for_function("document.querySelectorAll('#conversations .conversation').length === 3")
            page.wait_for_function("document.getElementById('stream-status').textContent === 'live'")
            assert "key=" not in page.url
            assert first_conversation_id(page) != "ru-call-17"
            assert page.locator("#alerts .alert-event").count() == 0

            post(client, "ru-call-17", "agent", "Сейчас проверю, подождите")
            post(client, "ru-call-17", "customer", "Я уже третий раз звоню, ну сколько можно")
            post(client, "zh-chat-3", "customer", "怎么又扣费了，算了")
            post(client, "ru-call-17", "agent", "Приношу извинения, линия перегружена")
            raised = post(client, "ru-call-17", "customer", "Вы что там издеваетесь?! Позовите руководителя!")
            assert raised["alert"] is not None

            alert = page.locator('#alerts .alert-event[data-kind="alert"][data-conversation-id="ru-call-17"]')
            alert.wait_for(timeout=10_000)
            assert "Позовите руководителя" in alert.inner_text() and "angry" in alert.inner_text()
            # Why it fired: the reason with the turn that set it off, and the message for the supervisor.
            assert alert.locator('.reason-chip[data-reason="learnt_score"]').inner_text() == "learnt_score · turn 5"
            assert "escalation score is high (turn 5)" in alert.locator(".message").inner_text()
            page.wait_for_function(
                "document.querySelector('#conversations .conversation')?.dataset.conversationId === 'ru-call-17'",
                timeout=10_000,
            )
            top = page.locator("#conversations .conversation").first
            assert top.get_attribute("data-alert") == "true" and top.get_attribute("data-label") == "angry"
            assert top.locator('.reason-chip[data-reason="learnt_score"]').count() == 1
            assert "worsening" in top.inner_text()
            # The last turns are coloured by label.
            assert top.locator(".turn.label-angry").count() == 1 and top.locator(".turn.label-frustrated").count() == 1

            # A click on the alert opens the conversation.
            alert.click()
            page.locator("#detail").wait_for(state="visible")
            assert "ru-call-17" in page.locator("#detail-title").inner_text()
            page.wait_for_function("document.querySelectorAll('#detail-turns .turn').length === 6")
            assert not errors, errors
            screenshot = Path(os.environ.get("TONEWATCH_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
            page.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()


def test_the_api_docs_render_offline_from_this_server_alone(sync_playwright, scripted, live_server):
    app = create_app(ServeConfig(), classifier=scripted)
    operations = sum(len(item) for item in app.openapi()["paths"].values())
    with live_server(app) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requested: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            # Anything for another host is refused, as on a contact centre's network without internet.
            page.route(
                "**/*",
                lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort(),
            )
            page.goto(f"{server.url}/docs")
            page.wait_for_function(f"document.querySelectorAll('.opblock').length === {operations}", timeout=20_000)
            assert "/v1/conversations/{conversation_id}/turns" in page.content()
            assert not errors, errors
            assert f"{server.url}/openapi.json" in requested
            assert f"{server.url}/docs/assets/swagger-ui-bundle.js" in requested
            assert [url for url in requested if not url.startswith(server.url)] == []
        finally:
            browser.close()
