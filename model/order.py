"""Reading order of faces: the one order of the record, the table, the image labels, the CLI and the API."""
from __future__ import annotations

import numpy as np

# Faces are cut into rows at gaps between their vertical centres (taken top to bottom). A gap of
# more than this share of the row's median face height always separates rows: faces of one row sit
# at slightly different heights, the next row of a group photo about a face height lower.
ROW_GAP = 0.5
# A row spanning more than this share of its median face height is cut in two even when no gap is
# that wide, where the two parts are tightest (least summed squared distance of each centre to its
# part's mean; a lone face at one end does not make a row of its own). Otherwise a staircase of
# faces chains into one row and the numbers zig-zag between rows (#4 of a top row would come
# after #2 and #3 of the second).
ROW_SPREAD = 1.25


def _tightest_cut(values: np.ndarray) -> int:
    """Index k (1..n-1) splitting sorted ``values`` (n >= 2) into [:k], [k:] with the least summed
    squared deviation from each part's mean."""
    n = len(values)
    k = np.arange(1, n)
    total, squares = np.cumsum(values), np.cumsum(values ** 2)
    left = squares[:-1] - total[:-1] ** 2 / k
    right = (squares[-1] - squares[:-1]) - (total[-1] - total[:-1]) ** 2 / (n - k)
    return int(np.argmin(left + right)) + 1


def reading_order(boxes) -> list[int]:
    """Indices of (F, 4) xyxy boxes in reading order: rows top to bottom, left to right in a row.

    Rows: all faces sorted by vertical centre are cut at the largest gap between consecutive
    centres while it is more than ``ROW_GAP`` median face heights (of the faces being cut); else,
    where those faces span more than ``ROW_SPREAD`` median heights, at the tightest two-part cut.
    Each part is cut the same way.
    In a row, faces go by horizontal centre. The result depends only on the boxes, not their
    order: applied to boxes already in reading order it gives 0..F-1.

    Raises:
        ValueError: ``boxes`` is not (F, 4) or holds a non-finite value.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return []
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise ValueError(f"reading_order: boxes must be finite (F, 4) x1, y1, x2, y2; got shape {boxes.shape}")
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    heights = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    rows, pending = [], [np.argsort(cy, kind="stable")]
    while pending:  # a stack of runs sorted by centre, top run last
        run = pending.pop()
        gaps = np.diff(cy[run])
        height = float(np.median(heights[run]))
        cut = None
        if len(run) > 1 and gaps.max() > ROW_GAP * height:
            cut = int(np.argmax(gaps)) + 1
        elif len(run) > 1 and cy[run[-1]] - cy[run[0]] > ROW_SPREAD * height:
            cut = _tightest_cut(cy[run])
        if cut is not None:
            pending += [run[cut:], run[:cut]]
        else:
            rows.append(sorted((int(i) for i in run), key=lambda i: (cx[i], cy[i])))
    return [i for row in rows for i in row]
