"""WFLW annotations under the names the training side has always used.

The file formats live in ``model.formats.wflw``, below both ``model/`` and ``training/`` (so that
``model.annotate`` writes WFLW lists without importing ``training``); these are the same objects.
"""
from model.formats.wflw import (Sample, crop_box, find_wflw_root, load_wflw_json, load_wflw_txt, parse_wflw_line,
                                write_wflw_txt)

__all__ = ["Sample", "crop_box", "find_wflw_root", "load_wflw_json", "load_wflw_txt", "parse_wflw_line",
           "write_wflw_txt"]
