"""Prediction behind ``predict.py``: scans in; label maps, overlays, keypoints, uptake statistics out.

Per view (``<stem>_<view>_*``, names from the input's file name only): ``labels.png`` (uint8
ids), ``overlay.png``, ``keypoints.json``, ``stats.json``, optional ``probs.npz``; per DICOM
input an optional ``seg.dcm``; per run one ``summary.csv`` (docs/predict.md). The stages:

1. read (``data.io.read_views``): a file that cannot be read is a row with status ``error``;
2. prepare (``predict_prepare``): polarity, edge lines and captions, orientation, side-by-side
   panels, undistorted fit into the model's frame; a view with no body is ``flag``;
3. model (``predict_model.Predictor``): letterbox, mirror, TTA, outputs mapped back exactly;
4. post-process (``predict_outputs.postprocess``) and check (``predict_checks``): a view with
   low keypoint confidence or an impossible map is ``flag``, only its overlay is written;
5. write (``predict_outputs``) onto the input's pixel grid; journal and resume (``predict_resume``).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import predict_io as pio
from . import predict_resume as resume_io
from .checkpoint import CheckpointError
from .data.io import ScanView, is_dicom_file, read_views
from .predict_checks import CheckOptions, check_prediction, found_keypoints
from .predict_model import DEFAULT_SIZE, Predictor, ViewPrediction, model_geometry  # noqa: F401 (API)
from .predict_outputs import (SUMMARY_FIELDS, base_row, confidence_fields, expected_parts,
                              keep_largest_components, postprocess, write_flagged, write_view)  # noqa: F401
from .predict_prepare import PrepareOptions, PreparedView, prepare

log = logging.getLogger("bonepatch")
#: predict() keyword options that ``conf/predict.yaml`` sets (the rest of its keys are Hydra's).
OPTIONS = ("device", "batch_size", "progress", "force_dicom", "tta_flip", "largest_component", "overwrite",
           "save_probs", "dicom_seg", "trust_checkpoint", "min_total_counts", "resume", "polarity", "orientation",
           "panels", "panel_views", "refuse_unsure", "min_keypoint_confidence", "min_found_keypoints",
           "order_tolerance")
#: Options that change results: a resumed run must use the same.
_RESULT_OPTIONS = ("force_dicom", "tta_flip", "largest_component", "save_probs", "dicom_seg", "min_total_counts",
                   "polarity", "orientation", "panels", "panel_views", "refuse_unsure", "min_keypoint_confidence",
                   "min_found_keypoints", "order_tolerance")


class PredictError(RuntimeError):
    """A problem that stops the whole run (bad options, nothing to read, results in the way)."""


def _settings(ckpt, out: Path, options: dict) -> tuple[PrepareOptions, CheckOptions, dict]:
    """Validated option groups and the run record; raises PredictError naming the bad option."""
    try:
        prep = PrepareOptions(options["polarity"], options["orientation"], options["panels"],
                              tuple(options["panel_views"]), float(options["min_total_counts"]))
        checks = CheckOptions(bool(options["refuse_unsure"]), float(options["min_keypoint_confidence"]),
                              int(options["min_found_keypoints"]), float(options["order_tolerance"]))
    except ValueError as err:
        raise PredictError(str(err)) from err
    record = resume_io.run_options(ckpt, {k: (list(options[k]) if k == "panel_views" else options[k])
                                          for k in _RESULT_OPTIONS})
    if options["resume"]:
        diff = resume_io.check_resume(out, record)
        if diff:
            raise PredictError(f"{out}: resume=true, but its earlier run used other settings ({diff}); resume "
                               "with the same checkpoint and options, or choose another output folder")
    elif not options["overwrite"]:
        for name, what in (("summary.csv", "results"), (resume_io.JOURNAL, "an interrupted run")):
            if (out / name).exists():
                raise PredictError(f"{out} already holds {what} ({name}); pass resume=true to continue that run, "
                                   "overwrite=true to replace it, or choose another output folder")
    return prep, checks, record


def predict(ckpt, inputs, output, device="auto", batch_size=4, progress=True, force_dicom=False, tta_flip=False,
            largest_component=False, overwrite=False, save_probs=False, dicom_seg=False, trust_checkpoint=False,
            min_total_counts=1000.0, resume=False, polarity="auto", orientation="auto", panels="auto",
            panel_views=("anterior", "posterior"), refuse_unsure=True, min_keypoint_confidence=0.5,
            min_found_keypoints=4, order_tolerance=0.02) -> list[dict]:
    """Predict every view of ``inputs`` into ``output``; returns the summary rows (also in summary.csv).

    Raises CheckpointError (not a usable checkpoint) or PredictError (bad option, nothing to do,
    results in the way, highdicom missing); a bad input file is a summary row, never an exception.
    """
    out, opts = Path(output), dict(locals())
    prep, checks, record = _settings(ckpt, out, opts)
    if dicom_seg:
        try:
            pio.require_highdicom()  # before any work
        except ImportError as err:
            raise PredictError(str(err)) from err
    predictor, _, chosen = Predictor.from_checkpoint(ckpt, device, trust_checkpoint, tta_flip=tta_flip,
                                                     batch_size=batch_size)
    largest_component = True if largest_component else chosen  # else: the classes validation chose
    files, missing, skipped = pio.collect_inputs(inputs, exclude=out)
    if not files and not missing:
        raise PredictError(f"no input files found in {inputs}; give a file, a folder, a glob or a list")
    previous = resume_io.read_rows(out) if resume else {}
    log.info("%d files, model %s at %dx%d on %s%s%s", len(files), type(predictor.model).__name__, *predictor.size,
             predictor.device, f" ({skipped} folder files with other suffixes skipped)" if skipped else "",
             f"; resuming: {len(previous)} earlier rows" if resume else "")
    replace_files = overwrite or resume  # a resumed run redoes its own half-written views
    resume_io.write_run_file(out, record)
    journal = resume_io.Journal(out)
    rows = [{"input": s, "status": "error", "reason": "no such file, folder or glob match"} for s in missing]
    stems = pio.output_stems(files)
    pending: list[tuple[Path, list]] = []  # file, its prepared views

    def done(key):
        row = previous.get(key)
        return row if row is not None and resume_io.complete(out, row, expected_parts(row["status"], save_probs)) \
            else None

    def flush():
        todo = [pv for f, pvs in pending for pv in pvs
                if not pv.flag and done((str(f), str(pv.view.frame), str(pv.panel))) is None]
        preds = iter(predictor([pv.view for pv in todo], [pv.fit for pv in todo]))
        for f, pvs in pending:
            tags, on_input = pio.view_tags([pv.view.view for pv in pvs]), [None] * len(pvs)
            for i, pv in enumerate(pvs):
                prefix = f"{stems[f]}_{tags[i]}"
                kept = done((str(f), str(pv.view.frame), str(pv.panel)))
                if kept is not None:  # resumed: this view is complete
                    rows.append(kept)
                    if dicom_seg and kept["status"] == "ok":
                        on_input[i] = np.asarray(Image.open(out / f"{prefix}_labels.png"))
                    continue
                row = base_row(str(f), pv, prefix, predictor.mirrored(pv.view))
                result = judge(pv, None if pv.flag else next(preds), checks, largest_component)
                try:
                    on_input[i] = _write(out, prefix, result, row, save_probs, replace_files)
                except (OSError, ValueError) as err:
                    row.update(status="error", reason=f"writing outputs failed: {err}")
                if row["notes"]:
                    log.info("%s: %s", prefix, row["notes"])
                rows.append(row)
                journal.add(row)
            if dicom_seg and is_dicom_file(f) and any(m is not None for m in on_input):
                _dicom_seg(out, f, stems[f], on_input, rows[-len(pvs):], replace_files, rows)
        pending.clear()

    try:
        for f in tqdm(files, desc="predict", unit="file", disable=not progress):
            before = [r for k, r in previous.items() if k[0] == str(f)]
            if before and all(done(resume_io.view_key(r)) is not None for r in before):
                rows.extend(before)  # resumed: the whole input is done, not even read again
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "no body found": screened in prepare
                    views = read_views(f, force=force_dicom)
                pending.append((f, [pv for v in views for pv in prepare(v, predictor.size, prep)]))
            except Exception as err:  # noqa: BLE001 - any unreadable file is a row, not a crash
                rows.append({"input": str(f), "status": "error", "reason": str(err)})
                journal.add(rows[-1])
                continue
            if sum(len(pvs) for _, pvs in pending) >= predictor.batch_size:
                flush()
        flush()
    finally:  # also after Ctrl-C: what was done is listed, in input order, each view once
        order = {str(f): i for i, f in enumerate(files)}
        rows.sort(key=lambda r: (order.get(r["input"], -1), int(r.get("frame") or 0), str(r.get("panel", ""))))
        rows += _earlier_rows(previous, rows)  # views not reached (interrupted) or not given this time
        pio.write_csv(out / "summary.csv", rows, SUMMARY_FIELDS, overwrite=True)
        journal.close(remove=True)
    return rows


def _earlier_rows(previous: dict, rows: list[dict]) -> list[dict]:
    """Rows of an earlier run that this run did not replace: each view once, and no stale file error
    beside new view rows (or stale view rows beside a new file error)."""
    keys = {resume_io.view_key(r) for r in rows}
    with_views = {r["input"] for r in rows if str(r.get("frame", "")) != ""}
    with_error = {r["input"] for r in rows if str(r.get("frame", "")) == ""}
    return [r for k, r in previous.items() if k not in keys and r["input"] not in with_error
            and not (k[1] == "" and r["input"] in with_views)]


@dataclass
class ViewResult:
    """One view's outcome. labels: (h, w) ids in the prepared view's frame (``prepared.frame``
    maps them onto the input), None when flagged before the model; reason '' = accepted."""

    prepared: PreparedView
    prediction: ViewPrediction | None
    labels: np.ndarray | None
    reason: str
    found: np.ndarray | None = None  # (K,) bool: keypoints found inside the view

    @property
    def status(self) -> str:
        return "flag" if self.reason else "ok"


def judge(pv: PreparedView, pred: ViewPrediction | None, checks: CheckOptions, largest_component=False) -> ViewResult:
    """Post-process a view's prediction and decide whether it may be reported."""
    if pred is None:
        return ViewResult(pv, None, None, pv.flag)
    labels = postprocess(pred.labels, largest_component)
    found = None if pred.confidence is None else found_keypoints(pred.confidence, pred.inside, checks)
    why = check_prediction(labels, pred.keypoints, pred.confidence, pred.inside, checks)
    return ViewResult(pv, pred, labels, why, found)


