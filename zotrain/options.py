"""Config fields that carry their command-line form: one definition, one help text.

``option(default, help, group, ...)`` is a ``dataclasses.field`` whose metadata says how
``zotrain``'s commands show it: the flag (``--name-with-dashes`` by default), the group
it is listed in, its choices, a metavar, old spellings kept as aliases (each says its
replacement when used), and for a boolean the flag that sets it to the other value.
``add_options(parser, cls)`` adds every field of the dataclass ``cls`` to ``parser``,
grouped in ``GROUPS`` order, with ``(default X)`` from the field itself; adding a field
adds its flag.  Every flag stores ``None`` unless given, so a run's own settings (a
recipe, a resumed run) are told apart from the options given.
"""

import argparse
import dataclasses
import sys
import typing

#: the order of the option groups in ``--help``
GROUPS = ("data", "model", "estimator", "evaluator", "optimisation", "derivatives", "body",
          "body gauss-newton", "head", "boundary", "budgets and stopping", "output",
          "backend and scale-out")


def option(default, help, group, *, flag=None, choices=None, metavar=None, aliases=(),
           negate=None, nargs=None, const=None, default_help=None, type=None):
    """A dataclass field with its command-line form (see the module's docstring).
    ``negate``: for a boolean, the flag that stores the opposite of the default
    (``--one-sided`` for ``antithetic=True``); ``default_help`` replaces ``(default X)``."""
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; known: {', '.join(GROUPS)}")
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, flag=flag, choices=choices, metavar=metavar,
        aliases=tuple(aliases), negate=negate, nargs=nargs, const=const,
        default_help=default_help, type=type))


def _scalar_type(annotation):
    """``int``, ``float``, ``str`` or ``bool`` of an annotation (``Optional[X]`` is X)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"Optional": typing.Optional, "Any": typing.Any})
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    return annotation if annotation in (int, float, str, bool) else str


class _Alias(argparse.Action):
    """An old spelling: stores like its replacement and says the new name on stderr."""

    def __init__(self, option_strings, dest, replacement, base_action, **kw):
        self.replacement = replacement
        self.base = base_action
        super().__init__(option_strings, dest, nargs=base_action.nargs, const=base_action.const,
                         type=base_action.type, choices=base_action.choices, help=argparse.SUPPRESS,
                         metavar=base_action.metavar, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"zotrain: {option_string} is now {self.replacement}", file=sys.stderr)
        self.base(parser, namespace, values, self.replacement)


def _described(meta, default):
    text = meta["help"]
    shown = meta["default_help"]
    if shown is None and default is not None and meta["negate"] is None:
        shown = f"default {default}"
    return f"{text} ({shown})" if shown else text


def add_options(parser, cls, only=None, groups=None, extra=()):
    """Add every field of the dataclass ``cls`` (and ``extra``: ``(name, default, type,
    metadata)`` tuples, for options a strategy object holds) that carries a command-line
    form (or those named in ``only``) to ``parser``.  ``groups`` (a dict) is filled with
    the argparse groups by name and reused; returns it."""
    groups = {} if groups is None else groups
    fields = [(f.name, f.default, f.type, f.metadata) for f in dataclasses.fields(cls)]
    items = [x for x in fields + list(extra) if "group" in x[3] and (only is None or x[0] in only)]
    for name, default, annotation, meta in sorted(items, key=lambda x: GROUPS.index(x[3]["group"])):
        group = meta["group"]
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        g = groups[group]
        flag = meta["flag"] or "--" + name.replace("_", "-")
        kind = meta["type"] or _scalar_type(annotation)
        if kind is bool:
            flag = meta["negate"] or flag
            action = g.add_argument(flag, dest=name, action="store_const",
                                    const=not default if meta["negate"] else True,
                                    default=None, help=_described(meta, default))
        else:
            kw = dict(type=kind, choices=meta["choices"], metavar=meta["metavar"],
                      help=_described(meta, default), default=None)
            if meta["nargs"] is not None:
                kw.update(nargs=meta["nargs"], const=meta["const"])
            action = g.add_argument(flag, dest=name, **kw)
        for old in meta["aliases"]:
            g.add_argument(old, dest=name, action=_Alias, replacement=flag, base_action=action,
                           default=None)
    return groups
