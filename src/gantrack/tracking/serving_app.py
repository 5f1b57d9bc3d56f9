"""The ASGI app `gantrack serve` runs under uvicorn: MLflow's scoring server for the checked copy
of a generator that $GANTRACK_SERVED_MODEL names (what `mlflow models serve --env-manager
local` runs), behind a limit on a request's body.

MLflow reads a request's body whole and parses it as JSON, and uvicorn sets no limit: a 100 MB
body of noise vectors took 2.6 GB of the server before its refusal. The largest request a
generator answers (MAX_IMAGES noise vectors of the largest latent size, every float written
out) is 5.4 MB, 14 MB indented by 8; a body declaring more than MAX_BODY_BYTES, or sending more,
gets an HTTP 413 before MLflow reads any of it, and one that has not come within MLflow's
request timeout an HTTP 408.
"""

from __future__ import annotations

import asyncio
import json
import os

from gantrack.io.limits import human

MODEL_VARIABLE = "GANTRACK_SERVED_MODEL"
MAX_BODY_BYTES = 16 * 10**6


class BodyLimit:
    """An ASGI app: `app`, given each HTTP request's body once it is known to hold at most
    max_bytes and to have come within `seconds` (read here, then handed on whole); a 413 or a
    408 otherwise, the rest unread. (MLflow's own timeout covered the body's reading: a client
    sending it slowly, or never, must not hold a connection and its bytes for ever.)"""

    def __init__(self, app, max_bytes: int, seconds: float):
        self.app, self.max_bytes, self.seconds = app, max_bytes, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan: the app's own
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_bytes:
            return await self._too_large(send, declared.decode("latin-1")[:32])
        try:
            async with asyncio.timeout(self.seconds):
                body = await self._body(receive)
        except TimeoutError:
            return await _refuse(send, 408, f"the request body did not come within "
                                 f"{self.seconds:g} s")  # fmt: skip
        if body is None:  # the client went away
            return None
        if len(body) > self.max_bytes:
            return await self._too_large(send, f"more than {self.max_bytes}")
        handed = False

        async def replay():
            nonlocal handed
            if handed:  # the app waits for a disconnect: the client's own
                return await receive()
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _too_large(self, send, size: str) -> None:
        message = f"a request body of {size} bytes; at most {human(self.max_bytes)} are read"
        await _refuse(send, 413, message)

    async def _body(self, receive) -> bytes | None:
        """The body, or its first max_bytes + 1 bytes; None when the client went away."""
        chunks, size = [], 0
        while size <= self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _refuse(send, status: int, message: str) -> None:
    """An HTTP error answer in MLflow's shape; the connection is closed after it."""
    answer = json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(answer)).encode()),
                            (b"connection", b"close")]})  # fmt: skip
    await send({"type": "http.response.body", "body": answer})


def create_app():
    """The app for the copy $GANTRACK_SERVED_MODEL names (uvicorn --factory, in the server)."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(os.environ[MODEL_VARIABLE])
    seconds = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()  # MLflow's: 60 s unless set
    return BodyLimit(scoring_server.init(model), MAX_BODY_BYTES, seconds)
