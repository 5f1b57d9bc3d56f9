"""The registered generator behind a real `mlflow models serve --env-manager local` on 127.0.0.1:
one JSON request names how many images, which class (by index or name), a seed, a truncation
and a format; the older request (noise vectors) still works; bad requests are an HTTP 400
naming the problem. A real sqlite MLflow store and a class-conditional generator."""

import base64
import contextlib
import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import tiny
from PIL import Image
from project import live_processes, one_line_error, tracking_store, user_env
from servers import answers, free_port, model_server

from gantrack.gan import sampling, training
from gantrack.io import images
from gantrack.tracking import registry, serving

pytestmark = pytest.mark.slow  # a real model server

NAME = "served-generator"
CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress"]


@pytest.fixture(scope="module")
def _served(tmp_path_factory):
    """(project, URL of the champion's model server, the generator as gantrack loads it)."""
    project = tmp_path_factory.mktemp("serving")
    (project / "params.yaml").write_text("data:\n  dataset: digits\n")
    store = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("gantrack")
    gan = training.build_gan(tiny.MODEL, tiny.train_cfg(), tiny.SHAPE, 0, num_classes=4)
    with mlflow.start_run() as run:
        registry.log_generator(gan.sampler, class_names=CLASSES)
    registry.register_generator(run.info.run_id, NAME, "fid_classifier", 50.0, 300, "sha", "w")
    uri = f"models:/{NAME}@champion"
    env = {**user_env(), "MLFLOW_TRACKING_URI": store}
    with model_server(project, uri, free_port(), env) as url:
        yield project, url, registry.load_generator(uri)
    mlflow.set_tracking_uri(None)


@pytest.fixture
def served(_served):
    """_served, with MLflow's tracking URI on its store for the test."""
    with tracking_store(_served[0]):
        yield _served


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _images(url: str, **params) -> np.ndarray:
    status, answer = _post(url, {"inputs": [], "params": params})
    assert status == 200, answer
    return np.array(answer["predictions"])


def test_the_model_describes_its_request_and_its_images(served):
    project, _, _ = served
    info = mlflow.models.get_model_info(f"models:/{NAME}@champion")
    params = {p.name: p.default for p in info.signature.params.params}
    assert params == {"n": 1, "class": -1, "class_name": "", "seed": 0, "truncation": 0.0,
                      "format": "auto"}  # fmt: skip
    assert info.metadata == {"gantrack_generator": 1, "latent_dim": 8, "num_classes": 4,
                             "class_names": CLASSES, "image_shape": [8, 8, 1],
                             "max_images": serving.MAX_IMAGES}  # fmt: skip
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    folder = mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=project)
    example = json.loads((project / folder / "serving_input_example.json").read_text())
    assert example == {"inputs": [], "params": {"n": 2, "seed": 0, "format": "uint8",
                                                "class_name": "T-shirt"}}  # fmt: skip
    assert not list((project / folder).rglob("*.pkl"))  # nothing pickled


