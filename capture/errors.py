"""The one error base of the capture package."""


class CaptureError(Exception):
    """Base of every error raised by the capture package."""


class CaptureFormatError(CaptureError):
    """A file is not a readable pcap or pcapng capture."""
