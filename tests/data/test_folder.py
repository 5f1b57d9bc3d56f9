"""`data.dataset: folder`: the user's own image files, written here with Pillow in several
formats, sizes and modes, read by `gantrack prepare`."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from project import TINY, make_project, mlflow_client, run, set_params, user_env

from gantrack import config, data
from gantrack.config import DataConfig
from gantrack.runtime.errors import UserError

FORMATS = [("png", "RGB"), ("jpg", "L"), ("bmp", "RGB"), ("gif", "P"), ("png", "RGBA")]


def _write(folder: Path, n: int, colour, size=(40, 30)) -> None:
    """n images of one colour, cycling through formats, sizes and modes."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        suffix, mode = FORMATS[i % len(FORMATS)]
        image = Image.new("RGB", (size[0] + i, size[1] + 2 * i), colour)
        image = image.convert(mode) if mode != "RGBA" else image.convert("RGBA")
        image.save(folder / f"img{i:03d}.{suffix}")


def _prepare(project: Path, source: Path, size: int = 8) -> subprocess.CompletedProcess:
    """`gantrack prepare` in project (made if missing) on the images in source, at size."""
    project.mkdir(exist_ok=True)
    (project / "params.yaml").write_text(
        f"data:\n  dataset: folder\n  source_dir: {source}\n  image_size: {size}\n"
    )
    return subprocess.run(["gantrack", "prepare"], cwd=project, env=user_env(),
                          capture_output=True, text=True)  # fmt: skip


@pytest.fixture
def classes(tmp_path) -> Path:
    root = tmp_path / "images"
    _write(root / "cats", 10, (200, 30, 30))
    _write(root / "dogs", 10, (30, 30, 200))
    return root


def test_a_folder_of_class_subfolders_becomes_labelled_square_splits(classes):
    train, test = data.load_dataset(
        DataConfig(dataset="folder", source_dir=str(classes), image_size=16), 0
    )
    assert train.images.shape[1:] == (16, 16, 3) and train.images.dtype == np.uint8
    assert len(train) + len(test) == 20 and len(test) == 4
    assert sorted(set(test.labels.tolist())) == [0, 1]  # stratified: both classes held out
    images = np.concatenate([train.images, test.images])
    labels = np.concatenate([train.labels, test.labels])
    red, blue = images[labels == 0].mean(axis=(0, 1, 2)), images[labels == 1].mean(axis=(0, 1, 2))
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]  # cats (sorted first) are red
    same, _ = data.load_dataset(
        DataConfig(dataset="folder", source_dir=str(classes), image_size=16), 0
    )
    np.testing.assert_array_equal(same.images, train.images)  # seeded


def test_grayscale_images_give_one_channel_unless_told_otherwise(tmp_path):
    root = tmp_path / "gray"
    root.mkdir()
    for i in range(12):
        Image.new("L", (20 + i, 20), 60 + 10 * i).save(root / f"{i}.png")
    train, _ = data.load_dataset(DataConfig(dataset="folder", source_dir=str(root), image_size=8))
    assert train.images.shape[1:] == (8, 8, 1) and set(train.labels.tolist()) == {0}
    rgb, _ = data.load_dataset(
        DataConfig(dataset="folder", source_dir=str(root), image_size=8, channels=3)
    )
    assert rgb.images.shape[1:] == (8, 8, 3)


