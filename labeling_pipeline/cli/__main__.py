"""``python -m labeling_pipeline.cli``: the same as the ``labeling-pipeline`` console script."""

import sys

from labeling_pipeline.cli.main import main

sys.exit(main())
