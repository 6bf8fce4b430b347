"""`minigpt sweep`: trials, reports, pruning, resuming, dead workers, shared studies, bad input.

Every sweep here searches a tiny GPT (tests/conftest.py's corpus, 20 steps, a validation every
10) so a trial takes about a second.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from conftest import LINES, free_port, wait_until
from optuna.trial import TrialState

from minigpt.cli import main
from minigpt.sweep import storage as sweep_storage

# Every test here runs a sweep, or checks its keys with the fit parser next to a finished one: the slow tier.
pytestmark = pytest.mark.slow

BASE = {
    "seed_everything": 7,
    "trainer": {
        "max_steps": 20,
        "val_check_interval": 10,
        "check_val_every_n_epoch": None,
        "log_every_n_steps": 5,
        "gradient_clip_val": 1.0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
    "model": {
        "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16},
        "warmup_steps": 5,
        "learning_rate": 3e-3,
        "min_lr": 1e-6,
    },
    "sample": {"prompt": "ROMEO:", "tokens": 10},
    "data": {
        "class_path": "minigpt.data.TextDataModule",
        "init_args": {"block_size": 32, "batch_size": 8, "max_val_windows": 8},
    },
}
SEARCH = {
    "model.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    "model.gpt.n_embd": {"choices": [16, 32]},
}


def write_sweep(folder: Path, **fields: Any) -> Path:
    """A base config on the test corpus and a sweep file over it; `fields` replace the sweep's."""
    corpus = folder / "corpus.txt"
    if not corpus.exists():
        corpus.write_text("\n".join(LINES[i % len(LINES)] for i in range(300)))
    base = yaml.safe_load(yaml.safe_dump(BASE))
    base["data"]["init_args"]["path"] = str(corpus)
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {
        "name": "tiny",
        "base": "base.yaml",
        "search": SEARCH,
        "n_trials": 3,
        "sampler": {"name": "tpe", "seed": 1},
        "pruner": "none",
        **fields,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def sweep(path: Path, *extra: str) -> None:
    main(["sweep", "--config", str(path), *extra])


def study(folder: Path, name: str = "tiny") -> optuna.Study:
    db = folder / "sweeps" / name / "study.db"
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def has_validated(db: Path) -> bool:
    """Whether a trial has reported a validation: read-only, so that the test never races the
    worker to create the database's tables (opening it through Optuna would)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            return connection.execute("SELECT COUNT(*) FROM trial_intermediate_values").fetchone()[0] > 0
    except sqlite3.DatabaseError:  # no file, no table yet, or a file still being written
        return False


def snapshot(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_sweep_writes_reports_and_best_yaml_trains_as_is(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep(write_sweep(tmp_path))
    err = capsys.readouterr().err
    out = tmp_path / "sweeps" / "tiny"
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert re.search(r"trial 2 \(3/3\): model.learning_rate=\S+ model.gpt.n_embd=\d+ -> val/loss \d\.\d{4} \(best", err)
    for t in trials:  # an ordinary fit each: its own folder, checkpoints and logs
        assert (Path(t.user_attrs["log_dir"]) / "checkpoints" / "last.ckpt").is_file()
        assert Path(t.user_attrs["log_dir"]).is_relative_to(out / f"trial_{t.number}")
        assert t.user_attrs["steps"] == 20 and sorted(t.intermediate_values) == [10, 20]
        assert list((out / "tensorboard" / f"trial_{t.number}").glob("events.out.tfevents.*"))
    summary = (out / "summary.md").read_text()
    best = min(trials, key=lambda t: t.value)
    assert f"| **{best.number}** (best) |" in summary and f"{best.value:.4f}" in summary
    for plot in ("history.png", "intermediate.png", "parallel_coordinate.png", "importances.png"):
        assert (out / plot).stat().st_size > 1000, plot
    capsys.readouterr()
    sweep(write_sweep(tmp_path), "--show")
    assert capsys.readouterr().out == summary

    # best.yaml is a complete fit config: it trains as is and gives the best trial's loss again.
    best_yaml = out / "best.yaml"
    assert f"val/loss {best.value:.4f}" in best_yaml.read_text()
    main(["fit", "--config", str(best_yaml), f"--trainer.default_root_dir={tmp_path / 'again'}"])
    [last] = (tmp_path / "again").rglob("last.ckpt")
    states = torch.load(last, weights_only=False)["callbacks"]
    [checkpointer] = [state for key, state in states.items() if key.startswith("ModelCheckpoint")]
    assert float(checkpointer["current_score"]) == pytest.approx(best.value, rel=1e-6)


def test_pruner_stops_a_trial_whose_validations_are_worse(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_sweep(
        tmp_path,
        search={"model.learning_rate": {"choices": [3e-3, 1e-5]}},
        enqueue=[{"model.learning_rate": 3e-3}, {"model.learning_rate": 1e-5}],
        n_trials=2,
        pruner={"name": "median", "n_startup_trials": 1},
    )
    sweep(path)
    good, bad = study(tmp_path).trials
    assert good.state == TrialState.COMPLETE and good.user_attrs["steps"] == 20
    assert bad.state == TrialState.PRUNED and bad.params == {"model.learning_rate": 1e-5}
    assert bad.user_attrs["steps"] == 10 and bad.intermediate_values[10] > good.intermediate_values[10]
    assert "pruned at step 10" in capsys.readouterr().err
    # Stopped like any fit: its checkpoint and logs are closed and usable.
    assert (Path(bad.user_attrs["log_dir"]) / "checkpoints" / "last.ckpt").is_file()
    assert (
        "Steps run: 30 of 40 without pruning (25.0% saved by pruning)"
        in (tmp_path / "sweeps/tiny/summary.md").read_text()
    )


def test_invalid_combination_is_pruned_with_its_reason(tmp_path: Path) -> None:
    path = write_sweep(
        tmp_path,
        search={"model.gpt.n_head": {"choices": [2, 3]}},
        enqueue=[{"model.gpt.n_head": 3}, {"model.gpt.n_head": 2}],
        n_trials=2,
    )
    sweep(path)
    invalid, valid = study(tmp_path).trials
    assert (
        invalid.state == TrialState.PRUNED
        and "must be divisible by model.gpt.n_head" in invalid.user_attrs["pruned_reason"]
    )
    assert valid.state == TrialState.COMPLETE


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A learning rate of 1e30 overflows the weights: the loss turns NaN and the fit stops with an error.
    path = write_sweep(
        tmp_path,
        search={"model.learning_rate": {"choices": [1e30, 3e-3]}},
        enqueue=[{"model.learning_rate": 1e30}, {"model.learning_rate": 3e-3}],
        n_trials=2,
    )
    sweep(path)
    failed, complete = study(tmp_path).trials
    assert failed.state == TrialState.FAIL and re.match(r"loss is \S+ at step \d+", failed.user_attrs["fail_reason"])
    assert complete.state == TrialState.COMPLETE
    assert "failed: loss is " in capsys.readouterr().err


def test_rerun_resumes_to_n_trials_and_samples_as_one_run_would(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_sweep(tmp_path)
    sweep(path, "--n_trials", "1")
    first = study(tmp_path).trials
    files = snapshot(tmp_path / "sweeps" / "tiny" / "trial_0")
    sweep(path)  # the file's n_trials: 3 in all
    resumed = study(tmp_path).trials
    assert len(resumed) == 3 and all(t.state == TrialState.COMPLETE for t in resumed)
    assert (resumed[0].params, resumed[0].value, resumed[0].datetime_complete) == (
        first[0].params,
        first[0].value,
        first[0].datetime_complete,
    )
    assert snapshot(tmp_path / "sweeps" / "tiny" / "trial_0") == files
    capsys.readouterr()
    sweep(path)  # done: nothing more runs
    assert len(study(tmp_path).trials) == 3 and "3 of 3 trials already" in capsys.readouterr().err
    # The sampler continues: the same trials as one uninterrupted sweep of 3.
    sweep(path, "--name", "straight")
    assert [t.params for t in study(tmp_path, "straight").trials] == [t.params for t in resumed]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning", "ignore:Heartbeat of storage")
def test_trial_left_running_by_a_dead_worker_is_failed_and_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = write_sweep(tmp_path, n_trials=3, heartbeat={"interval": 1, "grace_period": 2})
    sweep(path, "--n_trials", "1")
    # Two workers that died mid-trial, as `kill -9` leaves them: one on this machine (its process
    # is gone), one elsewhere (its heartbeat stopped).
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'sweeps/tiny/study.db'}", heartbeat_interval=1, grace_period=2
    )
    killed = optuna.load_study(study_name="tiny", storage=storage)
    orphans = []
    for worker in (f"{socket.gethostname()}:{gone.stdout.strip()}", "elsewhere:1"):
        trial = killed.ask()
        trial.suggest_float("model.learning_rate", 1e-3, 1e-2, log=True)
        trial.suggest_categorical("model.gpt.n_embd", [16, 32])
        trial.set_user_attr("worker", worker)
        if worker.startswith("elsewhere"):  # found by its heartbeat; the other by its process id alone
            storage.record_heartbeat(trial._trial_id)
        orphans.append(trial.number)
    # Past the grace period, by the storage's own judgment (Optuna's, which has no public name).
    study_id = storage.get_study_id_from_name("tiny")
    wait_until(lambda: storage._get_stale_trial_ids(study_id), "a stale trial", timeout=60)
    capsys.readouterr()
    sweep(path)
    trials = study(tmp_path).trials
    err = capsys.readouterr().err
    assert f"trial {orphans[0]} was left running by a process that is gone" in err
    for number in orphans:
        assert trials[number].state == TrialState.FAIL
        [retry] = [t for t in trials if t.user_attrs.get("retry_history") == [number]]
        assert retry.state == TrialState.COMPLETE and retry.params == trials[number].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3  # the failed ones do not count


def test_ctrl_c_stops_the_sweep_and_the_rerun_runs_the_trial_again(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, n_trials=2, fixed={"trainer.max_steps": 400})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "minigpt", "sweep", "--config", str(path)]
    worker = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "sweeps" / "tiny" / "study.db"
    wait_until(lambda: has_validated(db), "the first trial's first validation", worker)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err
    [stopped, queued] = study(tmp_path).trials
    assert stopped.state == TrialState.FAIL and "fail_reason" not in stopped.user_attrs
    assert (Path(stopped.user_attrs["log_dir"]) / "checkpoints" / "last.ckpt").is_file()
    assert queued.state == TrialState.WAITING and queued.user_attrs["retry_history"] == [stopped.number]
    sweep(path)
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == stopped.params


def test_two_processes_share_one_study_without_duplicate_work(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, n_trials=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "minigpt", "sweep", "--config", str(path)]
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
    trials = [t for t in study(tmp_path).trials if not t.user_attrs.get("surplus")]
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.number for t in trials}) == 4
    assert len({t.params["model.learning_rate"] for t in trials}) == 4  # no point trained twice
    assert sorted(p.name for p in (tmp_path / "sweeps" / "tiny").glob("trial_*")) == [
        f"trial_{t.number}" for t in trials
    ]


# --- bad input: one line, exit status 2, nothing lost ------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a finished one-trial study named tiny, which no bad command may touch."""
    root = tmp_path_factory.mktemp("sweep-workspace")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        sweep(write_sweep(root, n_trials=1))
    finally:
        os.chdir(cwd)
    (root / "a_file").write_text("not a folder")
    return root


def bad(workspace: Path, **fields: Any) -> list[str]:
    return ["--config", str(write_sweep(workspace, **fields))]


def search(**params: Any) -> dict[str, Any]:
    return {"search": {key.replace("__", "."): value for key, value in params.items()}}


CASES: dict[str, tuple[Any, str]] = {
    "missing sweep file": (lambda w: ["--config", str(w / "nope.yaml")], "--config: "),
    "missing base config": (lambda w: bad(w, base="absent.yaml"), "base: "),
    "unknown search key": (
        lambda w: bad(w, **search(model__gpt__n_embdd={"choices": [16]})),
        "search.model.gpt.n_embdd: not a key of the fit config base.yaml; did you mean model.gpt.n_embd?",
    ),
    "search key of an earlier version": (
        lambda w: bad(w, **search(model__n_embd={"choices": [16]})),
        "search.model.n_embd: model.n_embd moved to model.gpt.n_embd",
    ),
    "unknown fixed key": (
        lambda w: bad(w, fixed={"trainer.max_stepz": 5}),
        "fixed.trainer.max_stepz: not a key of the fit config",
    ),
    "unknown nested data key": (
        lambda w: bad(w, **search(data__init_args__tokenizer__vocab_sise={"choices": [70]})),
        "search.data.init_args.tokenizer.vocab_sise: not a key",
    ),
    "wrong value type": (
        lambda w: bad(w, **search(model__gpt__n_layer={"choices": [1, "two"]})),
        "search.model.gpt.n_layer: 'two' is refused by the fit parser",
    ),
    "low above high": (
        lambda w: bad(w, **search(model__learning_rate={"low": 1e-2, "high": 1e-3})),
        "search.model.learning_rate: low (0.01) is above high (0.001)",
    ),
    "log with low at 0": (
        lambda w: bad(w, **search(model__gpt__dropout={"low": 0.0, "high": 0.3, "log": True})),
        "search.model.gpt.dropout: log: true needs low > 0",
    ),
    "empty choices": (
        lambda w: bad(w, **search(model__gpt__n_embd={"choices": []})),
        "choices must be a non-empty list",
    ),
    "unknown distribution field": (
        lambda w: bad(w, **search(model__gpt__dropout={"low": 0.0, "high": 0.3, "lg": True})),
        "search.model.gpt.dropout: unknown field 'lg'",
    ),
    "zero trials": (lambda w: bad(w, n_trials=0), "n_trials: 0 should be a positive number of trials"),
    "zero trials on the command line": (lambda w: [*bad(w), "--n_trials", "0"], "--n_trials: 0 should be"),
    "no valid model": (
        lambda w: bad(w, **search(model__gpt__n_embd={"choices": [30, 50]}, model__gpt__n_head={"choices": [4, 8]})),
        "search: no combination of model.gpt.n_embd, model.gpt.n_head gives a valid model",
    ),
    "storage that cannot be opened": (
        lambda w: [*bad(w), "--storage", f"sqlite:///{w / 'a_file' / 'study.db'}"],
        "--storage: cannot open sqlite:///",
    ),
    "storage of an unknown kind": (lambda w: [*bad(w), "--storage", "nosuchdb://host/db"], "--storage: cannot open"),
    "study with another search space": (
        lambda w: bad(
            w,
            **search(
                model__learning_rate={"low": 1e-4, "high": 1e-2, "log": True}, model__gpt__n_embd={"choices": [16, 32]}
            ),
        ),
        "search.model.learning_rate: the study 'tiny' in sqlite:///",
    ),
    "study with another objective": (lambda w: bad(w, objective="val/bits_per_char"), "objective: the study 'tiny'"),
    "unknown objective": (lambda w: bad(w, objective="val/accuracy"), "objective: 'val/accuracy' is not one of"),
    "unknown pruner": (lambda w: bad(w, pruner="asha"), "pruner.name: unknown pruner 'asha'"),
    "enqueued value outside the space": (
        lambda w: bad(w, enqueue=[{"model.gpt.n_embd": 64}]),
        "enqueue[0].model.gpt.n_embd: 64 is outside its distribution",
    ),
    "show before any trial": (lambda w: [*bad(w, name="never"), "--show"], "no study yet at"),
    "--set of a value the fit parser refuses": (
        lambda w: [*bad(w, name="other"), "--set", "trainer.max_steps=lots"],
        "fixed.trainer.max_steps: 'lots' is refused by the fit parser",
    ),
    "--set of a searched key": (
        lambda w: [*bad(w), "--set", "model.learning_rate=0.01"],
        "--set model.learning_rate: it is searched in",
    ),
    "--set that is not KEY=VALUE": (lambda w: [*bad(w), "--set", "trainer.max_steps"], "write KEY=VALUE"),
    "--set that changes the study's fixed keys": (
        lambda w: [*bad(w), "--set", "trainer.max_steps=10"],
        "fixed.trainer.max_steps: the study 'tiny' in sqlite:///",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_sweep_input(
    name: str, workspace: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace)  # where the existing study's sweeps/ folder is
    build, expected = CASES[name]
    args = build(workspace)
    before = snapshot(workspace / "sweeps")
    with pytest.raises(SystemExit) as exit:
        main(["sweep", *args])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("minigpt: error:")]
    assert len(errors) == 1 and expected in errors[0], err[-2000:]
    assert snapshot(workspace / "sweeps") == before, "a refused sweep changed or removed files"
    assert sorted(p.name for p in (workspace / "sweeps").iterdir()) == ["tiny"]


def test_shorthand_and_nested_keys_are_recognised(tmp_path: Path) -> None:
    from minigpt.sweep.base import check_against_base
    from minigpt.sweep.spec import load_spec

    path = write_sweep(
        tmp_path,
        fixed={"data.batch_size": 4},
        search={"data.init_args.tokenizer.vocab_size": {"low": 60, "high": 80, "step": 10}, **SEARCH},
    )
    base = check_against_base(load_spec(path))
    assert base.max_steps == 20 and base.config["data"]["init_args"]["batch_size"] == 4


# --- a study shared through a PostgreSQL server -------------------------------------------------


# PostgreSQL's programs refuse to run as root; a test run as root runs them as this user (Debian's).
POSTGRES_USER = "postgres"


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs: Debian's /usr/lib/postgresql/<version>/bin (newest
    first), else initdb on PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]), reverse=True)
    on_path = shutil.which("initdb")
    found = debian[0] if debian else Path(on_path) if on_path else None
    return found.parent if found else None


