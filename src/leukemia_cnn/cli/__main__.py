"""``python -m leukemia_cnn.cli``: the ``leukemia-cnn`` command."""

import sys

from leukemia_cnn.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
