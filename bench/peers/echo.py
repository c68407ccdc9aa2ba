"""A bare FastAPI endpoint on uvicorn, started as Modelyard starts its own: the transport ceiling.

    python -m bench.peers.echo PORT

``POST /echo`` reads the request body and answers a fixed 64-byte body.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request, Response

ANSWER = b"\0" * 64


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/octet-stream")

    return app


def main() -> None:
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="info")


if __name__ == "__main__":
    main()
