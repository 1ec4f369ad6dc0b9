"""Exit statuses of ``leukemia-cnn``, as ``leukemia-cnn --help`` documents them."""

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# Images unlike the training images: `predict --reject-unfamiliar` flagged one, or `drift` found drift.
EXIT_UNFAMILIAR = 4
# `drift` on fewer images than drift.min_images found no drift: too few images to judge.
EXIT_TOO_FEW = 5
