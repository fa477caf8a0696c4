"""RTP timeline, decoding and the output files of a finished call."""
