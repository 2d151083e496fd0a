"""Review tab callbacks (``app.tabs.review`` lays the tab out): open a face in the point editor,
verdicts, notes, point moves, navigation, exports.

Every action is written to the ``app.review_store.ReviewStore`` at once, under the reviewer's name;
reopening a face shows what that reviewer stored. With sign-in (``python -m app --auth-file``) the
reviewer is the signed-in account, taken from the request on the server (``gr.Request.username``),
and the name typed in the page is ignored; without it, the typed name is the reviewer. Nothing can
be stored before a face is open: the face being reviewed is the ``face`` state that only
``open_face`` sets (never the index box).
"""
from __future__ import annotations

import itertools
import shlex
import shutil
from pathlib import Path

import gradio as gr

from app.auth import account, signed_in_html
from app.context import AppContext
from app.editor import edit_from_event, editor_value
from app.own_dataset import EXPORTS_DIR, export_annotated, new_export_folder, zip_dataset
from app.review_store import check_reviewer, face_key, verdicts_for
from app.stored_predictions import image_sizes, provenance
from app.wflw_faces import describe_face, face_crop
from model.text import counted
from model.formats.wflw import write_wflw_txt
from model.io import atomic_write_text

# Side of the face crop sent to the editor, pixels (the SVG draws the points at display resolution).
EDITOR_VIEW_SIZE = 768
_OPENED = itertools.count()
# The fine-tune the export panel offers: the published weights, the short schedule of the README's
# "Fine-tuning from the published model" (lr a fifth of the recipe's, 20 epochs, decay at 15).
FINE_TUNE_ARGS = ("--pretrained", "official", "--lr", "1e-4", "--epochs", "20", "--milestones", "15",
                  "--warmup-iters", "50", "--eval-interval", "1", "--batch-size", "64", "--recipe", "mmpose-1.x")


def _ready(ctx: AppContext):
    if ctx.testset is None:
        raise gr.Error("No WFLW root loaded. " + ctx.wflw_message, print_exception=False)
    if ctx.store is None:
        raise gr.Error("No review database: start the app with --review-db FILE.", print_exception=False)
    return ctx.testset, ctx.store


def _index(ctx: AppContext, index) -> int:
    ts = ctx.testset
    if index is None or index == "":
        raise gr.Error("Choose a face: its index in the test list, or click one in the WFLW browser.",
                       print_exception=False)
    index = int(index)
    if not 0 <= index < len(ts):
        raise gr.Error(f"Face index must be in 0..{len(ts) - 1}, got {index}.", print_exception=False)
    return index


def reviewer_name(reviewer: str | None, request: gr.Request | None = None) -> str:
    """Who acts: the signed-in account, else the typed name, stripped ("" when there is none)."""
    return account(request) or (reviewer or "").strip()


def _reviewer(reviewer: str | None, request: gr.Request | None = None) -> str:
    try:
        return check_reviewer(reviewer_name(reviewer, request))
    except ValueError as exc:
        raise gr.Error(f"{str(exc)[0].upper()}{str(exc)[1:]}.", print_exception=False) from None


def progress(ctx: AppContext, reviewer: str | None = None) -> str:
    """One line: faces reviewed (``ReviewStore.reviewed_keys``) by this reviewer and by anyone."""
    if ctx.testset is None or ctx.store is None:
        return "Review needs --wflw-root (and a review database, --review-db, default review.sqlite)."
    total = len(ctx.testset)
    name = (reviewer or "").strip()
    mine = f"{name}: **{ctx.store.progress(name)} / {total}** faces reviewed · " if name else ""
    return f"{mine}all reviewers: {ctx.store.progress()} / {total}"


def session(ctx: AppContext, request: gr.Request | None = None):
    """At page load: (reviewer box, signed-in line, progress). Signed in, the box shows the account
    and cannot be edited, and the line (HTML: a Markdown link would open a new tab) names it with
    Gradio's sign-out link; otherwise both stay as they are."""
    name = account(request)
    if name is None:
        return gr.skip(), gr.update(visible=False), progress(ctx)
    return (gr.update(value=name, interactive=False, label="Reviewer (your account)"),
            gr.update(value=signed_in_html(name), visible=True),
            progress(ctx, name))


def _status(index: int, name: str, fixes: int) -> str:
    """The status line of a face just opened: it names that face (never the last one edited)."""
    if not name:
        return f"Face {index} open."
    return f"Face {index} open · {counted(fixes, 'point')} corrected by {name}."


