"""The Gradio page: five tabs (Upload, Webcam, Video, WFLW browser, Review).

``build_demo`` creates the shared ``AppContext`` and calls one builder per tab in order
(``app.tabs.upload``, ``webcam``, ``video``, ``browser``, ``review``); each lays out its
components, wires its own events and returns only the handles a later tab needs. Callbacks live in
``app.upload``, ``app.webcam``, ``app.video``, ``app.browser`` (with ``app.compare`` and
``app.stored_predictions``) and ``app.review``; each takes the context as first argument, bound with
``app.tabs.bind``. Every network forward goes through the one inference engine (``app.context``);
the listeners' concurrency groups and every serving limit are ``app.serving``'s. The webcam's
frames do not go through Gradio's queue: its page talks to the live route (``app.live``, mounted at
launch).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import gradio as gr

from app import stored_predictions
from app.auth import account, signed_in_html
from app.context import AppContext
from app.tabs import browser as browser_tab
from app.tabs import review as review_tab
from app.tabs import upload as upload_tab
from app.tabs import video as video_tab
from app.tabs import webcam as webcam_tab
from model.detector import FaceDetector
from model.pipeline import Predictor

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# The page's own style (the editor's is app/static/editor.css, loaded by its component).
CSS_FILE = Path(__file__).resolve().parent / "static" / "app.css"
CSS = CSS_FILE.read_text(encoding="utf-8")

def example_images() -> list[str]:
    """Example photos shipped under ``assets/``."""
    if not ASSETS.is_dir():
        return []
    return sorted(str(p) for p in ASSETS.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)


def _blocks() -> gr.Blocks:
    # CSS belongs to launch() in Gradio 6, which app.__main__ and the tests' servers call; given
    # here too (Gradio's deprecated path, used by launch() when it gets no css) so that every
    # launch of this page is styled.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The parameters have been moved from the Blocks constructor")
        return gr.Blocks(title="Landmark Studio", css=CSS)


def build_demo(predictor: Predictor | None, *, detector: FaceDetector | None = None, banner: str | None = None,
               testset=None, wflw_message: str = "", store=None) -> gr.Blocks:
    """The app's page.

    Args:
        predictor: the loaded 98-point model, or ``None`` (detector-only mode; ``banner`` says why).
        detector: face detector for detector-only mode (default: the predictor's, else a new MTCNN).
        banner: Markdown shown on top of every tab (e.g. how to supply missing weights).
        testset: ``app.wflw_data.WFLWTestSet`` for the browser and review tabs, or ``None``.
        wflw_message: shown in those tabs when ``testset`` is ``None``.
        store: ``app.review_store.ReviewStore`` for the review tab.
    """
    if detector is None:
        detector = predictor.detector if predictor is not None else FaceDetector()
    ctx = AppContext(predictor=predictor, detector=detector, banner=banner, testset=testset,
                     wflw_message=wflw_message, store=store)
    restored = stored_predictions.restore_predictions(ctx)
    if restored:
        log.info(restored)
    with _blocks() as demo:
        demo.app_context = ctx  # for tests and the launcher (allowed_paths)
        gr.Markdown("# Landmark Studio\n98-point face landmarks (WFLW) with the DeepPose ResNet-50 "
                    "SoftWingLoss regressor.")
        signed_in = gr.HTML(visible=False, elem_id="signed-in")
        if banner:
            gr.Markdown(banner, elem_id="weights-banner")
        upload_tab.build(ctx, examples=example_images())
        webcam_tab.build(ctx)
        video_tab.build(ctx, demo)
        opened = browser_tab.build(ctx, demo.load)
        review_tab.build(ctx, opened)
        demo.load(who_is_signed_in, outputs=signed_in, api_name=False)
    return demo


def who_is_signed_in(request: gr.Request):
    """The page's "Signed in as" line, shown when the server has sign-in."""
    name = account(request)
    return gr.update(visible=False) if name is None else gr.update(value=signed_in_html(name), visible=True)
