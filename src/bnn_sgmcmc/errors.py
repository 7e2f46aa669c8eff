"""Errors whose message already says what is wrong and what to do.

Jobs report these as one line (see ``logs.to_file``) instead of a traceback.
"""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the fix."""


class DataError(ValueError):
    """Input data or an input file that cannot be used; the message says what to do."""


class DivergenceError(RuntimeError):
    """A chain's parameters became NaN or infinite; the message names sampler, chain and step."""


USER_ERRORS = (ConfigError, DataError, DivergenceError)
