"""Answering with a library: the loaded library (``load_library``) and the HTTP server."""
