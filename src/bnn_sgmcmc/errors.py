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


def os_error_fields(err: OSError) -> tuple[int | None, str | None, str | None]:
    """An OSError's errno, file name and reason; h5py's errors carry the C library's in their text
    (``name = '...', errno = 28, error message = '...'``), with the attributes unset."""
    import re

    if err.errno is not None:
        return err.errno, err.filename, err.strerror
    found = re.search(r"name = '([^']*)', errno = (\d+), error message = '([^']*)'", str(err))
    if found:
        return int(found.group(2)), found.group(1), found.group(3)
    code = re.search(r"errno = (\d+)", str(err))
    return (int(code.group(1)) if code else None), err.filename, err.strerror
