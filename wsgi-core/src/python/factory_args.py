"""Parses an application factory's argument list as gunicorn does: literals only."""

import ast


def _parse(args):
    try:
        call = ast.parse('f(' + args + ')', mode='eval').body
    except SyntaxError as e:
        raise ValueError('the factory arguments are not valid Python: ' + str(e.msg)) from None
    if not isinstance(call, ast.Call) or any(isinstance(a, ast.Starred) for a in call.args):
        raise ValueError('the factory arguments must be plain values, without *')
    try:
        positional = tuple(ast.literal_eval(a) for a in call.args)
        keywords = {}
        for k in call.keywords:
            if k.arg is None:
                raise ValueError('**')
            keywords[k.arg] = ast.literal_eval(k.value)
    except ValueError:
        raise ValueError(
            'the factory arguments must be literals (strings, numbers, True, False, None, '
            'tuples, lists, dicts), as for ast.literal_eval'
        ) from None
    return positional, keywords
