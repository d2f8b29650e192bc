"""One Dagster partition per study, keyed as ingestion keys them (``YYYYMMDD-<8 hex>``).

The key is :func:`labeling_pipeline.imaging.dicom.partition_key`: readable, sorted by study date,
and free of patient data. Partitions are dynamic: ``dicom_catalog``, the ``new_study_sensor`` and
``labeling-pipeline run`` add a key for every study they find.
"""

import dagster as dg

STUDIES_PARTITION_NAME = "studies"

studies_partitions = dg.DynamicPartitionsDefinition(name=STUDIES_PARTITION_NAME)
