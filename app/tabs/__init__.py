"""One builder per tab of the page (``app.ui.build_demo`` calls them in order): each lays out its
components, wires its own events and returns only the handles a later tab needs.

Shared here: ``bind`` (a callback with the ``AppContext`` bound) and ``network_group``, the
listener keywords of the still-image concurrency group (``app.serving.NETWORK``, where every
concurrency group and limit is set).
"""
from __future__ import annotations

import inspect
import typing

from app.context import AppContext
from app.serving import NETWORK, concurrency


def bind(fn, ctx: AppContext):
    """``fn`` with ``ctx`` as its first argument, keeping the rest of its signature and type hints
    (Gradio reads them to pass ``gr.SelectData``, ``gr.Request`` and ``gr.Progress``;
    ``functools.partial`` hides them). A generator stays a generator (Gradio streams its yields)."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    if inspect.isgeneratorfunction(fn):
        def bound(*args, **kwargs):
            yield from fn(ctx, *args, **kwargs)
    else:
        def bound(*args, **kwargs):
            return fn(ctx, *args, **kwargs)
    bound.__name__ = fn.__name__
    bound.__qualname__ = fn.__qualname__
    bound.__doc__ = fn.__doc__
    bound.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    bound.__annotations__ = {k: v for k, v in hints.items() if k != "ctx"}
    return bound


def network_group() -> dict:
    """Listener keywords of the still-image group that runs the detector and the network."""
    return concurrency(NETWORK)
