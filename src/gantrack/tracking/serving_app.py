"""The ASGI app `gantrack serve` runs under uvicorn: MLflow's scoring server for the checked copy
of a generator that $GANTRACK_SERVED_MODEL names (what `mlflow models serve --env-manager
local` runs), behind a limit on a request's body.

MLflow reads a request's body whole and parses it as JSON, and uvicorn sets no limit: a 100 MB
body of noise vectors took 2.6 GB of the server before its refusal. The largest request a
generator answers (MAX_IMAGES noise vectors of the largest latent size, every float written
out) is under 7 MB; a body declaring more than MAX_BODY_BYTES, or sending more, gets an HTTP 413
before MLflow reads any of it.
"""

from __future__ import annotations

import json
import os

from gantrack.io.limits import human

MODEL_VARIABLE = "GANTRACK_SERVED_MODEL"
MAX_BODY_BYTES = 16 * 10**6


class BodyLimit:
    """An ASGI app: `app`, given each HTTP request's body once it is known to hold at most
    max_bytes (read here, then handed on whole); a 413 otherwise, the rest unread."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan: the app's own
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_bytes:
            return await self._refuse(send, declared.decode("latin-1")[:32])
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send, f"more than {self.max_bytes}")
            if not message.get("more_body", False):
                break
        body, handed = b"".join(chunks), False

        async def replay():
            nonlocal handed
            if handed:  # the app waits for a disconnect: the client's own
                return await receive()
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, send, size: str) -> None:
        message = (f"a request body of {size} bytes; at most {human(self.max_bytes)} are read "
                   "(a request names its images in a few bytes, or sends their noise)")  # fmt: skip
        answer = json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})


def create_app():
    """The app for the copy $GANTRACK_SERVED_MODEL names (uvicorn --factory, in the server)."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(os.environ[MODEL_VARIABLE])
    return BodyLimit(scoring_server.init(model), MAX_BODY_BYTES)
