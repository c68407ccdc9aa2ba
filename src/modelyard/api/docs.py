"""The interactive API documentation at ``/docs`` (Swagger UI), served without a CDN.

FastAPI's own ``/docs`` page loads Swagger UI's script and style sheet from a CDN, so it is
blank on a machine that cannot reach it. Here the page references only files that the
package ships (``api/static/swagger-ui``, see its README), served at ``/docs/static/{file}``.
ReDoc, which would need a CDN too, is not offered.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from modelyard.errors import NotFound

ASSETS = Path(__file__).parent / "static" / "swagger-ui"
STATIC = "/docs/static"
MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
"""The files the page loads, and their media types; nothing else is served."""


def install_docs(app: FastAPI, title: str) -> None:
    """Serve ``/docs``, its OAuth2 redirect page and its assets from the package.

    Build the app with ``docs_url=None, redoc_url=None`` so that FastAPI's CDN-backed pages
    are not registered as well.
    """

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - API documentation",
            swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            # The validator badge would call validator.swagger.io for every page view.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(STATIC + "/{file}", include_in_schema=False)
    def swagger_ui_asset(file: str) -> FileResponse:
        media_type = MEDIA_TYPES.get(file)
        if media_type is None:
            raise NotFound(f"no documentation asset named {file!r}")
        return FileResponse(
            ASSETS / file,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )


__all__ = ["install_docs"]
