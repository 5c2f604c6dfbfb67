"""What the tests of bad input check of the CLI's answer: exactly one error line, no traceback."""


def one_line_error(capsys, *words) -> str:
    """The one ``cavga: error:`` line on stderr, which holds each of ``words``."""
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("cavga: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for w in words:
        assert str(w) in errors[0], (w, errors[0])
    return errors[0]