def segment_image(predictor: Predictor, view: ScanView, prep: PrepareOptions = PrepareOptions(),
                  checks: CheckOptions = CheckOptions(), largest_component=False) -> list[ViewResult]:
    """predict() for one read image in memory, no files: its views prepared, predicted and judged."""
    pvs = prepare(view, predictor.size, prep)
    todo = [pv for pv in pvs if not pv.flag]
    preds = iter(predictor([pv.view for pv in todo], [pv.fit for pv in todo]))
    return [judge(pv, None if pv.flag else next(preds), checks, largest_component) for pv in pvs]


def _write(out, prefix, result: ViewResult, row, save_probs, replace):
    """Write one judged view (``row`` updated in place); returns its labels on the input grid or None."""
    pv, pred = result.prepared, result.prediction
    row.update(status=result.status, reason=result.reason)
    if pred is not None:
        row.update(confidence_fields(pred, result.found))
    if result.reason:  # flagged: the overlay only; no segmentation is claimed (a refused map is drawn)
        write_flagged(out, prefix, pv, result.reason, replace, pred, result.labels)
        return None
    stats, on_input = write_view(out, prefix, pv, pred, result.labels, save_probs, replace)
    row.update(stats)
    return on_input


def _dicom_seg(out, f, stem, label_maps, file_rows, replace, rows):
    try:
        pio.write_dicom(out / f"{stem}_seg.dcm", pio.dicom_seg(f, label_maps), replace)
    except pio.SegNotPossible as err:  # a documented limit: a note, the labels are written
        for r in file_rows:
            r["reason"] = "; ".join(filter(None, [r["reason"], str(err)]))
    except Exception as err:  # noqa: BLE001 - a failed SEG must not stop the batch
        rows.append({"input": str(f), "status": "error", "reason": f"DICOM SEG failed: {err}"})


def run(cfg) -> int:
    """``predict.py``: 0 when every view is ok or flagged, 1 when any input failed, 2 when nothing ran."""
    try:
        rows = predict(cfg.ckpt, cfg.input, cfg.output, **{k: cfg[k] for k in OPTIONS if k in cfg})
    except (CheckpointError, PredictError) as err:
        log.error("%s", err)
        return 2
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "flag", "error")}
    log.info("%d ok, %d flagged, %d errors; summary: %s", *counts.values(), Path(cfg.output) / "summary.csv")
    for r in rows:
        if r["status"] != "ok":
            log.warning("%s %s: %s", r["status"], r["input"], r["reason"])
    return 1 if counts["error"] else 0
