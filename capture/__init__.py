"""Packet sources and link/network decoding."""
