"""No secret in any shape, anywhere: runtime.redact's masking of each shape a secret takes, and
real gantrack commands against a real `mlflow server` with a password, whose output, project
files and server store are searched for every spelling of it. (PostgreSQL passwords:
tests/tuning/test_tuning.py.)"""

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

import pytest
from project import assert_no_file_holds, assert_nowhere, spellings, user_env
from servers import free_port, mlflow_server

from gantrack import config
from gantrack.runtime import redact, streams

# Breaks URL parsing unencoded: a space, '#', '@', '/', '%'. At least 12 characters (MLflow's
# rule for the admin password).
PASSWORD = "Qz7 vX#k@Lw/%9pN"
TOKEN = "tQk-8f3Zr1Lx0pWm"  # a bearer token and ?token= value


@pytest.fixture
def registry(monkeypatch):
    """An empty registry of known secrets, the environment not scanned."""
    monkeypatch.setattr(redact, "_secrets", set())
    monkeypatch.setattr(redact, "_known", None)
    monkeypatch.setattr(redact, "_environment_scanned", True)


# --- shapes: what the patterns find with no known secret ----------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://me:hunter2@host:5000/x", "http://me:***@host:5000/x"),
        ("postgresql+psycopg2://u:p@ss/w0rd@127.0.0.1:5432/db",
         "postgresql+psycopg2://u:***@127.0.0.1:5432/db"),
        ("sqlite:///a.db and http://u:pa ss@host/x", "sqlite:///a.db and http://u:***@host/x"),
        (f"http://admin:{quote(PASSWORD, safe='')}@h/#/x", "http://admin:***@h/#/x"),
        ("https://ghp_0123456789abcdefXYZ@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("GET /api?token=abc123&x=1", "GET /api?token=***&x=1"),
        ("https://h/p?password=pw1#frag", "https://h/p?password=***#frag"),
        ("https://h/p?a=1&access_token=ya29.x-y", "https://h/p?a=1&access_token=***"),
        ("https://acct.blob.core/c/b?sv=2024&sig=AbC%2Bd%3D&se=1",
         "https://acct.blob.core/c/b?sv=2024&sig=***&se=1"),
        ("https://h/?key=AIzaSy123&secret=s1&api_key=k1", "https://h/?key=***&secret=***&api_key=***"),
        ("https://b.s3/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=f00d",
         "https://b.s3/k?X-Amz-Credential=***&X-Amz-Signature=***"),
        ("next=https%3A%2F%2Fh%2F%3Ftoken%3Dabc123%26a%3D1",
         "next=https%3A%2F%2Fh%2F%3Ftoken%3D***%26a%3D1"),
        ("host=h port=5 password=xyz dbname=d", "host=h port=5 password=*** dbname=d"),
        ("password='pa ss' user=u", "password='***' user=u"),
        ("AccountName=a;AccountKey=Zm9v/YmFy==;EndpointSuffix=x",
         "AccountName=a;AccountKey=***;EndpointSuffix=x"),
        ("{'password': 'se\\'cret', 'user': 'u'}", "{'password': '***', 'user': 'u'}"),
        ('{"client_secret": "abc", "n": 1}', '{"client_secret": "***", "n": 1}'),
        ("http://h:5/?auth_key=akVALUE5678/api/2.0/x", "http://h:5/?auth_key=***"),
        ("GET /x?subscription-key=skVALUE9012&a=1", "GET /x?subscription-key=***&a=1"),
        ("http://ghp_abc123XYZ@127.0.0.1:5021/api", "http://***@127.0.0.1:5021/api"),
        # a password a URL parser reads as a port and a path (1234, then /Zq9...)
        ("http://alice:1234/Zq9xWv7@127.0.0.1:9/api", "http://alice:***@127.0.0.1:9/api"),
        ("postgresql://alice:2024#Zq9xWv7@h:9/db", "postgresql://alice:***@h:9/db"),
        # ... after a database's scheme, whatever host follows: SQLAlchemy reads it so
        ("postgresql://u:1234/a/b@db/x", "postgresql://u:***@db/x"),
        ("MYSQL+pymysql://root:3306?pw@dbhost/app", "MYSQL+pymysql://root:***@dbhost/app"),
        ("db:\n  password: s3cr3tpw", "db:\n  password: ***"),
        ("client_secret: abc123 next", "client_secret: *** next"),
        ("psql --password s3cr3tpw -h h", "psql --password *** -h h"),
        ('db:\n  password: "s3 cr3t"', 'db:\n  password: "***"'),
        ("x --db-password 's3cr3t' y", "x --db-password '***' y"),
        ("Authorization: Bearer eyJhbGciOi.abc", "Authorization: Bearer ***"),
        ('-H "authorization: Basic YWxpY2U6cHc="', '-H "authorization: Basic ***"'),
        ("sent bearer abcdefghijklmnop12", "sent bearer ***"),
        ("key id AKIAIOSFODNN7EXAMPLE used", "key id *** used"),
        (f"pushed with ghp_{'a1B2' * 9}.", "pushed with ***."),
        # no scheme: a command line, a proxy setting; a user name that is an e-mail address
        ("ssh alice:Zq9xWv7@db.example.com", "ssh alice:***@db.example.com"),
        ("proxy=bob:pw12x@10.0.0.1:3128", "proxy=bob:***@10.0.0.1:3128"),
        ("to user:pw@[::1]:5432", "to user:***@[::1]:5432"),
        ("postgresql://me@corp.com:pw9x@db/x", "postgresql://me@corp.com:***@db/x"),
    ],
)  # fmt: skip
def test_each_shape_is_masked_by_pattern(registry, text, masked):
    assert redact.mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:5000/#/experiments/1/runs/abc",
        "http://host:5000/#/models/gen@champion",
        "https://example.com:8080/users/@alice/x",
        "http://localhost:5000/gen@champion",
        "https://registry.npmjs.org:443/@scope/pkg",
        "Found 3 secrets: 2 masked; secrets.yaml: found",
        "docker login --password-stdin https://h/x --secret-dir /run/x",
        "basic settings, bearer of news",
        "gantrack sample --model models:/gantrack-generator@champion",
        "ssh://git@github.com/o/r.git",
        "sqlite:////tmp/p/mlflow.db",
        "prepared digits: 1437 train, 360 test images, 8x8x1, 10 classes",
        "23/23 - 6s - 267ms/step - d_fake: 0.4459 - d_loss: 0.8839 - g_loss: 0.9019",
        "train.lr_g=0.0002 tune.storage=None",
        "monkey=3 keyword=x oauth_state=1",
        "mailto:alice@example.com",
        "Mailto:alice@example.com",
        "python:3.11@sha256:4f2a9c",
        "git@github.com:o/r.git",
        "at 12:30@host.example.com",
    ],
)
def test_ordinary_text_is_left_alone(registry, text):
    assert redact.mask(text) == text


