"""One-shot vertebra labelling of spine DICOM studies, as a Dagster pipeline.

The functional core (``imaging``, ``features``, ``localization``, ``labels``, ``anatomy``,
``synthetic``) holds pure numpy/torch code; ``defs`` is the thin Dagster shell that wires it.
"""

__version__ = "0.1.0"
