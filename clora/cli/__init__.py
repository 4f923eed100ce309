"""The ``clora`` command line (click). Parses options, calls one clora function, prints."""
