"""Rasters: files whose values are measurements, not 0..255 photos, and whose metadata must survive.

`geotiff.py` (rasterio) and `dicom.py` (pydicom) read and write them whole-metadata; `raster.py` holds what
the two share: which files are rasters, their value ranges per band, nodata filling. Photos (PNG, JPEG,
plain TIFF, ...) stay in `sagan_restore.io`. Each library is an optional extra (`geo`, `medical`), so each
module imports its library only when a file of its kind is met.
"""
