"""Swagger UI renders offline: a real headless Chromium (Debian's ``chromium``, installed by
scripts/bootstrap.sh) opens ``/swagger/`` on a real gateway with every non-loopback host name
unresolvable, and must show the operations list; a screenshot is kept in
``.wm-state/test-artifacts/``."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

from tests.support.gateway import LiveGateway, running_gateway
from tests.support.processes import run_bounded
from webhookmaster.settings import PROJECT_ROOT, Settings

ARTIFACTS = PROJECT_ROOT / ".wm-state" / "test-artifacts"
# Far above what a run takes on a loaded 2-core machine; only a hung browser reaches it.
BROWSER_TIMEOUT_S = 180
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,2400",
    # Offline: any host but the loopback gateway fails to resolve (a CDN asset would not load).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=10000",
]
ASSET_REF = re.compile(rb'(?:src|href)="([^"]+)"')


async def _chromium(url: str, profile: Path, *extra: str) -> bytes:
    """Run headless Chromium on ``url`` with ``extra`` flags; its standard output."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is missing: run scripts/bootstrap.sh"
    code, out, err = await run_bounded(
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *extra,
        url,
        timeout=BROWSER_TIMEOUT_S,
    )
    assert code == 0, err.decode(errors="replace")[-5_000:]
    return out


async def test_swagger_ui_renders_the_operations_offline(
    gateway: LiveGateway, tmp_path: Path
) -> None:
    page = await gateway.call("GET", "/swagger/")
    assert page.status == 200
    assert b"http://" not in page.body and b"https://" not in page.body  # nothing external
    dom = (await _chromium(f"{gateway.url}/swagger/", tmp_path / "dom", "--dump-dom")).decode()
    assert "opblock" in dom, dom[-5_000:]  # the operations list, not a blank page
    for text in (
        "/api/subscriptions/",
        "/api/ingest/{subscription_id}/",
        "/api/webhooks/",
        "Fan one event out to every matching active subscription",
        "WebhookMaster gateway",
    ):
        assert text in dom, text
    assert "Failed to load API definition" not in dom
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "swagger.png"
    shot.unlink(missing_ok=True)
    await _chromium(f"{gateway.url}/swagger/", tmp_path / "shot", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000, shot.stat().st_size  # a blank page is a few KB


async def test_swagger_page_and_assets_are_public_with_api_keys(wm_settings: Settings) -> None:
    keyed = dataclasses.replace(wm_settings, api_keys="only-key")
    async with running_gateway(keyed) as gw:
        page = await gw.call("GET", "/swagger/")
        assert page.status == 200
        refs = [ref.decode() for ref in ASSET_REF.findall(page.body)]
        assert sorted(refs) == [
            "/api/openapi.json",
            "/swagger/assets/favicon-16x16.png",
            "/swagger/assets/favicon-32x32.png",
            "/swagger/assets/swagger-ui-bundle.js",
            "/swagger/assets/swagger-ui.css",
        ], refs
        kinds = {
            ".js": "text/javascript",
            ".css": "text/css",
            ".png": "image/png",
            ".json": "application/json",
        }
        for ref in refs:
            reply = await gw.call("GET", ref)
            assert reply.status == 200, ref
            assert reply.headers["Content-Type"].startswith(kinds[Path(ref).suffix]), ref
            assert len(reply.body) > 500, ref
        bundle = await gw.call("GET", "/swagger/assets/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.body
        for name in ("index.html", "swagger-initializer.js", "..%2F__init__.py", "nope.css"):
            missing = await gw.call("GET", f"/swagger/assets/{name}")
            assert missing.status == 404 and missing.json["error"] == "not_found", name
        assert (await gw.call("GET", "/api/subscriptions/")).status == 401  # keys do apply
