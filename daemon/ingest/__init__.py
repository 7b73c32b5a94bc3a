"""The ingest path: fetch -> parse -> normalize -> link tickers -> cluster (and filings), run by `pipeline`."""
