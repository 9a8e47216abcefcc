"""The Swagger UI page (``/swagger/``) of the OpenAPI document, with its assets served by the
gateway itself from the swagger-ui-bundle-v2 package (``/swagger/assets/...``), so it works
offline. Public, also when API keys are configured."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from msgspec import Meta
from swagger_ui_bundle import swagger_ui_path

from ingest_gateway.errors import ApiError

SWAGGER_UI_VERSION = swagger_ui_path.name.removeprefix("swagger-ui-")
# The Swagger UI files the page needs, by name, with their content type: nothing else of the
# package's folder is served.
SWAGGER_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# The asset name path parameter, for the document.
AssetName = Annotated[str, Meta(extra_json_schema={"enum": sorted(SWAGGER_ASSETS)})]
ASSET_TYPES = tuple(sorted(set(SWAGGER_ASSETS.values())))

SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>WebhookMaster gateway API</title>
  <link rel="icon" type="image/png" href="/swagger/assets/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="/swagger/assets/favicon-16x16.png" sizes="16x16">
  <link rel="stylesheet" href="/swagger/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/swagger/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui",
                                 validatorUrl: null});
  </script>
  <noscript>The API description is at <a href="/api/openapi.json">/api/openapi.json</a>.
  </noscript>
</body>
</html>
"""


async def swagger_page(request: web.Request) -> web.Response:
    """``GET /swagger/``: the page."""
    return web.Response(text=SWAGGER_PAGE, content_type="text/html")


async def swagger_asset(request: web.Request) -> web.FileResponse:
    """``GET /swagger/assets/{name}``: one of :data:`SWAGGER_ASSETS`, else 404."""
    name = request.match_info["name"]
    if name not in SWAGGER_ASSETS:
        raise ApiError(404, "not_found", "no such Swagger UI file")
    return web.FileResponse(swagger_ui_path / name, headers={"Content-Type": SWAGGER_ASSETS[name]})