def test_a_class_by_index_or_name_is_what_gantrack_sample_draws(served):
    project, url, generator = served
    by_index = _images(url, n=3, **{"class": 3}, seed=5)
    assert by_index.shape == (3, 8, 8, 1) and by_index.min() >= 0 and by_index.max() <= 255
    np.testing.assert_array_equal(_images(url, n=3, class_name="Dress", seed=5), by_index)
    np.testing.assert_array_equal(_images(url, n=3, class_name="Dress", seed=5), by_index)
    store = f"sqlite:///{project / 'mlflow.db'}"  # the module's (not mlflow's global URI)
    proc = subprocess.run(["gantrack", "sample", "--model", f"models:/{NAME}@champion", "-n", "3",
                           "--seed", "5", "--class", "3", "--out", "three.npz"], cwd=project,
                          env={**user_env(), "MLFLOW_TRACKING_URI": store},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with np.load(project / "three.npz") as npz:
        assert np.abs(npz["images"].astype(int) - by_index).max() <= 1  # batch round-off
    # The class reaches the model: another class, another image from the same noise.
    assert not np.array_equal(_images(url, n=3, **{"class": 0}, seed=5), by_index)
    noise = np.random.default_rng(5).standard_normal((3, 8))
    assert (sampling.with_classes(noise, np.full(3, 3), 4)[:, :4].argmax(axis=1) == 3).all()
    # Seeds reproduce, and another seed draws other images.
    assert not np.array_equal(_images(url, n=3, **{"class": 3}, seed=6), by_index)


def test_truncation_draws_noise_within_the_bound(served):
    """The served model draws the truncated noise `gantrack sample --truncation` draws (the
    truncation itself: tests/gan/test_sampling.py): the same images as that noise sent."""
    _, url, generator = served
    drawn = _images(url, n=4, seed=1, truncation=0.5, format="uint8")
    noise = sampling.draw_noise(np.random.default_rng(1), (4, 8), 0.5)
    assert np.abs(noise).max() <= 0.5
    status, answer = _post(url, {"inputs": noise.tolist(), "params": {"format": "uint8"}})
    assert status == 200
    np.testing.assert_array_equal(np.array(answer["predictions"]), drawn)
    assert not np.array_equal(_images(url, n=4, seed=1), drawn)
    local = images.to_uint8(generator.predict(noise.astype(np.float32), verbose=0))
    assert np.abs(local.astype(int) - drawn).max() <= 1


def test_png_answers_decode_to_the_images(served):
    _, url, _ = served
    status, answer = _post(url, {"inputs": [], "params": {"n": 2, "seed": 3, "format": "png"}})
    assert status == 200
    pictures = [np.asarray(Image.open(io.BytesIO(base64.b64decode(p))))
                for p in answer["predictions"]]  # fmt: skip
    assert [p.shape for p in pictures] == [(8, 8), (8, 8)]
    np.testing.assert_array_equal(np.stack(pictures)[..., None], _images(url, n=2, seed=3))


def test_the_older_request_noise_in_still_answers_floats(served):
    _, url, _ = served
    noise = np.random.default_rng(0).standard_normal((2, 8))
    status, answer = _post(url, {"inputs": noise.tolist()})
    assert status == 200
    predictions = np.array(answer["predictions"])
    assert predictions.shape == (2, 8, 8, 1) and np.abs(predictions).max() <= 1.0
    status, answer = _post(url, {"inputs": noise.tolist(), "params": {"class_name": "Trouser"}})
    assert status == 200
    swapped = sampling.with_classes(noise, np.full(2, 1), 4)
    expected = _post(url, {"inputs": swapped.tolist()})[1]["predictions"]
    np.testing.assert_array_equal(np.array(answer["predictions"]), expected)


def test_noise_up_to_the_bound_answers_finite_floats(served):
    """Noise as large as the model takes (serving.MAX_NOISE; more is a 400, see below) still
    answers finite images: valid JSON, no NaN."""
    _, url, _ = served
    noise = np.random.default_rng(0).standard_normal((2, 8))
    noise[0, 0], noise[1] = serving.MAX_NOISE, -serving.MAX_NOISE
    status, answer = _post(url, {"inputs": noise.tolist(), "params": {"format": "float"}})
    assert status == 200, answer
    predictions = np.array(answer["predictions"])
    assert predictions.shape == (2, 8, 8, 1) and np.abs(predictions).max() <= 1.0


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"params": {"class_name": "Sneaker"}},
         "class_name: 'Sneaker' is not a class of this generator; its classes: 'T-shirt'"),
        ({"params": {"n": 0}}, "n: 0 is out of range; must be in 1..256"),
        ({"params": {"n": 10_000}}, "n: 10000 is out of range; must be in 1..256"),
        ({"params": {"class": 7}}, "class: 7 is out of range; this generator has classes 0..3"),
        ({"params": {"class": 1, "class_name": "Dress"}}, "name different classes"),
        ({"params": {"truncation": -1.0}}, "truncation: -1.0 is out of range"),
        ({"params": {"format": "jpeg"}}, "format: 'jpeg' is not one of auto, uint8, png, float"),
        ({"params": {"seed": -1}}, "seed: -1 is out of range"),
        ({"inputs": [[0.0, 1.0]]}, "inputs: noise of shape (1, 2); this generator takes (N, 8)"),
        ({"inputs": [["a"] * 8]}, "inputs: give [] or noise vectors"),
        ({"inputs": "A" * 100_000}, "inputs: give [] or noise vectors"),
        ({"inputs": {"z": [0.0] * 8}}, "inputs: give [] or noise vectors"),
        # JSON null is no value of a param (MLflow passes it on): refused, not the default.
        ({"params": {"n": None}}, "n: must be an integer, not null (leave n out for its "
                                  "default, 1)"),
        ({"params": {"class": None}}, "class: must be an integer, not null"),
        ({"params": {"class_name": None}}, "class_name: must be a string, not null"),
        ({"params": {"seed": None}}, "seed: must be an integer, not null"),
        ({"params": {"truncation": None}}, "truncation: must be a number, not null"),
        ({"params": {"format": None}}, "format: must be a string, not null"),
        ({"inputs": [[0.0] * 8], "params": {"n": None}}, "n: must be an integer, not null"),
        # Noise no N(0, 1) draw reaches (1e300 is inf in the generator's float32): refused.
        ({"inputs": [[1e300] + [0.0] * 7], "params": {"format": "float"}},
         "inputs: vector 0 holds 1e+300; noise entries must be finite numbers with |z| <= 100"),
        ({"inputs": [[0.0] * 8, [0.0] * 7 + [-1e300]], "params": {"format": "uint8"}},
         "inputs: vector 1 holds -1e+300"),
        ({"inputs": [[0.0] * 7 + [101.0]]}, "inputs: vector 0 holds 101"),
    ],
)  # fmt: skip
def test_bad_requests_are_a_400_naming_the_problem(served, request_, message):
    _, url, _ = served
    status, answer = _post(url, {"inputs": [], **request_})
    assert status == 400, answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in answer["message"], answer["message"]
    assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer)