def open_face(ctx: AppContext, index, reviewer: str | None = None, request: gr.Request | None = None):
    """Open a face for review.

    Returns:
        (editor value, verdict, note, clear-verdict button, description, progress, index, face state,
        status line).
    """
    ts, store = _ready(ctx)
    index = _index(ctx, index)
    name = reviewer_name(reviewer, request)
    stored = store.get(index, ts.samples[index].image, reviewer=name) if name else {
        "verdict": None, "note": "", "corrections": {}}
    view, matrix = face_crop(ctx, index, EDITOR_VIEW_SIZE)
    pred = ts.pred[index] if ts.pred is not None else None
    value = editor_value(index, view, matrix, ts.samples[index].landmarks, pred, stored["corrections"])
    value["opened"] = next(_OPENED)  # reopening the same face reloads the editor (a value Gradio sees as new)
    text = describe_face(ctx, index)
    if not name:
        text += "\n\nType your name in **Reviewer** (then Enter) to give verdicts, notes and point moves."
    editable = bool(name)
    return (value, gr.update(value=stored["verdict"], interactive=editable),
            gr.update(value=stored["note"], interactive=editable), gr.update(interactive=editable),
            text, progress(ctx, name), index, index, _status(index, name, len(stored["corrections"])))


def reopen(ctx: AppContext, face, reviewer: str | None, request: gr.Request | None = None):
    """The reviewer name changed: show the open face again with that reviewer's decisions."""
    if face is None or ctx.testset is None or ctx.store is None:
        return (*(gr.skip() for _ in range(5)), progress(ctx, reviewer_name(reviewer, request)), gr.skip(), gr.skip(),
                gr.skip())
    return open_face(ctx, face, reviewer, request)


def _in_order(ctx: AppContext, order: list[int] | None) -> list[int]:
    """The browser's current filtered order, or the whole test list when it has none."""
    return [int(i) for i in order] if order else list(range(len(ctx.testset)))


def step(ctx: AppContext, face, delta: int, order: list[int] | None = None, reviewer: str | None = None,
         request: gr.Request | None = None):
    """Open the previous (-1) or next (+1) face in the browser's filtered order (worst NME first),
    or of the test list when the browser shows none. From no face, Next opens the first."""
    _ready(ctx)
    faces = _in_order(ctx, order)
    if face is None or int(face) not in faces:
        target = faces[0] if delta > 0 else faces[-1]
    else:
        target = faces[(faces.index(int(face)) + delta) % len(faces)]
    return open_face(ctx, target, reviewer, request)


def next_unreviewed(ctx: AppContext, face, order: list[int] | None = None, reviewer: str | None = None,
                    request: gr.Request | None = None):
    """Open the next face in the filtered order that this reviewer has not reviewed (``reviewed_keys``)."""
    ts, store = _ready(ctx)
    name = _reviewer(reviewer, request)
    faces = _in_order(ctx, order)
    done = store.reviewed_keys(name)
    start = faces.index(int(face)) + 1 if face is not None and int(face) in faces else 0
    for k in range(len(faces)):
        candidate = faces[(start + k) % len(faces)]
        if face_key(candidate, ts.samples[candidate].image) not in done:
            return open_face(ctx, candidate, name, request)
    raise gr.Error(f"Every face in this order ({len(faces)}) has been reviewed by {name}.", print_exception=False)


def save_verdict(ctx: AppContext, face, verdict: str | None, reviewer: str | None, request: gr.Request | None = None):
    """Store the verdict of the open face; returns the progress line."""
    ts, store = _ready(ctx)
    if face is None:
        raise gr.Error("Open a face before giving a verdict.", print_exception=False)
    index = _index(ctx, face)
    offered = verdicts_for(ts.kind)
    if verdict is not None and verdict not in offered:
        raise gr.Error(f"Verdict must be one of {', '.join(offered)}; got {verdict!r}.", print_exception=False)
    name = _reviewer(reviewer, request)
    store.set_verdict(index, ts.samples[index].image, verdict, reviewer=name)
    return progress(ctx, name)


def clear_verdict(ctx: AppContext, face, reviewer: str | None, request: gr.Request | None = None):
    """Remove the open face's verdict: (verdict None, progress)."""
    return None, save_verdict(ctx, face, None, reviewer, request)


def save_note(ctx: AppContext, face, note: str, reviewer: str | None, request: gr.Request | None = None) -> str:
    """Store the free-text note of the open face; returns a status line."""
    ts, store = _ready(ctx)
    if face is None:
        raise gr.Error("Open a face before writing a note.", print_exception=False)
    index = _index(ctx, face)
    store.set_note(index, ts.samples[index].image, note or "", reviewer=_reviewer(reviewer, request))
    return f"Note saved for face {index}."


