"""One builder per tab of the page (``app.ui.build_demo`` calls them in order): each lays out its
components, wires its own events and returns only the handles a later tab needs.

Shared here: ``bind`` (a callback with the ``AppContext`` bound) and the still-image concurrency
group ``NETWORK`` that every listener running the detector or the network on an upload joins.
"""
from __future__ import annotations

import inspect
import typing

from app.context import AppContext

# Concurrency group of every still-image listener that runs the detector or the landmark network.
NETWORK = "network"
NETWORK_CONCURRENCY = 1


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
    return dict(concurrency_id=NETWORK, concurrency_limit=NETWORK_CONCURRENCY)