def test_a_long_string_as_inputs_costs_no_memory(tmp_path):
    """NumPy turns a string into float64 through ~500 bytes per character: a 2 MB string sent
    as a request's inputs took the server a gigabyte. It is refused before any conversion."""
    script = """if True:
        import numpy as np
        from gantrack.tracking import serving
        def peak():  # kB
            return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
        before = peak()
        try:
            serving.sent_noise(np.asarray("A" * 2_000_000), 8)  # as MLflow's parser hands it
        except serving.RequestError as exc:
            print(exc)
        print(peak() - before)
    """
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=user_env(), timeout=120)  # fmt: skip
    message, grown = done.stdout.strip().splitlines()
    assert message.startswith("inputs: give [] or noise vectors"), done.stderr
    assert int(grown) < 100_000, f"{grown} kB more at the peak"


def _server_peak_kb(port: int) -> int:
    """The peak memory (VmHWM) of the uvicorn process serving on port."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if b"uvicorn" in args and str(port).encode() in args:
                status = (cmdline.parent / "status").read_text()
                return int(status.split("VmHWM:")[1].split()[0])
    raise AssertionError(f"no server on port {port}")


def _post_raw(port: int, head: bytes, chunks=()) -> tuple[int, dict]:
    """head (request line and headers) then chunks, on one connection, until the server
    answers or closes; (status, its JSON answer, or {"text": ...})."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(head)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for chunk in chunks:
                conn.sendall(chunk)
        answer = b""
        while data := conn.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        return int(head.split()[1]), json.loads(body)
    except json.JSONDecodeError:  # uvicorn's own refusals are text
        return int(head.split()[1]), {"text": body.decode(errors="replace")}


