"""The static 3D report of a work folder (``videofrom3d report`` / ``view``): see :mod:`.build`."""

from videofrom3d.report.build import write_report
from videofrom3d.report.workfolder import ReportInputError, read_work

__all__ = ["ReportInputError", "read_work", "write_report"]