def test_unreadable_files_are_skipped_and_counted_or_refused(classes, caplog):
    (classes / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (classes / "dogs" / "notes.txt").write_text("not an image, not listed")
    train, test = data.load_dataset(
        DataConfig(dataset="folder", source_dir=str(classes), image_size=16)
    )
    assert len(train) + len(test) == 20
    assert "skipped 1 unreadable file(s), the first" in caplog.text and "broken.jpg" in caplog.text
    with pytest.raises(UserError, match=r"broken\.jpg is not a readable image .*bad_images: skip"):
        data.load_dataset(
            DataConfig(
                dataset="folder", source_dir=str(classes), image_size=16, bad_images="refuse"
            )
        )


def test_a_class_folder_may_be_a_symbolic_link_and_links_below_are_skipped(classes, caplog):
    """`birds -> elsewhere/birds` is a class (it was silently dropped); a link to a folder
    inside a class folder (here to the root itself: a loop) is skipped with a warning."""
    elsewhere = classes.parent / "elsewhere"
    _write(elsewhere / "birds", 10, (30, 200, 30))
    (classes / "birds").symlink_to(elsewhere / "birds")
    (classes / "dogs" / "linked.png").symlink_to(elsewhere / "birds" / "img000.png")
    (classes / "cats" / "loop").symlink_to(classes)
    train, test = data.load_dataset(
        DataConfig(dataset="folder", source_dir=str(classes), image_size=16)
    )
    assert len(train) + len(test) == 31  # ten birds, the linked file among the dogs
    assert sorted(set(train.labels.tolist())) == [0, 1, 2]
    assert f"{classes / 'cats' / 'loop'}: skipped, a symbolic link to a folder" in caplog.text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "holds 0 readable image(s); at least 10"),
        (lambda root: _write(root, 3, (0, 0, 0)), "holds 3 readable image(s)"),
        (lambda root: None, "is not a folder"),
        (lambda root: (_write(root / "a", 10, (0, 0, 0)), _write(root, 1, (9, 9, 9))),
         "both at its top level"),
    ],
)  # fmt: skip
def test_bad_folders_are_one_line(tmp_path, make, message):
    make(tmp_path / "images")
    with pytest.raises(UserError, match="data.source_dir: ") as error:
        data.load_dataset(
            DataConfig(dataset="folder", source_dir=str(tmp_path / "images"), image_size=16)
        )
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("data_params", "message"),
    [
        ({"dataset": "folder", "source_dir": "x"}, "data.image_size: required with"),
        ({"dataset": "folder", "source_dir": "x", "image_size": 64, "generator_layers": 2},
         "model.generator.layers: 2 is too few for 64x64"),
        ({"dataset": "fashion_mnist", "image_size": 64}, "data.image_size: only for folder"),
        ({"dataset": "folder", "image_size": 64, "channels": 2}, "data.channels: "),
    ],
)  # fmt: skip
def test_folder_params_are_checked_before_anything_runs(data_params, message):
    data_params = dict(data_params)
    model = {"generator": {"layers": data_params.pop("generator_layers", "auto")}}
    with pytest.raises(UserError, match=message):
        config.from_dict({"data": data_params, "model": model})


def test_auto_layers_reach_any_folder_size():
    for size in (16, 28, 32, 64, 128):
        cfg = config.from_dict({"data": {"dataset": "folder", "source_dir": "x",
                                         "image_size": size}})  # fmt: skip
        assert cfg.model.generator.layers == "auto"


def test_gantrack_prepare_on_a_folder_and_on_an_empty_one(classes, tmp_path):
    project = tmp_path / "project"
    done = _prepare(project, classes, 28)
    assert done.returncode == 0, done.stderr
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "folder" and meta["shape"] == [28, 28, 3]
    assert meta["n_classes"] == 2 and meta["n_train"] + meta["n_test"] == 20
    assert meta["class_names"] == ["cats", "dogs"]  # the subfolders, by label
    (tmp_path / "empty").mkdir()
    before = (project / "data/prepared/train.npz").read_bytes()
    refused = _prepare(project, tmp_path / "empty", 28)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("gantrack prepare: error: data.source_dir: ") and "0 readable" in line
    assert (project / "data/prepared/train.npz").read_bytes() == before  # nothing half written


@pytest.mark.slow
def test_a_flat_folder_runs_the_whole_pipeline_with_inception_fid(tmp_path, inception_weights):
    """The README's own-images command on images without labels: no classifier is trained,
    FID is on Inception features and says so, and the run lands in MLflow."""
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(30):
        Image.new("RGB", (30 + i, 24), (8 * i, 255 - 8 * i, 90)).save(root / f"{i:02d}.png")
    project = make_project(tmp_path, {**TINY, "generate": {"n_samples": 40}})
    set_params(project, {"evaluate": {"inception_weights": str(inception_weights),
                                      "kid_subset_size": 20, "batch_size": 20},
                          "train": {"batch_size": 8}})  # fmt: skip
    run(project, "git", "commit", "-qam", "weights")
    done = run(project, "dvc", "exp", "run", "-S", "data.dataset=folder",
               "-S", f"data.source_dir={root}", "-S", "data.image_size=16")  # fmt: skip
    assert "no classifier" in done.stderr + done.stdout
    assert [p.name for p in (project / "models/classifier").iterdir()] == ["NOT_TRAINED.txt"]
    results = json.loads((project / "metrics/eval.json").read_text())
    assert results["n_generated_inception"] == 40 and results["fid_inception"] > 0
    assert not any(k.startswith(("fid_classifier", "classifier_")) for k in results)
    (run_,) = mlflow_client(project).search_runs(
        [mlflow_client(project).get_experiment_by_name("gantrack").experiment_id]
    )
    assert run_.data.metrics["fid_inception"] == pytest.approx(results["fid_inception"])
    assert run_.data.params["data.dataset"] == "folder"
    assert run_.data.tags["dataset.source"] == str(root.resolve())
    (dataset,) = run_.inputs.dataset_inputs  # MLflow's dataset input: digest and shape
    assert json.loads(dataset.dataset.profile)["features_shape"] == [24, 16, 16, 3]
    assert "fid_classifier_n100" not in run_.data.metrics  # no FID while training without labels