def test_a_request_body_past_the_limit_is_a_413_and_costs_the_server_nothing(served):
    """MLflow reads a body whole and parses it: 100 MB of noise vectors took the server 2.6 GB.
    A body declaring more than serving_app.MAX_BODY_BYTES, or sending more, is refused unread."""
    _, url, _ = served
    port = int(url.rsplit(":", 1)[1])
    declared = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000000\r\n\r\n")  # fmt: skip
    status, answer = _post_raw(port, declared)  # answered without waiting for a byte of it
    assert status == 413 and "at most 16.0 MB are read" in answer["message"], answer
    status, _ = _post_raw(port, declared.replace(b"1000000000", b"9" * 5000))  # int() refuses
    assert status in (400, 413)  # uvicorn's refusal of a long header, or gantrack's
    before = _server_peak_kb(port)
    row = b"[" + b", ".join([b"0.12345678901234567"] * 8) + b"], "
    body = [b'{"inputs": [', *[row * 10_000] * 256, b"[0.1]]}"]  # ~50 MB of noise vectors
    chunked = [b"%x\r\n%s\r\n" % (len(c), c) for c in body] + [b"0\r\n\r\n"]
    streamed = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    status, answer = _post_raw(port, streamed, chunked)
    assert status == 413 and "more than 16000000 bytes" in answer["message"], answer
    assert _server_peak_kb(port) - before < 100_000, "the body was read past the limit"
    assert _images(url, n=2, seed=1).shape == (2, 8, 8, 1)  # and it still answers


def test_a_body_that_does_not_come_in_time_is_a_408_and_a_whole_one_reaches_the_app():
    """The body is read before MLflow's app (and its timeout) sees the request: a client that
    sends part of it and waits must not hold the connection for ever."""
    import asyncio

    from gantrack.tracking.serving_app import BodyLimit

    handed = []

    async def app(scope, receive, send):
        handed.append(await receive())

    async def call(parts):
        sent, queue = [], list(parts)

        async def receive():
            if queue:
                return queue.pop(0)
            await asyncio.sleep(3600)  # the client waits

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "headers": [(b"content-length", b"100")]}
        await BodyLimit(app, 1000, seconds=0.2)(scope, receive, send)
        return sent

    start = time.monotonic()
    sent = asyncio.run(call([{"type": "http.request", "body": b"x" * 10, "more_body": True}]))
    assert sent[0]["status"] == 408 and time.monotonic() - start < 5 and not handed
    assert b"did not come within 0.2 s" in sent[1]["body"]
    parts = [{"type": "http.request", "body": b"ab", "more_body": True},
             {"type": "http.request", "body": b"c", "more_body": False}]  # fmt: skip
    assert asyncio.run(call(parts)) == [] and handed == [
        {"type": "http.request", "body": b"abc", "more_body": False}
    ]


def test_a_generator_of_large_images_answers_fewer_a_request():
    """At most serving.MAX_VALUES pixel values a request: 16 images of 256x256x3."""
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Reshape((256, 256, 3))(keras.layers.Dense(256 * 256 * 3)(inputs))
    generator = keras.Model(inputs, outputs)
    assert serving.max_images(generator) == 16
    assert np.asarray(serving.answer(generator, [], [], {"n": 16})).shape == (16, 256, 256, 3)
    with pytest.raises(serving.RequestError, match=r"n: 17 is out of range; must be in 1\.\.16"):
        serving.answer(generator, [], [], {"n": 17})
    with pytest.raises(serving.RequestError, match="17 noise vectors; at most 16"):
        serving.answer(generator, [], np.zeros((17, 4)).tolist(), {})
    assert serving.describe(generator)["max_images"] == 16


