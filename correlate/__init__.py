"""SIP/SDP parsing, dialog tracking and the media table."""