def edit_point(ctx: AppContext, face, reviewer: str | None, request: gr.Request | None, evt: gr.EventData):
    """An editor ``move`` or ``unmove`` event: store (or forget) one point's correction.

    Returns (status, editor value, progress). The editor keeps its own view while a move is stored
    (``gr.skip()``); when the move is refused it is reloaded from the store, so that what it
    shows is what is stored.
    """
    ts, store = _ready(ctx)
    try:
        event_face, point, x, y = edit_from_event(getattr(evt, "_data", None))
        if face is None or event_face != int(face):
            raise ValueError(f"the edit is for face {event_face}, but the open face is {face}; nothing stored")
        name = check_reviewer(reviewer_name(reviewer, request))
        image = ts.samples[event_face].image
        if x is None:
            store.clear_correction(event_face, image, point, reviewer=name)
            status = f"Point {point} of face {event_face} is back at its annotated position."
        else:
            store.set_correction(event_face, image, point, x, y, reviewer=name)
            status = f"Point {point} of face {event_face} moved to ({x:.1f}, {y:.1f}) in image pixels."
        return status, gr.skip(), progress(ctx, name)
    except ValueError as exc:
        gr.Warning(f"Not stored: {exc}.")
        if face is None:
            return f"Not stored: {exc}.", None, gr.skip()
        return f"Not stored: {exc}.", open_face(ctx, face, reviewer, request)[0], gr.skip()


def export_root(ctx: AppContext) -> Path | None:
    """Where exports go: ``--export-dir``, else ``exports/`` inside the loaded dataset's ROOT."""
    if ctx.export_dir is not None:
        return Path(ctx.export_dir)
    return None if ctx.testset is None else Path(ctx.testset.tree.root) / EXPORTS_DIR


def fine_tune_command(dataset: Path, work_dir: Path) -> str:
    """The ``training.train`` command that fine-tunes the published model on ``dataset``, as shell
    lines continued with backslashes (paths quoted where needed)."""
    lines = [("python", "-m", "training.train", "--wflw-root", str(dataset)), ("--work-dir", str(work_dir)),
             FINE_TUNE_ARGS]
    return " \\\n    ".join(" ".join(shlex.quote(a) for a in line) for line in lines)


def export(ctx: AppContext, reviewer: str | None = None, request: gr.Request | None = None):
    """Write everything stored, by every reviewer, to a new folder that stays (``export_root``):
    ``review.csv``, ``review.json`` and the corrected annotations (WFLW: the corrected test list; an
    annotate dataset: the reviewed dataset ``dataset/`` and ``dataset.zip``, the same with its photos).
    An export that fails leaves no folder behind.

    Returns:
        (paths offered for download, Markdown naming the folder and the command to run on it).
    """
    _ready(ctx)
    try:
        folder = new_export_folder(export_root(ctx))
    except OSError as exc:  # a dataset folder that cannot be written: say where and what to do
        raise gr.Error(f"The export folder could not be made: {exc}. Start the app with --export-dir FOLDER "
                       "to export elsewhere.", print_exception=False) from None
    try:
        files, dataset = _write_export(ctx, folder, reviewer_name(reviewer, request) or None)
    except (OSError, ValueError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise gr.Error(f"The export could not be written: {exc}", print_exception=False) from None
    return [str(f) for f in files], export_summary(folder, dataset)


def _write_export(ctx: AppContext, folder: Path, by: str | None) -> tuple[list[Path], dict | None]:
    """Fill the new export ``folder`` (see ``export``): (the files to offer, the dataset summary or None)."""
    ts, store = ctx.testset, ctx.store
    files = [atomic_write_text(folder / "review.csv", store.export_csv()),
             atomic_write_text(folder / "review.json", store.export_json(provenance(ctx), exported_by=by))]
    if ts.kind == "annotate":
        dataset = export_annotated(ts, store, folder / "dataset", exported_by=by)
        return files + [zip_dataset(dataset["root"], folder / "dataset.zip")], dataset
    txt_path = folder / "list_98pt_rect_attr_test_corrected.txt"
    write_wflw_txt(txt_path, store.corrected_samples(ts.samples, image_sizes=image_sizes(ctx)))
    return files + [txt_path], None


def export_summary(folder: Path, dataset: dict | None) -> str:
    """Markdown: where the export is, what it holds and, for a reviewed dataset, how to fine-tune on it."""
    text = (f"**Exported to** `{folder}`\n\nA new folder for every export; it stays after the app stops. "
            "`review.csv` and `review.json` hold every verdict, note and point fix.")
    if dataset is None:
        return text + " `list_98pt_rect_attr_test_corrected.txt` is the test list with the corrections applied."
    return (text + f" `dataset/` is the reviewed dataset: {dataset['faces']} faces ({dataset['human']} human-made), "
            f"{dataset['left_out']} left out as \"not a face\"; `dataset.zip` holds the same, photos included.\n\n"
            "Fine-tune the published model on it:\n\n"
            f"```\n{fine_tune_command(dataset['root'], folder / 'finetune')}\n```")
