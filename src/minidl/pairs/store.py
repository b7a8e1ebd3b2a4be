"""A study's output folder: its configuration, one durable JSON line per finished run, atomic files."""

import contextlib
import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

CONFIG_FILE = "config.json"
RUNS_FILE = "rounds.jsonl"
FORMAT = 1
# what a study writes; --overwrite removes these and nothing else
STUDY_FILES = (CONFIG_FILE, RUNS_FILE, "results.json", "results.csv", "results.md",
               "test_error_boxplot.png", "learning_curves.png")
RUN_KEYS = ("model", "round", "seed", "parameters", "train_error", "test_error", "seconds",
            "train_loss_curve", "train_error_curve", "test_error_curve")
# How a study runs, not what it computes: free to change. Not threads: torch's conv and BLAS kernels
# split their sums by thread, so a run's figures depend on the thread count.
EXECUTION_KEYS = ("jobs",)
FREE_ON_RESUME = ("train.check_finite",)  # changes no finished (finite) run
# what does not decide one run's figures, left out of its options fingerprint
NOT_IN_FINGERPRINT = ("models", "rounds", *FREE_ON_RESUME)
# options added since format 1, at the value that studies written before them had: left out of a
# fingerprint at that value and taken for an absent one, so that such studies still resume
LEGACY = {"train.framework": "torch"}


class StudyStateError(ValueError):
    """The output folder cannot be used as asked (existing results, other options, corrupt file)."""


class TruncatedRecordWarning(UserWarning):
    """The last line of rounds.jsonl was cut short (a crash mid-write) and was dropped."""