# --- known secrets: every spelling ----------------------------------------------------------


def test_a_known_secret_is_masked_in_every_spelling(registry):
    redact.add_secret(PASSWORD)
    for form in spellings(PASSWORD) - {p for p in spellings(PASSWORD) if len(p) == 6}:
        assert redact.mask(f"<{form}>") == "<***>", form
    # percent-encoded in part (quote's default keeps '/'), or doubly
    assert redact.mask(quote(PASSWORD, safe="/#")) == "***"
    assert redact.mask(quote(quote(PASSWORD, safe=""), safe="")) == "***"
    # JSON with non-ASCII escaped
    redact.add_secret("pässwörd-1")
    assert redact.mask(json.dumps({"p": "pässwörd-1"})) == '{"p": "***"}'


def test_a_password_with_a_space_and_at_in_a_url_is_masked_once_known(registry):
    text = f"View run x at: http://admin:{PASSWORD}@127.0.0.1:5000/#/experiments/1"
    assert "9pN" in redact.mask(text)  # no pattern can tell where such a password ends
    redact.add_secrets_in(f"http://admin:{PASSWORD}@127.0.0.1:5000")
    assert redact.mask(text) == "View run x at: http://admin:***@127.0.0.1:5000/#/experiments/1"


def test_a_database_urls_password_a_parser_reads_as_a_port_is_registered(registry):
    redact.add_secrets_in("postgresql://u:1234/a/b@db/x")
    assert redact.mask("could not connect with 1234/a/b") == "could not connect with ***"
    redact.add_secrets_in("http://h:5000/gen@champion")  # an alias: nothing to register
    assert redact.mask("5000/gen") == "5000/gen"


