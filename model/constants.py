"""Numbers fixed by the published model (mmpose td-reg_res50_softwingloss_8xb64-210e_wflw-256x256)."""

# Side of the square network input, in pixels. The regressor's outputs are crop pixels divided by
# the input size (mmpose's RegressionLabel divides by 256, not 255): model.codec applies it.
INPUT_SIZE = 256

# Smallest crop side accepted (pipeline and training): ResNet-50 reduces its input 32-fold, so a
# 16-px crop is already a single feature pixel from layer3 on; smaller crops hold no usable detail.
# The project's test and synthetic checkpoints use 64 or 128.
MIN_INPUT_SIZE = 16

# Face crops are the (square) box enlarged by this factor (mmpose's bbox padding).
CROP_PADDING = 1.25

# Input normalisation of RGB pixels on the 0-255 scale (ImageNet statistics, as mmpose uses).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