def test_serve_refuses_a_busy_port_or_an_unknown_host_in_one_line(tmp_path):
    """Before any model loads (it was MLflow's traceback, after the download)."""
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 1\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(["gantrack", "serve", "--model", "models:/g@champion", "-p",
                               str(port)], cwd=tmp_path, env=user_env(), capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    one_line_error(proc, "serve", f"--port: cannot listen on 127.0.0.1:{port} (Address "
                   "already in use); choose another port or host")  # fmt: skip
    proc = subprocess.run(["gantrack", "serve", "--model", "models:/g@champion", "--host",
                           "no.such.host.invalid"], cwd=tmp_path, env=user_env(),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    one_line_error(proc, "serve", "--host: no.such.host.invalid cannot be resolved")


def test_an_unconditional_generator_refuses_a_class(tmp_path):
    """The served model, as `mlflow models serve` loads it, without a server: no classes."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("gantrack")
    try:
        with mlflow.start_run():
            registry.log_generator(tiny.gan().sampler)
            uri = f"runs:/{mlflow.active_run().info.run_id}/generator"
        model = mlflow.pyfunc.load_model(uri)
        assert model.metadata.metadata["class_names"] == []
        with pytest.raises(mlflow.exceptions.MlflowException, match="not class-conditional"):
            model.predict([], params={"class": 0})
        assert np.array(model.predict([], params={"n": 2})).shape == (2, 8, 8, 1)
    finally:
        mlflow.set_tracking_uri(None)


def test_gantrack_serve_without_the_venv_on_path_stops_with_its_server_on_sigterm(served, tmp_path):
    """Started by its full path (no activated environment: MLflow finds uvicorn anyway), it
    answers; SIGTERM to gantrack alone is one line and exit 143, and takes MLflow's server and
    the checked copy with it: the port is free again."""
    project, _, _ = served
    port = free_port()
    store = f"sqlite:///{project / 'mlflow.db'}"  # the module's (not mlflow's global URI)
    env = {**user_env(), "MLFLOW_TRACKING_URI": store, "PATH": "/usr/bin:/bin",
           "TMPDIR": str(tmp_path)}  # fmt: skip
    gantrack = str(Path(sys.executable).parent / "gantrack")
    proc = subprocess.Popen([gantrack, "serve", "--model", f"models:/{NAME}@champion", "-p",
                             str(port)], cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not answers(f"{url}/ping"):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "gantrack serve did not come up"
            time.sleep(0.5)
        assert list(tmp_path.glob("gantrack-*/gantrack-serve-*"))  # the checked copy it serves
        assert _images(url, n=2, seed=1).shape == (2, 8, 8, 1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "gantrack serve: stopped by SIGTERM" in stderr.splitlines()
    assert not answers(f"{url}/ping") and not list(tmp_path.iterdir())  # its folder too


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_gantrack_serve_killed_with_9_takes_its_server_along_and_gave_it_no_secrets(served):
    """kill -9 cannot be handled: the server ends anyway (a parent-death signal), and the port is
    free again. The server never held the environment's secrets (it needs none)."""
    project, _, _ = served
    port = free_port()
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
           "PGPASSWORD": "hunter2-serve", "AWS_SECRET_ACCESS_KEY": "aws-hunter2",
           "HTTPS_PROXY": "http://u:hunter2-proxy@127.0.0.1:9"}  # fmt: skip
    proc = subprocess.Popen(["gantrack", "serve", "--model", f"models:/{NAME}@champion", "-p",
                             str(port)], cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not answers(f"{url}/ping"):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.5)
        (server,) = live_processes(parent=proc.pid)
        environ = Path(f"/proc/{server}/environ").read_bytes()
        assert b"hunter2" not in environ and b"MLFLOW_TRACKING_URI" not in environ
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while answers(f"{url}/ping") or _alive(server):
            assert time.monotonic() < deadline, "the server outlived gantrack serve"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
