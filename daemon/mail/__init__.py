"""The mail path: digest (select, rank, group) -> render -> message -> outbox -> deliver, run by `send`."""