def test_a_tensorflow_datasets_name_is_prepared_at_the_asked_size(tmp_path, monkeypatch):
    """tfds:NAME through tfds' own offline testing hook (mock_data: generated examples of the
    dataset's real features): labelled, squared and resized, the test split its own."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from gantrack.stages import prepare

    monkeypatch.chdir(tmp_path)
    cfg = config.from_dict({"data": {"dataset": "tfds:cifar10", "image_size": 16}})
    with tfds.testing.mock_data(num_examples=12):
        meta = prepare.run(cfg)
        gray, _ = data.load_dataset(
            DataConfig(dataset="tfds:celeb_a", image_size=8, channels=1)
        )  # no labels
    assert meta["shape"] == [16, 16, 3] and meta["n_train"] == meta["n_test"] == 12
    assert meta["dataset"] == "tfds:cifar10" and meta["n_classes"] > 1
    assert len(meta["class_names"]) == meta["n_classes"]  # the ClassLabel's names
    assert gray.images.shape == (12, 8, 8, 1) and set(gray.labels.tolist()) == {0}
    with pytest.raises(UserError, match="tfds:no_such_dataset: DatasetNotFoundError"):
        data.load_dataset(DataConfig(dataset="tfds:no_such_dataset", image_size=16))
    with pytest.raises(UserError, match="data.image_size: required with data.dataset tfds:mnist"):
        config.from_dict({"data": {"dataset": "tfds:mnist"}})
    with pytest.raises(UserError, match="data.dataset: unknown value 'tfds:'"):
        config.from_dict({"data": {"dataset": "tfds:"}})


# --- what a photo's file may hold --------------------------------------------------------------


def _quadrants(width: int = 48, height: int = 32) -> Image.Image:
    """An L image whose four quadrants differ, so that every turn and flip shows."""
    pixels = np.zeros((height, width), np.uint8)
    pixels[: height // 2, width // 2 :] = 80
    pixels[height // 2 :, : width // 2] = 160
    pixels[height // 2 :, width // 2 :] = 240
    return Image.fromarray(pixels, "L")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_orientation_is_read_upright(tmp_path, orientation):
    """A camera's photo stored sideways with its EXIF orientation reads as the upright one."""
    from gantrack.data import folder

    upright = _quadrants()
    stored = upright
    if orientation in folder.EXIF_TURNS:  # the stored pixels: the upright ones turned back
        back = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
                Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}  # fmt: skip
        turn = folder.EXIF_TURNS[orientation]
        stored = upright.transpose(back.get(turn, turn))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "stored.png", exif=exif)
    upright.save(tmp_path / "upright.png")
    read = folder._read(tmp_path / "stored.png", "L", 16, "refuse")
    expected = folder._read(tmp_path / "upright.png", "L", 16, "refuse")
    assert np.abs(read.astype(int) - expected.astype(int)).max() <= 2
    assert expected[0, 0] < 40 and expected[0, -1] > 40 and expected[-1, 0] > 120


def test_transparency_is_laid_on_white_and_16_bit_gray_is_scaled(tmp_path):
    from gantrack.data import folder

    half = np.zeros((32, 32, 4), np.uint8)
    half[:, 16:] = (0, 0, 0, 255)  # left half transparent black, right half opaque black
    Image.fromarray(half, "RGBA").save(tmp_path / "alpha.png")
    read = folder._read(tmp_path / "alpha.png", "RGB", 8, "refuse")
    assert (read[:, :3] >= 245).all() and (read[:, 5:] <= 10).all()  # Lanczos rings a little
    Image.fromarray(np.full((16, 16), 32896, np.uint16)).save(tmp_path / "deep.png")
    assert folder._mode(tmp_path / "deep.png").startswith("I;16")
    assert (folder._read(tmp_path / "deep.png", "L", 8, "refuse") == 128).all()


