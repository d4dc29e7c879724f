"""/docs in a real headless Chromium against the user service running as a process.

Chromium is Debian's (`.ci/run` installs it); Playwright drives it. Playwright's own browser
download is not used: it comes from a CDN that this project's machines cannot reach.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _chromium() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but no Chromium: .ci/run installs Debian's `chromium`")
    pytest.skip("no Chromium on this machine (apt-get install chromium, or set CHROMIUM_PATH)")


def _spec_operations(spec_path: Path) -> set[tuple[str, str]]:
    spec = yaml.safe_load(spec_path.read_text())
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


@pytest.mark.parametrize("service", ["user_service", "product_service", "order_service"])
def test_docs_lists_every_operation_and_try_it_out_reaches_the_service(service, request, tmp_path):
    executable = _chromium()
    running = request.getfixturevalue(service)
    from playwright.sync_api import expect, sync_playwright

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            offline_misses: list[str] = []
            page.on(
                "requestfailed",
                lambda request: offline_misses.append(request.url),
            )
            page.goto(f"{running.url}/docs")
            page.wait_for_selector(".opblock", timeout=20_000)

            shown = {
                (
                    str(block.get_attribute("class")).split("opblock-")[1].split()[0],
                    block.locator(".opblock-summary-path").get_attribute("data-path"),
                )
                for block in page.locator(".opblock").all()
            }
            assert shown == _spec_operations(Path(service, "openapi.yaml"))
            expect(page.locator("button.authorize")).to_be_visible()

            health = page.locator(".opblock-get").filter(
                has=page.locator('.opblock-summary-path[data-path="/health"]')
            )
            health.locator(".opblock-summary").click()
            health.locator("button.try-out__btn").click()
            health.locator("button.execute").click()
            status = health.locator(".live-responses-table .response .response-col_status")
            expect(status.first).to_have_text("200", timeout=10_000)
            expect(health.locator(".request-url")).to_contain_text(f"{running.url}/health")

            page.screenshot(path=str(artifacts / f"{service}-docs.png"), full_page=True)
            assert offline_misses == [], "every asset is served by the service itself"
        finally:
            browser.close()
    assert (artifacts / f"{service}-docs.png").stat().st_size > 10_000
