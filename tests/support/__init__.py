"""Helpers the test tiers share: private stacks and job configs, producing and reading
back events, and the final rows of the job's output.

Test modules import from here, never from each other: a helper two tiers need lives
in this package.  (The models the tests compare against, `tests/oracle.py` and
`tests/streaming_sim.py`, and the event builder `tests/eventgen.py` stay beside it.)
"""
