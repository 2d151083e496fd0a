"""Numbers fixed by the published model (mmpose td-reg_res50_softwingloss_8xb64-210e_wflw-256x256)."""

# Side of the square network input, in pixels.
INPUT_SIZE = 256

# The regressor outputs crop-pixel coordinates divided by this (mmpose's RegressionLabel divides
# by the input size, 256, not 255).
COORD_SCALE = 256.0

# Face crops are the (square) box enlarged by this factor (mmpose's bbox padding).
CROP_PADDING = 1.25

# Input normalisation of RGB pixels on the 0-255 scale (ImageNet statistics, as mmpose uses).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
