"""``sarjepa pretrain``: a working run, one-line errors for bad input, process-count-free batches
(torchrun with 2 processes: tests/test_method_contract.py)."""

from __future__ import annotations

import json

import pytest
from _pretrain_helpers import (
    tiny_opts,
    write_chips,
)
from sarjepa.benchmark.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clichips")
    write_chips(folder, n=8, size=64)
    return folder


def _cli(capsys, *argv):
    code = main(["pretrain", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_run_prints_img_per_s_and_writes_outputs(chips, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = _cli(
        capsys,
        "--config",
        "sarjepa_tiny",
        "--data",
        str(chips),
        "--out",
        str(out),
        *tiny_opts(**{"TRAIN.EPOCHS": 1}),
    )
    assert code == 0
    assert "img/s" in stdout and "done:" in stdout
    assert (out / "checkpoint-0.pth").is_file() and (out / "checkpoint-0.json").is_file()
    assert (out / "config.yaml").is_file()
    (line,) = (out / "log.txt").read_text().splitlines()
    rec = json.loads(line)
    assert {"epoch", "loss", "lr", "img_per_s", "time_s"} <= set(rec) and rec["img_per_s"] > 0


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "does not exist"),
        ("empty", "no images"),
        ("corrupt", "bad.png"),
        ("truncated", "cut.png"),
        ("method", "unknown method 'lomarr' (did you mean 'lomar'?)"),
        ("key", "unknown config key 'TRAIN.EPOCH' (did you mean 'TRAIN.EPOCHS'?)"),
        ("window", "MASK.WINDOW_SIZE 7 is larger than the 4x4 patch grid"),
        ("size", "INPUT.SIZE 60 is not a multiple of the patch size 16"),
    ],
)
def test_cli_bad_input_one_line_error(case, needle, chips, tmp_path, capsys):
    data = chips
    extra: dict = {}
    if case == "missing":
        data = tmp_path / "nowhere"
    elif case == "empty":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "corrupt":
        data = tmp_path / "corrupt"
        write_chips(data, n=2, size=64)
        (data / "bad.png").write_bytes(b"\x89PNG garbage")
    elif case == "truncated":  # readable header, broken data: found by a DataLoader worker
        data = tmp_path / "truncated"
        write_chips(data, n=3, size=64)
        good = (data / "sub0" / "chip_000.png").read_bytes()
        (data / "cut.png").write_bytes(good[: len(good) // 2])
        extra = {"DATA.NUM_WORKERS": 1, "TRAIN.BATCH_SIZE": 4, "DATA.CACHE": False}
    elif case == "method":
        extra = {"METHOD.NAME": "lomarr"}
    elif case == "window":
        extra = {"MASK.WINDOW_SIZE": 7}
    elif case == "size":
        extra = {"INPUT.SIZE": 60}
    opts = tiny_opts(**extra)
    if case == "key":
        opts += ["TRAIN.EPOCH", "3"]
    code, _, err = _cli(
        capsys,
        "--config",
        "sarjepa_tiny",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        *opts,
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sarjepa: error:"), err
    assert needle in lines[0]
    if case == "corrupt":
        assert "--skip-corrupt" in lines[0]
        code, _, _ = _cli(
            capsys,
            "--config",
            "sarjepa_tiny",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o2"),
            "--skip-corrupt",
            *tiny_opts(**{"TRAIN.EPOCHS": 1, "TRAIN.BATCH_SIZE": 2}),
        )
        assert code == 0


def test_sampler_global_batches_do_not_depend_on_the_process_count():
    """Step s of 2 ranks x batch B covers the same images as step s of 1 process x batch 2B."""
    from sarjepa.pretrain.data import EpochSampler

    n, b = 24, 3
    for epoch in (0, 1):
        one = EpochSampler(n, 1, 0, seed=5)
        ranks = [EpochSampler(n, 2, r, seed=5) for r in (0, 1)]
        for s in [one, *ranks]:
            s.set_epoch(epoch)
        single = one.indices()
        per_rank = [s.indices() for s in ranks]
        for step in range(n // (2 * b)):
            together = sorted(i for idx in per_rank for i in idx[step * b : (step + 1) * b])
            assert together == sorted(single[step * 2 * b : (step + 1) * 2 * b])
