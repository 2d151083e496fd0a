"""The Review tab (callbacks in ``app.review``): the point editor beside navigation, verdict, note and
exports. Opening a face in the browser (gallery or landmark table) opens it here too. With sign-in,
the reviewer box shows the signed-in account and cannot be edited, beside a "Signed in as" line."""
from __future__ import annotations

import gradio as gr

from app import review
from app.context import AppContext
from app.editor import point_editor
from app.review_store import MAX_REVIEWER_LENGTH, verdicts_for
from app.serving import REVIEW_EDITS, concurrency
from app.tabs import bind
from app.tabs.browser import BrowserHandles

REVIEW_HELP = ("Keys (outside text boxes): **1, 2, ...** verdict · **n** / **p** next / previous in the browser's "
               "order · **u** next unreviewed · **z** / **Shift+Z** undo / redo a move · **+** / **-** zoom · "
               "**Esc** cancels a drag.")


def _navigation() -> dict:
    h = {}
    with gr.Row():
        h["previous"] = gr.Button("◀ Previous (p)", min_width=80, elem_id="review-previous")
        h["index"] = gr.Number(label="Face index", precision=0, value=None, minimum=0, elem_id="review-index",
                               min_width=80)
        h["next"] = gr.Button("Next (n) ▶", min_width=80, elem_id="review-next")
    with gr.Row():
        h["open"] = gr.Button("Open face", elem_id="review-open")
        h["unreviewed"] = gr.Button("Next unreviewed (u)", elem_id="review-next-unreviewed")
    return h


def _verdicts(ctx: AppContext) -> tuple[str, ...]:
    """The verdicts offered for the loaded dataset's kind (WFLW, or an annotate dataset)."""
    return verdicts_for(ctx.testset.kind if ctx.testset is not None else "wflw")


def _decisions(ctx: AppContext) -> dict:
    verdicts = _verdicts(ctx)
    h = {"info": gr.Markdown(elem_id="review-info"),
         "verdict": gr.Radio(list(verdicts), label=f"Verdict (keys 1-{len(verdicts)})", interactive=False,
                             elem_id="review-verdict"),
         "clear": gr.Button("Clear verdict", size="sm", interactive=False, elem_id="review-clear-verdict"),
         "note": gr.Textbox(label="Note (saved when you leave the box)", lines=2, interactive=False,
                            elem_id="review-note"),
         "status": gr.Markdown(elem_id="review-status"),
         "help": gr.Markdown(REVIEW_HELP, elem_id="review-help"),
         "export": gr.Button("Export CSV, JSON and annotations to a new folder", elem_id="review-export")}
    h["export_info"] = gr.Markdown(elem_id="review-export-info")  # where the export is, and what to run on it
    h["exports"] = gr.File(label="Exported files", file_count="multiple", elem_id="review-exports")
    return h


def _layout(ctx: AppContext) -> dict:
    # Side by side on a wide screen; on a phone the account line and progress go under the box.
    with gr.Row(equal_height=True):
        h = {"reviewer": gr.Textbox(label="Reviewer (stored with every action; Enter to apply)",
                                    placeholder="your name", max_length=MAX_REVIEWER_LENGTH, scale=1,
                                    min_width=200, elem_id="review-reviewer")}
        with gr.Column(scale=2, min_width=240):
            h["signed_in"] = gr.HTML(visible=False, elem_id="review-signed-in")
            h["progress"] = gr.Markdown(review.progress(ctx), elem_id="review-progress")
    if ctx.testset is None:
        gr.Markdown(ctx.wflw_message)
    with gr.Row():
        with gr.Column(scale=3, min_width=320):
            h["editor"] = point_editor(_verdicts(ctx))
        with gr.Column(scale=2, min_width=280):
            h.update(_navigation())
            h.update(_decisions(ctx))
    h["face"] = gr.State(None)  # the open face: the only face anything is stored for
    return h


def _wire_opening(ctx: AppContext, h: dict, browser: BrowserHandles) -> list:
    outputs = [h["editor"], h["verdict"], h["note"], h["clear"], h["info"], h["progress"], h["index"], h["face"],
               h["status"]]
    order, reviewer = browser.order, h["reviewer"]
    # At page load: the signed-in account (if any) becomes the reviewer.
    gr.on(None, bind(review.session, ctx), outputs=[reviewer, h["signed_in"], h["progress"]], api_name="review_session")
    for event, name in browser.opened:
        event.then(bind(review.open_face, ctx), inputs=[browser.face_index, reviewer], outputs=outputs,
                   api_name=f"review_open_from_{name}")
    gr.on([h["open"].click, h["index"].submit], bind(review.open_face, ctx), inputs=[h["index"], reviewer],
          outputs=outputs, api_name="review_open")
    gr.on([reviewer.submit, reviewer.blur], bind(review.reopen, ctx), inputs=[h["face"], reviewer], outputs=outputs,
          api_name="review_reviewer")
    for button, delta, name in ((h["previous"], -1, "review_previous"), (h["next"], 1, "review_next")):
        button.click(bind(review.step, ctx), inputs=[h["face"], gr.State(delta), order, reviewer], outputs=outputs,
                     api_name=name)
    h["unreviewed"].click(bind(review.next_unreviewed, ctx), inputs=[h["face"], order, reviewer], outputs=outputs,
                          api_name="review_next_unreviewed")
    return outputs


def _wire_edits(ctx: AppContext, h: dict) -> None:
    edits = concurrency(REVIEW_EDITS)
    face, reviewer = h["face"], h["reviewer"]
    h["verdict"].input(bind(review.save_verdict, ctx), inputs=[face, h["verdict"], reviewer], outputs=[h["progress"]],
                       api_name="review_verdict", **edits)
    h["clear"].click(bind(review.clear_verdict, ctx), inputs=[face, reviewer], outputs=[h["verdict"], h["progress"]],
                     api_name="review_clear_verdict", **edits)
    h["note"].blur(bind(review.save_note, ctx), inputs=[face, h["note"], reviewer], outputs=[h["status"]],
                   api_name="review_note", **edits)
    # One edit at a time, in the order sent: a drag, its undo and its redo must reach the store in order.
    for event, name in ((h["editor"].move, "review_move"), (h["editor"].unmove, "review_unmove")):
        event(bind(review.edit_point, ctx), inputs=[face, reviewer], outputs=[h["status"], h["editor"], h["progress"]],
              api_name=name, show_progress="hidden", **edits)
    h["export"].click(bind(review.export, ctx), inputs=[reviewer], outputs=[h["exports"], h["export_info"]],
                      api_name="review_export")


def build(ctx: AppContext, browser: BrowserHandles) -> None:
    """Lay out and wire the Review tab, and chain it onto the browser's face openings."""
    with gr.Tab("Review", id="review"):
        h = _layout(ctx)
    _wire_opening(ctx, h, browser)
    _wire_edits(ctx, h)
