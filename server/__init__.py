"""Catchlight's web side: HTTP API, websocket stream, pages, and the scheduling of frames onto the matcher pool."""
