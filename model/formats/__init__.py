"""File formats below both ``model/`` and ``training/``: WFLW annotation lists and tree
(``wflw``), COCO keypoints (``coco``) and the own-photo dataset layout that combines them (``dataset``)."""
