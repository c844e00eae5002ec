"""Client libraries for Catchlight servers (no OpenCV, no server code needed)."""

from catchlight.client import Catchlight, CatchlightError, Stream

__all__ = ["Catchlight", "CatchlightError", "Stream"]
