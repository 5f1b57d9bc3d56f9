"""The best epochs on disk (gantrack.gan.best): which epoch a run ends with, which generator
files stay at a checkpoint, and what a resume drops."""

import pandas as pd

from gantrack.gan import best

METRIC = "fid_classifier_n100"


def _history(fids: dict[int, float | None], last: int) -> pd.DataFrame:
    rows = [{"epoch": e, "g_loss": 1.0, METRIC: fids.get(e)} for e in range(1, last + 1)]
    return pd.DataFrame(rows)


def test_select_best_picks_the_lowest_fid_even_when_it_is_not_the_last_epoch():
    history = _history({1: 30.0, 2: 12.0, 3: 12.0, 4: 20.0}, last=4)
    assert best.choose(history, METRIC, "best") == (2, "best")  # a tie: the earlier epoch
    assert best.choose(history, METRIC, "last") == (4, "last")
    assert best.ranked(history, METRIC) == [2, 3, 4, 1]
    # No FID while training (fid_every 0, or no labels): best is the last epoch.
    assert best.choose(_history({}, last=3), None, "best") == (3, "last")
    assert best.choose(_history({}, last=3), METRIC, "best") == (3, "last")


def test_only_the_best_checkpointed_files_stay_and_a_resume_drops_later_epochs(tmp_path):
    kept = best.EpochModels(tmp_path / "epochs", keep=2, metric=METRIC)
    kept.directory.mkdir()
    for epoch in range(1, 6):
        kept.path(epoch).write_bytes(b"model")
    (kept.directory / f".tmp-1-{6}.keras").write_bytes(b"half written")
    # Checkpoint at epoch 4: the best two of epochs 1..4 stay, epoch 5 (not checkpointed) too.
    kept.prune(_history({1: 9.0, 2: 5.0, 3: 7.0, 4: 8.0}, last=4))
    assert sorted(kept.files()) == [2, 3, 5]
    # Killed, resumed at epoch 4: epoch 5 is trained again, its file goes.
    kept.resumed(4)
    assert sorted(kept.files()) == [2, 3]
