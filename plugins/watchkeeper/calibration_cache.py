"""The calibrator CBPE uses, fitted once on the training set's labelled rows and cached.

Shell around `watchkeeper.performance.reference_calibration`: reads the training set
(`reference.training`: its score column `prediction.score` and its label column
`labels.label_column`), fits the isotonic calibrator, and caches the choice under
WATCHKEEPER_HOME/state/<model>/calibrator-<key>.json, keyed like the other training-set references
(see `watchkeeper.analysis`): by the file (path, mtime, size) and the spec fields the fit reads,
so a new training file or a changed column refits and an unchanged one is read back.

When no calibrator can be fitted (no labels in the training set, too few rows, one class) the
cached choice is "raw" with the reason, and every estimate says so. A training file that cannot
be read is not cached: the next labels run tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from watchkeeper import paths
from watchkeeper.spec import ModelSpec

log = logging.getLogger(__name__)

# Bump when the fit or the cached layout changes, so stale caches are not read back.
CACHE_VERSION = 1


def cache_path(spec: ModelSpec, training: Path) -> Path:
    st = training.stat()
    raw = json.dumps(["calibrator", CACHE_VERSION, str(training), st.st_mtime_ns, st.st_size,
                      spec.prediction.score, spec.labels.label_column if spec.labels else None],
                     sort_keys=True)
    return paths.home() / "state" / spec.name / f"calibrator-{hashlib.sha256(raw.encode()).hexdigest()[:16]}.json"


def _write_atomic(path: Path, text: str) -> None:
    # A cache file appears whole or not at all: a task killed mid-write must not leave a file
    # every later run would fail to read.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def reference_calibration(spec: ModelSpec):
    """The model's CalibrationChoice: from the cache, or fitted on the training set and cached."""
    from watchkeeper import performance as perf
    from watchkeeper import sources

    training = spec.resolve_path(spec.reference.training)
    where = f"the training set {training.name} (reference.training)"
    try:
        cached = cache_path(spec, training)
    except OSError as err:
        return perf.CalibrationChoice(
            "raw", reason=f"{where} is unreadable ({err.strerror or err}): raw scores used as probabilities",
            source=training.name)
    if cached.exists():
        try:
            return perf.CalibrationChoice.from_dict(json.loads(cached.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as err:
            log.warning("refitting the calibrator: %s is unreadable (%s)", cached, err)
    try:
        frame = sources.read_file(training).frame
    except sources.SourceError as err:
        return perf.CalibrationChoice(
            "raw", reason=f"{where} is unreadable ({err.reason}): raw scores used as probabilities",
            source=training.name)
    label_col = spec.labels.label_column if spec.labels else None
    score_col = spec.prediction.score
    if label_col is None or label_col not in frame.columns:
        choice = perf.CalibrationChoice(
            "raw", reason=f"{where} has no label column {label_col!r} (labels.label_column): raw "
            "scores used as probabilities", n=len(frame), source=training.name)
    elif score_col is None or score_col not in frame.columns:
        choice = perf.CalibrationChoice(
            "raw", reason=f"{where} has no score column {score_col!r} (prediction.score): raw "
            "scores used as probabilities", n=len(frame), source=training.name)
    else:
        choice = perf.reference_calibration(frame[label_col], frame[score_col],
                                            source=f"the training set {training.name}")
        choice.source = training.name
    _write_atomic(cached, json.dumps(choice.to_dict()))
    return choice
