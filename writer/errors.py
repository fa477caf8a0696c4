"""The one error base of the writer package."""


class WriterError(Exception):
    """Base of every error raised by the writer package."""


class RtpError(WriterError):
    """A packet that is not valid RTP."""


class SpoolError(WriterError):
    """A per-call spool file that cannot be read."""
