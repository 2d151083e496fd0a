"""Start Landmark Studio.

    python -m app [--weights W] [--wflw-root ROOT] [--predictions FILE] [--review-db FILE] [--export-dir DIR]
                  [--host 127.0.0.1] [--port 7860] [--auth-file users.txt | --no-auth]
                  [--device auto|cpu|cuda|cuda:N] [--no-flip] [--max-faces N]

``--auth-file`` (accounts of ``python -m app.users``) makes every page, API call and stream need
sign-in (``app.auth``). A ``--host`` other than a loopback address needs it, or ``--no-auth`` on
purpose: otherwise the app refuses to start (exit status 2).

The model is loaded once. Without usable weights (offline with nothing cached, or a ``--weights``
file that is missing or not a checkpoint) the app still starts in detector-only mode with a banner
saying what is wrong and how to supply them.
"""
from __future__ import annotations

import os

# Before gradio is imported: no usage analytics, no Hugging Face telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# Before gradio is imported: its upload cache inside this process's own temporary folder, removed
# with it at exit and by the next start after a kill (app.context), not left in $TMPDIR/gradio.
from app.context import gradio_temp_dir  # noqa: E402

os.environ["GRADIO_TEMP_DIR"] = str(gradio_temp_dir())

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from model.cli import add_model_arguments  # noqa: E402

log = logging.getLogger("app")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app", description="Landmark Studio: the Gradio app.")
    add_model_arguments(parser, weights_help=(
        "checkpoint path or URL (default: the official mmpose weights from the torch hub cache, downloaded "
        "when online); without usable weights the app runs detector-only and its banner says why"))
    # data
    parser.add_argument("--wflw-root", type=Path, default=None,
                        help="WFLW root (WFLW_images/ and WFLW_annotations/) for the browser and review tabs")
    parser.add_argument("--predictions", type=Path, default=None,
                        help="predictions.json from `python -m training.evaluate` for the WFLW test set")
    parser.add_argument("--review-db", type=Path, default=Path("review.sqlite"),
                        help="SQLite file of review verdicts, notes and corrections (default: review.sqlite)")
    parser.add_argument("--export-dir", type=Path, default=None,
                        help="folder for the Review tab's exports, one new sub-folder each (default: "
                             "ROOT/exports beside the dataset); exports are kept after the app stops")
    # server
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, local only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    access = parser.add_mutually_exclusive_group()
    access.add_argument("--auth-file", type=Path, default=None,
                        help="accounts file of `python -m app.users`: every page, API call and stream needs sign-in")
    access.add_argument("--no-auth", action="store_true",
                        help="serve a non-loopback --host without sign-in, on purpose (anyone who reaches it can "
                             "read, edit and export annotations and start jobs)")
    args = parser.parse_args(argv)
    _check_access(parser, args)
    return args


def _check_access(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (exit status 2) to serve other machines without accounts, unless --no-auth says so."""
    from app.auth import is_loopback

    if is_loopback(args.host) or args.auth_file is not None or args.no_auth:
        return
    parser.error(f"--host {args.host} lets other machines reach the app, so it needs accounts: create them with "
                 "`python -m app.users add NAME --file users.txt` and start with --auth-file users.txt "
                 "(or pass --no-auth to serve without sign-in on purpose)")


def load_model(args: argparse.Namespace):
    """(predictor or None, banner or None): the 98-point model, or why it is missing.

    A project checkpoint's ``config.input_size`` sets the crop size (``Predictor`` reads it).
    """
    from model.network import CheckpointError
    from model.pipeline import Predictor
    from model.weights import WeightsUnavailableError

    try:
        return Predictor(weights=args.weights, device=args.device, flip_test=not args.no_flip,
                         max_faces=args.max_faces, backend=args.backend), None
    except WeightsUnavailableError as exc:  # offline with nothing cached, or a cached file with the wrong sha256
        reason = str(exc)
    except (CheckpointError, OSError) as exc:  # not a checkpoint (says what the file is), missing, unreadable
        reason = f"--weights: {exc}"  # the message names the file
    except ValueError as exc:  # an absent GPU, a backend that cannot run these weights
        reason = str(exc)
    log.warning("98-point model not loaded: %s", reason)
    banner = ("### ⚠ The 98-point landmark model is not loaded\n"
              f"{reason}\n\nUntil then only face boxes and the detector's five points are shown. "
              "Restart with `python -m app --weights PATH`, or put the official checkpoint in the cache as above.")
    return None, banner


def load_wflw(args: argparse.Namespace):
    """(test set or None, message): the browser and review tabs' data."""
    from app.wflw_data import HOW_TO_GET_WFLW, WFLWTestSet

    if args.wflw_root is None:
        return None, "No WFLW root was given. " + HOW_TO_GET_WFLW
    try:
        testset = WFLWTestSet.load(args.wflw_root)
    except (FileNotFoundError, ValueError) as exc:
        log.warning("WFLW browser disabled: %s", exc)
        return None, f"The WFLW root could not be read: {exc}\n\n{HOW_TO_GET_WFLW}"
    if args.predictions is not None:
        testset.load_predictions(args.predictions)  # a wrong file is a start-up error, not a silent gap
    return testset, ""


def load_sign_in(args: argparse.Namespace) -> dict:
    """``demo.launch`` keywords for ``--auth-file`` (``{}`` without it); ``ValueError`` or ``OSError``
    naming the file when it is missing, malformed or empty."""
    if args.auth_file is None:
        if not args.no_auth:
            return {}
        log.warning("--no-auth: anyone who reaches %s:%d can read, edit and export annotations and start jobs",
                    args.host, args.port)
        return {}
    from app.auth import SignIn

    sign_in = SignIn(args.auth_file)
    if args.auth_file.stat().st_mode & 0o077:
        log.warning("%s can be read by other users of this machine: chmod 600 it", args.auth_file)
    log.info("sign-in required: %d accounts in %s", len(sign_in.book.accounts()), args.auth_file)
    return sign_in.launch_options()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        sign_in = load_sign_in(args)
    except (OSError, ValueError) as exc:
        print(f"python -m app: error: --auth-file: {exc}", file=sys.stderr)
        return 2
    # SIGTERM (a service manager, `kill`) exits through sys.exit, so the atexit clean-up runs
    # (AppContext.close: the engine stops and the download folder is removed) as on Ctrl+C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    from app import serving
    from app.review import export_root
    from app.live import launch_options
    from app.review_store import ReviewStore
    from app.ui import ASSETS, build_demo

    predictor, banner = load_model(args)
    testset, wflw_message = load_wflw(args)
    store = ReviewStore(args.review_db) if testset is not None else None
    demo = build_demo(predictor, banner=banner, testset=testset, wflw_message=wflw_message, store=store)
    demo.app_context.export_dir = args.export_dir
    # Served files: the assets, the dataset images (for nothing but the tabs' own views), the
    # app's download folder and the review exports; Gradio's own upload cache is served by Gradio itself.
    allowed = [str(ASSETS), str(demo.app_context.output_dir)]
    if testset is not None:
        allowed += [str(testset.tree.images), str(export_root(demo.app_context))]
    demo.queue(default_concurrency_limit=serving.GRADIO_CONCURRENCY, max_size=serving.GRADIO_QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=serving.MAX_FILE_SIZE,
                allowed_paths=allowed, show_error=True, share=False,
                **launch_options(demo.app_context, sign_in))  # sign-in and the Webcam tab's stream routes
    return 0


if __name__ == "__main__":
    sys.exit(main())
