"""Where a study lives, reopening it, and trials whose worker died.

The default is an SQLite file in the sweep folder; `--storage` takes any database URL Optuna
supports (PostgreSQL, MySQL, SQLite) or `journal:PATH` (Optuna's journal file, for shared file
systems where SQLite's locking is unreliable). Several `minigpt sweep` processes on one storage
share the study: each asks Optuna for the next trial, so none runs twice.

A trial whose process died stays RUNNING in the storage. Two things find it: Optuna's heartbeat
(database storages: no heartbeat for `grace_period` seconds), and, on every storage, a trial
started on this machine by a process that no longer exists. Either way it is marked FAIL and
queued to run again with the same parameters.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from minigpt.errors import MinigptError, first_line
from minigpt.files import check_writable
from minigpt.sweep.spec import SweepSpec

JOURNAL_PREFIX = "journal:"
# Trials to re-run after their worker died or was interrupted: a trial that kills its process
# every time (say, the kernel's out-of-memory killer) is given up on after this many tries.
MAX_RETRIES = 2
SPACE_ATTR = "minigpt_search_space"
FIXED_ATTR = "minigpt_fixed"
CREATE_ATTEMPTS = 5
# Bounded waits on a database: SQLite for a lock another worker holds; a server for a connection
# (a host that does not answer is an error naming the storage, not a hang). Drivers that take
# libpq's or MySQL's connect_timeout, by URL scheme.
SQLITE_LOCK_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 30
CONNECT_TIMEOUT_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")
OBJECTIVE_ATTR = "minigpt_objective"


def storage_url(spec: SweepSpec) -> str:
    if spec.storage is not None:
        return spec.storage
    return f"sqlite:///{(spec.output / 'study.db').resolve()}"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    if url.startswith(JOURNAL_PREFIX) or "://" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def retry_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> None:
    """Queue a trial that did not finish to run again, with its parameters."""
    history = [*trial.user_attrs.get("retry_history", []), trial.number]
    if not trial.params or len(history) > MAX_RETRIES:
        return  # no parameters yet: a fresh trial replaces it just as well
    study.enqueue_trial(trial.params, user_attrs={"retry_history": history})


def _creation_race(error: Exception) -> bool:
    if isinstance(error, IntegrityError):
        return True
    return isinstance(error, OperationalError) and any(
        phrase in str(error) for phrase in ("already exists", "database is locked")
    )


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options that bound how long opening and using the storage may wait."""
    scheme = url.split(":", 1)[0]
    if scheme.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
    if scheme in CONNECT_TIMEOUT_SCHEMES:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def open_storage(spec: SweepSpec, *, create: bool) -> Any:
    """The study's storage; with `create` False (--show) nothing is created."""
    url = storage_url(spec)
    try:
        if url.startswith(JOURNAL_PREFIX):
            path = Path(url[len(JOURNAL_PREFIX) :]).expanduser()
            if not create and not path.is_file():
                raise MinigptError(f"--storage: {path} does not exist; run the sweep before --show")
            if not path.parent.is_dir():
                raise MinigptError(f"--storage: the folder of {path} does not exist; create it or pick another path")
            return JournalStorage(JournalFileBackend(str(path), JournalFileOpenLock(str(path))))
        if spec.storage is None and not create and not (spec.output / "study.db").is_file():
            raise MinigptError(f"{spec.path}: no study yet at {spec.output / 'study.db'}; run the sweep before --show")
        stale_keyword = "heartbeat_stale_trial_callback"
        if stale_keyword not in inspect.signature(optuna.storages.RDBStorage).parameters:
            stale_keyword = "failed_trial_callback"  # Optuna before 4.9
        engine_kwargs = engine_options(url)
        # The keyword differs between Optuna versions.
        stale_callback: dict[str, Any] = {stale_keyword: retry_trial}
        for attempt in range(CREATE_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=spec.heartbeat_interval,
                        grace_period=spec.grace_period,
                        **stale_callback,
                    )
            except Exception as error:
                # Workers started together on a new database all create its tables; the losers
                # find them half made. A moment later they are complete.
                if attempt + 1 == CREATE_ATTEMPTS or not _creation_race(error):
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")
    except MinigptError:
        raise
    except Exception as error:  # SQLAlchemy, a missing driver, an unreachable server, a bad URL
        raise MinigptError(
            f"--storage: cannot open {shown_url(url)} ({type(error).__name__}: {first_line(error)})"
        ) from None