def test_the_environment_gives_its_secrets(registry):
    redact.add_environment({
        "MLFLOW_TRACKING_URI": f"http://admin:{quote(PASSWORD, safe='')}@127.0.0.1:5000",
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
        "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountKey=Zm9vYmFy==;",
        "MY_SERVICE_URL": "https://h/api?api_key=k-1234567",
        "DATABASE_DSN": "host=db password=dsn-pass-1",
        "PGPASSWORD": "pg-pass-1",
        "SMTP_PASS": "smtp-pass-1",
        "MYSQL_PWD": "mysql-pass-1",
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "Pw:d@/x%y",  # basic auth sends base64("alice:Pw:d@/x%y")
        "TOKENIZERS_PARALLELISM": "false",  # trivial values: everywhere in ordinary text
        "SOME_KEY_COUNT": "3",
        "PWD": "/work/project",  # the shell's working directory, not a password
        "HOME": "/root",
    })  # fmt: skip
    assert redact._secrets >= {PASSWORD, TOKEN, "wJalrXUtnFEMI/K7MDENG+bPxRfiCY", "Zm9vYmFy==",
                                "k-1234567", "dsn-pass-1", "pg-pass-1", "smtp-pass-1",
                                "mysql-pass-1"}  # fmt: skip
    assert not redact._secrets & {"false", "3", "/work/project", "/root"}
    assert redact.mask(f"a {TOKEN} b {PASSWORD}") == "a *** b ***"
    assert redact.mask("auth=*** YWxpY2U6UHc6ZEAveCV5") == "auth=*** ***"


def test_the_loaded_params_give_their_secrets(registry):
    storage = f"postgresql+psycopg2://gan:{PASSWORD}@127.0.0.1:5432/optuna"
    cfg = config.from_dict({"data": {"dataset": "digits"}, "tune": {"storage": storage}})
    redact.add_secrets_in(cfg)
    assert PASSWORD in redact._secrets
    assert redact.mask_values(
        {"tune.storage": storage, "train.epochs": 2, "a": None, "b": [f"?token={TOKEN}"]}
    ) == {
        "tune.storage": "postgresql+psycopg2://gan:***@127.0.0.1:5432/optuna",
        "train.epochs": 2,
        "a": None,
        "b": "['?token=***']",
    }


# --- streams ----------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True

    def fileno(self):
        return 7


def test_masking_stream_masks_whole_lines_and_forwards_the_rest(registry):
    redact.add_secret(TOKEN)
    out = _Terminal()
    stream = streams.MaskingStream(out)
    stream.write("token " + TOKEN[:5])  # a line in pieces waits for its end
    assert out.getvalue() == ""
    stream.write(TOKEN[5:] + " end\n")
    assert out.getvalue() == "token *** end\n"
    stream.write(f"\r 1/2 {TOKEN}")  # a progress bar: '\r', then a flush
    stream.flush()
    assert out.getvalue().endswith("\r 1/2 ***")
    assert stream.isatty() and stream.fileno() == 7


def test_masking_stream_masks_its_binary_buffer(registry):
    redact.add_secret(TOKEN)
    raw = io.BytesIO()
    stream = streams.MaskingStream(io.TextIOWrapper(raw, encoding="utf-8"))
    stream.write("text first, ")
    stream.buffer.write(f"then bytes {TOKEN}\n".encode())
    stream.flush()
    assert raw.getvalue() == b"text first, then bytes ***\n"
    # bytes without a newline are kept (each access made a new wrapper: they were lost) and
    # stay in order with text; the buffer's own attributes pass through
    stream.buffer.write(b"a")
    stream.write("b")
    stream.buffer.write(b"c")
    stream.flush()
    assert raw.getvalue().endswith(b"\nabc") and stream.buffer.closed is False


