"""The billing domain: days, prices, accounts, transfers and the use cases over them.

Standard library only (a test enforces it). The outside world is reached through the
protocols in `core.ports`; time is always passed in.
"""