def prepare_output(folder: Path) -> None:
    """Create the sweep folder, failing before any trial if it cannot be written."""
    check_writable(folder, "output", fix="set output: in the sweep file to a writable folder")


def open_study(spec: SweepSpec, storage: Any, *, create: bool, sampler: Any = None, pruner: Any = None) -> Any:
    """Load the study, or create it (with `create`); refuse one made for another search."""
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        if not create:
            raise MinigptError(
                f"--storage: no study named {spec.name!r} in {shown_url(storage_url(spec))}; run the sweep first"
            ) from None
        # load_if_exists: another worker may create it at the same moment.
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction="minimize",
            load_if_exists=True,
        )
    if create and SPACE_ATTR not in study.user_attrs and not study.get_trials(deepcopy=False):
        # New (here, or by a worker started at the same moment that has not labelled it yet).
        study.set_user_attr(OBJECTIVE_ATTR, spec.objective)
        study.set_user_attr(SPACE_ATTR, spec.space())
        study.set_user_attr(FIXED_ATTR, spec.fixed)
    check_same_study(spec, study)
    return study


def check_same_study(spec: SweepSpec, study: Any) -> None:
    """A study keeps one search space and objective: mixing two would mislead the sampler."""
    where = f"the study {spec.name!r} in {shown_url(storage_url(spec))}"
    fix = "use another name: in the sweep file, or move the existing study away to start over"
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        raise MinigptError(f"{spec.path}: name: {where} was not created by minigpt sweep; {fix}")
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise MinigptError(f"{spec.path}: name: {where} maximises its objective; {fix}")
    stored_objective = study.user_attrs.get(OBJECTIVE_ATTR)
    if stored_objective != spec.objective:
        raise MinigptError(
            f"{spec.path}: objective: {where} minimises {stored_objective}, the sweep file says {spec.objective}; {fix}"
        )
    # Trials of one study compare only when every trial ran with the same fixed keys. (Studies
    # made before the fixed keys were recorded have none to compare.)
    stored_fixed = study.user_attrs.get(FIXED_ATTR)
    fixed = json.loads(json.dumps(spec.fixed))
    if stored_fixed is not None and stored_fixed != fixed:
        key = next(key for key in sorted(set(stored_fixed) | set(fixed)) if stored_fixed.get(key) != fixed.get(key))
        was = json.dumps(stored_fixed[key]) if key in stored_fixed else "not fixed"
        now = json.dumps(fixed[key]) if key in fixed else "not fixed"
        raise MinigptError(
            f"{spec.path}: fixed.{key}: {where} was created with {key}: {was}, now {now} (from the file or --set); "
            "give the changed sweep its own study with --name NAME"
        )
    space = json.loads(json.dumps(spec.space()))
    if stored == space:
        return
    for key in sorted(set(stored) | set(space)):
        if stored.get(key) != space.get(key):
            was = json.dumps(stored.get(key)) if key in stored else "not searched"
            now = json.dumps(space.get(key)) if key in space else "not searched"
            raise MinigptError(
                f"{spec.path}: search.{key}: {where} was created with a different search space "
                f"({key}: {was}; the file now: {now}); {fix}"
            )


def counts_toward_total(trial: Any) -> bool:
    """Finished, running, or failed by its own error; not one that was stopped and queued again."""
    if trial.state == TrialState.FAIL:
        return "fail_reason" in trial.user_attrs
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def fail_dead_trials(study: Any) -> list[int]:
    """Mark RUNNING trials whose worker is gone as FAIL and queue them again; their numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)  # database storages: no heartbeat for grace_period
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if worker_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            # The storage's own call (as fail_stale_trials makes it): it tells which of several
            # workers that spot the same dead trial is the one to queue it again.
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                retry_trial(study, study._storage.get_trial(trial._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted(t.number for t in failed if t.number in before and not counts_toward_total(t))