def as_server_user() -> list[str]:
    """The command prefix that runs PostgreSQL's programs, which refuse to run as root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        pytest.skip(f"running as root, and there is no '{POSTGRES_USER}' user to start PostgreSQL as")
    if runuser is None:
        pytest.skip("running as root, and there is no runuser to start PostgreSQL as another user")
    return [runuser, "-u", POSTGRES_USER, "--"]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own on a free localhost port, in a temporary folder, for one test."""
    pytest.importorskip("psycopg", reason="psycopg (the dev extra's PostgreSQL driver) is not installed")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    prefix = as_server_user()
    # Not under pytest's tmp_path: the server's user must be able to reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="minigpt-postgres-"))
    if prefix:
        shutil.chown(folder, POSTGRES_USER)
    data, port = folder / "data", free_port()

    def server(*command: str) -> None:
        subprocess.run([*prefix, *command], cwd=folder, check=True, capture_output=True, timeout=120)

    try:
        server(str(bin_dir / "initdb"), "-D", str(data), "-U", "minigpt", "--auth=trust", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        server(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        yield f"postgresql+psycopg://minigpt@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            server(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_workers_on_two_machines_share_a_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    # Two workers, each in its own folder with its own copy of the files, as on two machines; the
    # study in the database is all they share.
    machines = [tmp_path / "machine0", tmp_path / "machine1"]
    command = [sys.executable, "-m", "minigpt", "sweep", "--storage", postgres_url, "--config"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = []
    for machine in machines:
        machine.mkdir()
        path = write_sweep(machine, n_trials=4)
        workers.append(subprocess.Popen([*command, str(path)], cwd=machine, env=env, stderr=subprocess.PIPE, text=True))
    try:
        errors = [worker.communicate(timeout=300)[1] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, err in zip(workers, errors, strict=True):
        assert worker.returncode == 0, err[-2000:]
    trials = [
        t for t in optuna.load_study(study_name="tiny", storage=postgres_url).trials if not t.user_attrs.get("surplus")
    ]
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["model.learning_rate"] for t in trials}) == 4  # no point trained twice
    # Each trial ran on one machine, in its folder there, and both machines ran some.
    folders = [{int(p.name.removeprefix("trial_")) for p in (m / "sweeps" / "tiny").glob("trial_*")} for m in machines]
    assert folders[0] and folders[1] and not folders[0] & folders[1]
    assert folders[0] | folders[1] == {t.number for t in trials}
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_a_database_server_that_never_answers_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg", reason="psycopg (the dev extra's PostgreSQL driver) is not installed")
    monkeypatch.setattr(sweep_storage, "CONNECT_TIMEOUT_S", 2)
    # A port that takes connections into its backlog and never says a word, like a hung server.
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"postgresql+psycopg://minigpt@127.0.0.1:{silent.getsockname()[1]}/sweeps"

        def hung(*_: object) -> None:
            raise AssertionError("opening the storage waited for a minute")

        previous = signal.signal(signal.SIGALRM, hung)
        signal.alarm(60)
        try:
            with pytest.raises(SystemExit) as exit:
                sweep(write_sweep(tmp_path), "--storage", url)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    assert exit.value.code == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("minigpt: error:")]
    assert error.startswith(f"minigpt: error: --storage: cannot open {url} (OperationalError: ") and "timeout" in error
