"""keynews: key news on the companies you follow, as email digests."""

__version__ = "0.1.0"
