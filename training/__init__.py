"""Training and evaluation on WFLW: data, augmentation, loss, metrics (train/evaluate are scripts).

``training.train`` and ``training.evaluate`` are run as modules and are not imported here.
"""
from training.augment import (MMPOSE_0X_AUGMENT, MMPOSE_1X_AUGMENT, AugmentParams, NormalDraw, crop_points,
                              draw_crop, flip_landmarks)
from training.loss import SoftWingLoss
from training.metrics import (ced_curve, ced_figure, format_table, fr_auc, landmark_figure, nme,
                              per_landmark_error, subset_table, summarize)
from training.dataset import WFLWDataset
from model.formats.wflw import (Sample, WFLWTree, crop_box, find_wflw_root, format_wflw_line,
                           load_test_split, load_wflw_json, load_wflw_txt, mmpose_box, parse_wflw_line,
                           resolve_image, write_wflw_txt)

__all__ = [
    "MMPOSE_0X_AUGMENT", "MMPOSE_1X_AUGMENT", "AugmentParams", "NormalDraw", "crop_points", "draw_crop",
    "flip_landmarks",
    "SoftWingLoss",
    "ced_curve", "ced_figure", "format_table", "fr_auc", "landmark_figure", "nme", "per_landmark_error",
    "subset_table", "summarize",
    "Sample", "WFLWDataset", "WFLWTree", "crop_box", "find_wflw_root", "format_wflw_line", "load_test_split",
    "load_wflw_json", "load_wflw_txt", "mmpose_box", "parse_wflw_line", "resolve_image", "write_wflw_txt",
]