def test_warnings_are_masked(registry, capsys):
    redact.add_secret(TOKEN)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = streams._showwarning
        warnings.warn(f"could not reach ?token={TOKEN}", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "?token=***" in err and TOKEN not in err


def test_install_masks_prints_logging_warnings_and_tracebacks_of_the_process():
    """A fresh process: after install(), what libraries print, log and warn is masked."""
    code = f"""
import logging, sys, warnings
from gantrack.runtime import streams
streams.install()
logging.basicConfig()
print("View run at: http://admin:{quote(PASSWORD, safe="")}@127.0.0.1:5000/#/e/1")
sys.stdout.buffer.write(b"bytes {TOKEN}\\n")
logging.getLogger("sqlalchemy").warning("connect %s", {{"password": "{PASSWORD}"}})
warnings.warn("token {TOKEN}")
sys.stderr.write("progress {TOKEN}\\r")
raise RuntimeError("failed: {PASSWORD}")
"""
    env = {**user_env(), "MLFLOW_TRACKING_TOKEN": TOKEN,
           "GANTRACK_TUNE_STORAGE": f"postgresql://u:{PASSWORD}@127.0.0.1/db"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert_nowhere(PASSWORD, proc.stdout, proc.stderr)
    assert_nowhere(TOKEN, proc.stdout, proc.stderr)
    assert "http://admin:***@127.0.0.1:5000/#/e/1" in proc.stdout
    assert "bytes ***" in proc.stdout
    assert "RuntimeError: failed: ***" in proc.stderr and "progress ***" in proc.stderr


def test_run_file_masks_a_tracking_password_with_a_space(registry, tmp_path):
    import mlflow

    from gantrack import tracking

    uri = "postgresql://mlflow:pa ss word@127.0.0.1:5432/mlflow"
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        tracking.write_run_file(tmp_path / "run.json", "abc")
    finally:
        mlflow.set_tracking_uri(before)
    written = json.loads((tmp_path / "run.json").read_text())
    assert written["tracking_uri"] == "postgresql://mlflow:***@127.0.0.1:5432/mlflow"


# --- real commands, a real MLflow server with a password ------------------------------------

E2E = {"train": {"epochs": 1, "fid_every": 0}}
# MLflow's run context takes the git remote of the script that runs: one inside the project.
ENTRY = "import sys\nfrom gantrack.cli import main\nsys.exit(main())\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    with mlflow_server(root, free_port(), password=PASSWORD) as url:
        yield root, url


def _credentials(url: str, password: str = PASSWORD) -> str:
    return url.replace("http://", f"http://admin:{quote(password, safe='')}@")


def _gantrack(project: Path, *args: str, env: dict, entry: bool = False):
    cmd = [sys.executable, "run.py", *args] if entry else ["gantrack", *args]
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    return proc


@pytest.mark.slow
def test_pipeline_on_a_password_protected_server_leaks_the_password_nowhere(server, tiny_project):
    """prepare, train, generate, evaluate, then sample from the registry, on a basic-auth
    `mlflow server`, the password in the tracking URI (percent-encoded), a token in
    MLFLOW_TRACKING_TOKEN and in the git remote: neither appears in any output, project file or
    the server's store. (classifier and reference, which do not track, are ready.)"""
    root, url = server
    project = tiny_project(E2E)
    (project / "run.py").write_text(ENTRY)
    remote = f"https://ci:{PASSWORD}@git.example.com/gantrack.git?token={TOKEN}"
    subprocess.run(["git", "remote", "add", "origin", remote], cwd=project, check=True)
    env = {**user_env(), "MLFLOW_TRACKING_URI": _credentials(url),
           "MLFLOW_TRACKING_TOKEN": TOKEN}  # fmt: skip
    outputs = []
    commands = [["prepare"], ["train"], ["--verbose", "generate"],
                ["evaluate"], ["sample", "--model", "models:/gantrack-generator@champion",
                               "-n", "16", "--out", "champion.png"]]  # fmt: skip
    for args in commands:
        entry = args == ["train"]  # run.py: MLflow reads the git remote of the project
        proc = _gantrack(project, *args, env=env, entry=entry)
        assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
        outputs += [proc.stdout, proc.stderr]
    # MLflow printed its run links, credentials masked
    assert any("View run digits-" in o and "http://admin:***@127.0.0.1" in o for o in outputs)
    run_id = json.loads((project / "data/generated/run.json").read_text())["run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=_credentials(url))
    tags = client.get_run(run_id).data.tags
    assert "***" in tags["mlflow.source.git.repoURL"]  # MLflow's stripping misses a raw '#'
    assert (project / "metrics/eval.json").is_file() and (project / "champion.png").is_file()
    for secret in (PASSWORD, TOKEN):
        assert_nowhere(secret, *outputs)
        assert_no_file_holds(secret, project, root, skip=(project / ".git/config",))


def _failed(proc, command: str, message: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"gantrack {command}: error: ") and message in line, line
    return line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("unreachable", "MLflow store http://127.0.0.1:"),
        ("wrong", "failed with error code 401"),
        ("unencoded", "MLflow store http://admin:***@127.0.0.1:"),
    ],
)
def test_store_errors_mask_passwords_and_tokens(server, prepared, uri, message):
    """One error line, no secret: an unreachable server named with ?token=, a wrong password,
    and the password written into the URL unencoded (it cannot be parsed)."""
    root, url = server
    wrong = PASSWORD.replace("Q", "W")
    tracking_uri = {
        "unreachable": f"http://127.0.0.1:{free_port()}/?token={TOKEN}&access_token={TOKEN}",
        "wrong": _credentials(url, wrong),
        "unencoded": url.replace("http://", f"http://admin:{PASSWORD}@"),
    }[uri]
    env = {**user_env(), "MLFLOW_TRACKING_URI": tracking_uri}
    proc = _gantrack(prepared, "train", env=env)
    line = _failed(proc, "train", message)
    for secret in (PASSWORD, TOKEN, wrong):
        assert_nowhere(secret, proc.stdout, proc.stderr)
        assert_no_file_holds(secret, prepared)
    assert "***" in line