def _fsync_dir(folder):
    """Make a rename or a new file in FOLDER durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode():
    """Permissions of a new file under the current umask (mkstemp alone gives 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file beside PATH; on success fsync it and rename it over PATH."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with contextlib.suppress(OSError):  # where chmod is unsupported, keep mkstemp's mode
            os.chmod(fd, _file_mode())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def finite_json(data):
    """DATA with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(value) for value in data]
    return data


def json_text(data, indent=None):
    """Strict JSON of DATA, non-finite numbers written as null."""
    return json.dumps(finite_json(data), indent=indent, allow_nan=False)


def atomic_write_text(path, text):
    """Replace PATH by TEXT atomically: readers see the old file or the new one, never a mix."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def study_settings(config):
    """The options that decide a study's results, as JSON-ready data (no jobs or threads)."""
    settings = asdict(config)
    settings["models"] = list(config.models)
    for key in EXECUTION_KEYS:
        settings.pop(key)
    return settings


def run_options(config):
    """The options that decide one run's figures besides its model and round, flattened."""
    settings = _flatten(study_settings(config))
    for key in NOT_IN_FINGERPRINT:
        settings.pop(key)
    for key, value in LEGACY.items():
        if settings.get(key, value) == value:
            settings.pop(key, None)
    return settings


def fingerprint(config):
    """A short hash of run_options(CONFIG)."""
    return hashlib.sha256(json.dumps(run_options(config), sort_keys=True).encode()).hexdigest()[:16]


def config_record(config):
    """The content of config.json."""
    execution = {key: getattr(config, key) for key in EXECUTION_KEYS}
    return {"format": FORMAT, "study": study_settings(config), "fingerprint": fingerprint(config),
            "execution": execution}


def _flatten(settings, prefix=""):
    """{'train': {'lr': 1}} -> {'train.lr': 1}, to name differing options."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(stored, current):
    """Lines naming each option that differs; rounds may grow but not shrink."""
    old, new = _flatten(stored), _flatten(current)
    lines = []
    for key in sorted(old.keys() | new.keys()):
        absent = LEGACY.get(key, "(absent)")
        before, now = old.get(key, absent), new.get(key, absent)
        if key in FREE_ON_RESUME or (key == "rounds" and isinstance(before, int) and now >= before):
            continue
        if before != now:
            lines.append(f"{key}: stored {before!r}, now {now!r}")
    return lines


def has_study(out_dir):
    """Whether OUT_DIR holds any file a study writes."""
    return any((Path(out_dir) / name).exists() for name in STUDY_FILES)


def check_out_dir(out_dir, resume, overwrite):
    """Refuse to mix a new study with old results; raise StudyStateError with what to do."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise StudyStateError(f"--out {out_dir} exists and is not a directory")
    if resume and not (out_dir / CONFIG_FILE).is_file():
        raise StudyStateError(f"--resume: no study to resume in {out_dir} (no {CONFIG_FILE})")
    if not resume and not overwrite and has_study(out_dir):
        raise StudyStateError(
            f"--out {out_dir} already holds a study; pass --resume to continue it "
            f"or --overwrite to discard it and start afresh")


def load_config(out_dir):
    """Read config.json."""
    path = Path(out_dir) / CONFIG_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StudyStateError(f"cannot read {path}: {e}") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or "study" not in stored:
        raise StudyStateError(f"{path} is not a minidl.pairs study configuration (format {FORMAT})")
    return stored


def check_resumable(out_dir, config):
    """Raise StudyStateError listing the options that differ from the stored study."""
    stored = load_config(out_dir)["study"]
    differences = config_differences(stored, study_settings(config))
    if differences:
        raise StudyStateError(
            f"--resume: options differ from the study in {Path(out_dir) / CONFIG_FILE} (only "
            f"--rounds may grow; --jobs and --allow-nonfinite may change): "
            + "; ".join(differences))


def start_study(out_dir, config, overwrite=False):
    """Create OUT_DIR (emptied of study files with OVERWRITE) and write config.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in STUDY_FILES:
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
    atomic_write_text(out_dir / CONFIG_FILE, json_text(config_record(config), indent=1) + "\n")


def _check_record(record, where):
    """Raise StudyStateError unless RECORD looks like a finished run."""
    if not isinstance(record, dict):
        raise StudyStateError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in RUN_KEYS if key not in record]
    if missing:
        raise StudyStateError(f"{where}: run record lacks {', '.join(missing)}")


def read_runs(out_dir, repair=False):
    """Return the runs recorded in rounds.jsonl; drop (and with REPAIR cut off) a torn last line."""
    path = Path(out_dir) / RUNS_FILE
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # the bytes after the last newline: empty unless the last write was torn
    torn = (len(lines) + 1, tail) if tail else None
    runs, good_end = [], 0
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as e:
            if number < len(lines) or torn:
                raise StudyStateError(f"{path} line {number} is corrupt ({e}) and is not the "
                                      f"last line, so not a torn write; fix or remove it") from None
            torn = (number, line)
            break
        _check_record(record, f"{path} line {number}")
        runs.append(record)
        good_end += len(line) + 1
    if torn:
        warnings.warn(f"{path}: ignoring truncated last line {torn[0]} ({len(torn[1])} bytes, "
                      f"a crash mid-write){'; cut it off' if repair else ''}",
                      TruncatedRecordWarning, stacklevel=2)
        if repair:
            with open(path, "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
    return runs


def check_runs(out_dir, runs, config):
    """Raise StudyStateError on a run recorded twice or under other options than CONFIG's."""
    path, expected, seen = Path(out_dir) / RUNS_FILE, fingerprint(config), set()
    for number, run in enumerate(runs, 1):
        where = f"{path} line {number}: {run['model']} round {run['round']}"
        if (run["model"], run["round"]) in seen:
            raise StudyStateError(f"{where} is recorded twice (two studies wrote to this folder)")
        seen.add((run["model"], run["round"]))
        if run.get("fingerprint") != expected:
            recorded = run.get("options")
            differences = config_differences(recorded, run_options(config)) if recorded else []
            raise StudyStateError(
                f"{where} was recorded under other options than this study's "
                f"({'; '.join(differences) or 'options not recorded'}; fingerprint "
                f"{run.get('fingerprint')}, now {expected}): it comes from another study; "
                f"remove it, or start afresh with --overwrite")


def append_run(out_dir, run, config=None):
    """Add RUN, stamped with the options of CONFIG that decide it (and their fingerprint) and the
    time it was recorded, as one line of rounds.jsonl, durably."""
    path = Path(out_dir) / RUNS_FILE
    new = not path.exists()
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    if config is not None:
        run = {**run, "fingerprint": fingerprint(config), "options": run_options(config)}
    line = json_text({**run, "recorded_at": stamp}) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    if new:
        _fsync_dir(path.parent)
    return {**run, "recorded_at": stamp}
