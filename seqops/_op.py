"""What an op is: :class:`Op`, the table of declared ops, and the contract check.

An op is declared once, in :mod:`seqops.ops`, by a stub whose signature is the contract
every implementation receives (``backend`` first, then the validated arguments exactly as
the public function passes them) and whose docstring states it. The registry checks each
implementation's ``fn`` and ``decline`` against that signature when the implementation is
registered, as pluggy's ``_verify_hook`` checks a hook implementation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

#: Every declared op by name, in declaration order.
DECLARED: dict[str, Op] = {}


class Op:
    """One declared op: its name, its implementation contract, and its dispatcher.

    Attributes
    ----------
    name : str
        The public function's name, ``seqops.<name>``.
    signature : inspect.Signature
        What implementations receive: ``(backend, <arrays>, /, *, <options>)`` with every
        option resolved (no defaults).
    doc : str
        The contract in words (what the arguments hold once validated).
    parts : tuple of Op
        The ops this op's built-in implementation dispatches (a composite's parts), so that
        a fast path of a part reaches the composite.
    function : callable
        The public function ``seqops.<name>``, which validates and then dispatches.
    dispatch : callable
        ``dispatch(backend, *args, **kwargs)`` with the contract's parameters: runs the first
        implementation on ``backend`` whose ``decline`` accepts the call. Public functions
        call it after validating; composites call it for their parts.
    """

    __slots__ = (
        "name",
        "signature",
        "doc",
        "parts",
        "positional",
        "keywords",
        "cache",
        "dispatch",
        "function",
    )

    def __init__(self, stub: Callable[..., Any], parts: tuple[Op, ...] = ()) -> None:
        self.name: str = stub.__name__
        self.signature = inspect.signature(stub)
        self.doc: str = inspect.getdoc(stub) or ""
        self.parts = parts
        params = list(self.signature.parameters.values())
        if not params or params[0].name != "backend" or params[0].kind is not params[0].POSITIONAL_ONLY:
            msg = f"op {self.name!r}: the contract's first parameter must be the positional-only `backend`"
            raise TypeError(msg)
        self.positional: tuple[str, ...] = tuple(p.name for p in params[1:] if p.kind is p.POSITIONAL_ONLY)
        self.keywords: tuple[str, ...] = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
        if len(self.positional) + len(self.keywords) + 1 != len(params):
            msg = f"op {self.name!r}: contract parameters are positional-only or keyword-only"
            raise TypeError(msg)
        #: backend name -> the implementations asked, in order (filled by the registry,
        #: cleared in place, read by ``dispatch``).
        self.cache: dict[str, tuple[Any, ...]] = {}
        self.dispatch: Callable[..., Any] = _undeclared
        #: The public function ``seqops.<name>`` (set where it is defined).
        self.function: Callable[..., Any] = _undeclared

    def __repr__(self) -> str:
        return f"<seqops op {self.name}{self.signature}>"

    def mismatch(self, fn: Callable[..., Any]) -> str | None:
        """Why ``fn`` cannot be called as this op calls its implementations, else ``None``.

        ``fn`` must take ``backend`` and the arrays positionally (any names) and every
        option by name; it may take more only with defaults.
        """
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return None  # a builtin or C callable: cannot be checked, trusted
        params = list(sig.parameters.values())
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        has_var_pos = any(p.kind is p.VAR_POSITIONAL for p in params)
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        wanted = ("backend", *self.positional)
        if len(positional) < len(wanted) and not has_var_pos:
            missing = wanted[len(positional)]
            return (
                f"it takes {len(positional)} positional parameters, not the op's {len(wanted)} "
                f"(missing {missing!r})"
            )
        taken = {p.name for p in positional[: len(wanted)]}
        by_name = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        for name in self.keywords:
            if name in taken or (name not in by_name and not has_var_kw):
                return f"it does not accept the keyword parameter {name!r}"
        for p in params:
            extra = p.kind is p.KEYWORD_ONLY and p.name not in self.keywords
            extra |= p.kind is p.POSITIONAL_ONLY and positional.index(p) >= len(wanted)
            extra |= (
                p.kind is p.POSITIONAL_OR_KEYWORD
                and positional.index(p) >= len(wanted)
                and p.name not in self.keywords
            )
            if extra and p.default is p.empty:
                return f"it requires the parameter {p.name!r}, which the op does not pass"
        return None


def _undeclared(*args: Any, **kwargs: Any) -> Any:
    msg = "this op has no dispatcher (declare it with seqops.ops' declare)"
    raise RuntimeError(msg)


def op_named(name: str) -> Op:
    """The declared op called ``name`` (``ValueError`` naming it and the known ones otherwise)."""
    op = DECLARED.get(name)
    if op is None:
        msg = f"unknown op {name!r}; declared ops: {', '.join(DECLARED)}"
        raise ValueError(msg)
    return op


def as_op(op: Op | str) -> Op:
    """``op`` itself, or the declared op of that name."""
    return op if isinstance(op, Op) else op_named(op)
