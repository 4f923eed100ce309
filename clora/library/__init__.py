"""The on-disk adapter library: format, safe versioned writes, loading, PEFT interchange."""

from clora.library.layout import FORMAT_VERSION, LibraryError, read_manifest, sha256_file

__all__ = ["FORMAT_VERSION", "LibraryError", "read_manifest", "sha256_file"]