def test_a_fifo_in_place_of_an_image_is_refused_not_waited_on(tmp_path):
    """A FIFO swapped in after the folder was listed: opening it used to wait for a writer."""
    import os
    import signal

    from gantrack.data import folder

    os.mkfifo(tmp_path / "swapped.png")
    signal.alarm(30)  # a hang fails the test instead of stopping the suite
    try:
        with pytest.raises(UserError, match=r"swapped\.png is not a readable image .*regular"):
            folder._read(tmp_path / "swapped.png", "L", 8, "refuse")
    finally:
        signal.alarm(0)


def test_pillows_warnings_stay_off_stderr_and_deep_folders_are_one_line(classes, tmp_path):
    from struct import pack

    tag = pack("<HHII", 274, 3, 1000, 0x1000)  # orientation: 1000 values past the file's end
    exif = b"Exif\0\0II*\0" + pack("<IH", 8, 1) + tag + pack("<I", 0)
    Image.new("RGB", (16, 16)).save(classes / "cats" / "odd_exif.jpg", exif=exif)
    project = tmp_path / "project"
    done = _prepare(project, classes)
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.strip().splitlines()  # the log's one line, no Pillow warning
    assert "prepared folder: 16 train, 5 test images" in line
    deep = tmp_path / "deep"
    _write(deep / "a", 10, (0, 0, 0))
    Path(deep, "b", *["d"] * 40).mkdir(parents=True)
    refused = _prepare(project, deep)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "lies more than 32 folders deep; flatten it" in line


def test_names_from_the_folder_reach_the_log_escaped(classes, tmp_path):
    """A file name holding a terminal escape (a clipboard write) and a newline is logged as
    one escaped line, not played on the terminal."""
    (classes / "cats" / "junk\x1b]52;c;SGk=\x07\nFAKE.png").write_bytes(b"not an image")
    project = tmp_path / "project"
    done = _prepare(project, classes)
    assert done.returncode == 0, done.stderr
    warning, info = done.stderr.strip().splitlines()
    assert "skipped 1 unreadable file(s)" in warning and "\x1b" not in done.stderr
    assert warning.endswith("junk\\x1b]52;c;SGk=\\x07\\nFAKE.png") and "prepared folder" in info


def test_a_class_folder_named_in_bytes_not_utf8_reaches_meta_json_as_valid_text(tmp_path):
    """Linux allows any bytes in a folder name; Python holds those that are not UTF-8 as lone
    surrogates, which strict JSON readers and UTF-8 writers refuse. meta.json gets them as
    \\xNN text."""
    root = tmp_path / "images"
    _write(root / "dogs", 10, (30, 30, 200))
    _write(Path(os.fsdecode(bytes(root) + b"/caf\xe9")), 10, (200, 30, 30))  # Latin-1 "café"
    project = tmp_path / "project"
    done = _prepare(project, root)
    assert done.returncode == 0, done.stderr
    meta = json.loads((project / "data/prepared/meta.json").read_bytes().decode("utf-8"))
    assert meta["class_names"] == ["caf\\xe9", "dogs"]  # sorted by name
    "".join(meta["class_names"]).encode("utf-8")  # no lone surrogate left


@pytest.mark.parametrize("kind", ["RGBA", "P"])
def test_a_transparent_sprite_reads_as_laid_on_white_then_fitted(tmp_path, kind):
    """The reader lays transparency on white near the crop only (memory), with the margin
    Lanczos reads: the same pixels as laying the whole picture on white, then fitting it."""
    from PIL import ImageDraw, ImageOps

    from gantrack.data import folder

    sprite = Image.new("RGBA", (90, 61), (0, 0, 0, 0))
    ImageDraw.Draw(sprite).ellipse((20, 10, 70, 50), fill=(200, 30, 60, 255))
    saved = sprite if kind == "RGBA" else sprite.convert("P")  # a palette with a transparent index
    saved.save(tmp_path / "sprite.png", **({} if kind == "RGBA" else {"transparency": 0}))
    with Image.open(tmp_path / "sprite.png") as opened:
        white = Image.new("RGBA", opened.size, (255, 255, 255, 255))
        whole = Image.alpha_composite(white, opened.convert("RGBA")).convert("RGB")
    expected = np.asarray(ImageOps.fit(whole, (32, 32), Image.Resampling.LANCZOS))
    read = folder._read(tmp_path / "sprite.png", "RGB", 32, "refuse")
    assert np.abs(read.astype(int) - expected.astype(int)).max() <= 1
