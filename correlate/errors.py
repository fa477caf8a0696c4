"""The one error base of the correlate package."""


class CorrelateError(Exception):
    """Base of every error raised by the correlate package."""


class SipError(CorrelateError):
    """A SIP message that cannot be parsed."""


class SdpError(CorrelateError):
    """An SDP body that cannot be parsed."""
