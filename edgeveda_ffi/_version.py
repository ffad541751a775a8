"""Package and API versions. HEADER_VERSION must equal EV_VERSION_STRING in
native/include/edge_veda.h; the extension bakes that in and is checked at import."""

__version__ = "0.1.0"
HEADER_VERSION = "1.6.0"
