"""DICOM reading and pixel preparation: from files on disk to the image that gets labelled."""
