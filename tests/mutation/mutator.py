"""Mutants of one Python module: a pure function of its source text and the text rules.

Each mutant is one small edit of the source (a span and its replacement), so line numbers and
tracebacks stay those of the original. The operators (docs/mutation.md lists them):

* ``compare``  ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``, ``in`` ↔ ``not in``,
  ``is`` ↔ ``is not``
* ``boolop``   ``and`` ↔ ``or``
* ``not``      ``not x`` → ``x``
* ``negate``   a condition that is a name, attribute, call or subscript → ``not (…)``
* ``binop``    ``+`` ↔ ``-``, ``*`` ↔ ``/``, ``//`` → ``/``, ``%`` → ``/``, ``<<`` ↔ ``>>``,
  ``&`` ↔ ``|``, ``^`` → ``&``, and the same for augmented assignments
* ``number``   ``n`` → ``n + 1``
* ``bool``     ``True`` ↔ ``False``
* ``string``   ``"s"`` → ``"XXsXX"`` (bytes too; an f-string is wrapped in ``"XX" + … + "XX"``)
* ``delete``   an expression statement (a call) or a ``raise`` → ``pass``
* ``return``   ``return x`` → ``return None``
* ``assign``   ``x = v`` → ``x = None``
* ``loop``     ``break`` ↔ ``continue``

Never mutated, because they are not behaviour: docstrings, annotations, ``__all__``, blocks
under ``if TYPE_CHECKING:``. Mutants that change only text (an error's message or hint, a
finding's message, a log line) are generated but carry the name of the rule that excludes
them from the score, so the report counts them instead of hiding them.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = ["Mutant", "TextRules", "mutants"]

_COMPARE = {
    ast.Lt: "<=",
    ast.LtE: "<",
    ast.Gt: ">=",
    ast.GtE: ">",
    ast.Eq: "!=",
    ast.NotEq: "==",
    ast.In: "not in",
    ast.NotIn: "in",
    ast.Is: "is not",
    ast.IsNot: "is",
}
_BINOP = {
    ast.Add: "-",
    ast.Sub: "+",
    ast.Mult: "/",
    ast.Div: "*",
    ast.FloorDiv: "/",
    ast.Mod: "/",
    ast.LShift: ">>",
    ast.RShift: "<<",
    ast.BitAnd: "|",
    ast.BitOr: "&",
    ast.BitXor: "&",
}
_OP_WORDS = frozenset({"<", "<=", ">", ">=", "==", "!=", "in", "not", "is", "and", "or"})
_OP_WORDS |= frozenset({"+", "-", "*", "/", "//", "%", "<<", ">>", "&", "|", "^", "@", "**"})


@dataclass(frozen=True)
class TextRules:
    """Which arguments are text only (a message, a hint, a log line).

    Attributes:
        calls: Callee name (the last dotted part) → indices of its positional text arguments.
        keywords: Keyword arguments that are text in any call.
        error_suffixes: A callee whose name ends with one of these is an error class: its
            first positional argument is its message.
        loggers: Names of logger objects: a call on them is a log line.
    """

    calls: Mapping[str, Sequence[int]] = field(default_factory=dict)
    keywords: frozenset[str] = frozenset({"message", "hint"})
    error_suffixes: tuple[str, ...] = (
        "Error",
        "Exception",
        "Denied",
        "Failed",
        "Invalid",
        "InvalidInput",
        "NotFound",
        "Conflict",
        "Unavailable",
        "Config",
    )
    loggers: frozenset[str] = frozenset({"logger", "log", "logging", "_log", "_logger"})


@dataclass(frozen=True)
class Mutant:
    """One edit of a module's source.

    Attributes:
        key: Stable name of the mutant (scope, operator, original and replacement text, and an
            occurrence number), unchanged when lines move; the equivalents list uses it.
        line: First line of the edited span (1-based).
        start: Offset of the span in the source text.
        end: End offset of the span.
        original: The text replaced.
        replacement: The new text.
        operator: The mutation operator (see the module docstring).
        scope: Dotted name of the enclosing function or class (``<module>`` at the top).
        end_line: Last line of the edited span.
        rule: The text rule that excludes the mutant from the score, or ``None``.
    """

    key: str
    line: int
    start: int
    end: int
    original: str
    replacement: str
    operator: str
    scope: str
    end_line: int
    rule: str | None = None

    def apply(self, source: str) -> str:
        """The mutated source."""
        return source[: self.start] + self.replacement + source[self.end :]


def mutants(source: str, rules: TextRules | None = None) -> list[Mutant]:
    """Every mutant of a module, in source order; each key is unique.

    Args:
        source: The module's text.
        rules: What counts as text only (default: :class:`TextRules`).

    Raises:
        SyntaxError: The source does not parse.
    """
    tree = ast.parse(source)
    builder = _Builder(source, rules or TextRules())
    builder.visit(tree)
    found = sorted(builder.found, key=lambda m: (m.start, m.end, m.operator, m.replacement))
    counts: dict[str, int] = {}
    unique: list[Mutant] = []
    for m in found:
        n = counts.get(m.key, 0)
        counts[m.key] = n + 1
        unique.append(replace(m, key=f"{m.key} #{n}"))
    return unique


@dataclass(frozen=True)
class _Token:
    string: str
    start: int
    end: int


class _Builder(ast.NodeVisitor):
    def __init__(self, source: str, rules: TextRules) -> None:
        self.source = source
        self.rules = rules
        self.found: list[Mutant] = []
        self.scope: list[str] = []
        self.text_rule: str | None = None
        self._line_starts = [0]
        for line in source.splitlines(keepends=True):
            self._line_starts.append(self._line_starts[-1] + len(line))
        self._lines = source.splitlines(keepends=True)
        self._tokens = [
            _Token(t.string, self._offset_chars(*t.start), self._offset_chars(*t.end))
            for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type in (tokenize.OP, tokenize.NAME) and t.string in _OP_WORDS
        ]

    # --- positions --------------------------------------------------------------------------
    def _offset_chars(self, line: int, col: int) -> int:
        return self._line_starts[line - 1] + col

    def _offset(self, line: int, col_bytes: int) -> int:
        text = self._lines[line - 1] if line - 1 < len(self._lines) else ""
        col = len(text.encode()[:col_bytes].decode(errors="replace"))
        return self._line_starts[line - 1] + col

    def _span(self, node: ast.AST) -> tuple[int, int]:
        start = self._offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self._offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def _line_of(self, offset: int) -> int:
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def _op_tokens(self, start: int, end: int) -> list[_Token]:
        return [t for t in self._tokens if t.start >= start and t.end <= end]

    # --- recording --------------------------------------------------------------------------
    def _add(
        self, start: int, end: int, replacement: str, operator: str, rule: str | None = None
    ) -> None:
        original = self.source[start:end]
        if original == replacement:
            return
        scope = ".".join(self.scope) or "<module>"
        text = " ".join(original.split())
        if len(text) > 60:
            digest = hashlib.sha256(original.encode()).hexdigest()[:8]
            text = f"{text[:50]}…{digest}"
        shown = " ".join(replacement.split())
        if len(shown) > 60:
            shown = shown[:50] + "…"
        key = f"{scope}: {operator} {text} -> {shown}"
        self.found.append(
            Mutant(
                key=key,
                line=self._line_of(start),
                start=start,
                end=end,
                original=original,
                replacement=replacement,
                operator=operator,
                scope=scope,
                end_line=self._line_of(max(start, end - 1)),
                rule=rule or self.text_rule,
            )
        )

    # --- scopes and skipped parts -------------------------------------------------------------
    def _body_without_docstring(self, body: list[ast.stmt]) -> list[ast.stmt]:
        first = body[0] if body else None
        is_docstring = (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        )
        return body[1:] if is_docstring else body

    def visit_Module(self, node: ast.Module) -> None:
        for stmt in self._body_without_docstring(node.body):
            self.visit(stmt)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.scope.append(node.name)
        args = node.args
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        for stmt in self._body_without_docstring(node.body):
            self.visit(stmt)
        self.scope.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in [*node.bases, *(k.value for k in node.keywords)]:
            self.visit(base)
        self.scope.append(node.name)
        for stmt in self._body_without_docstring(node.body):
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # attribute docstrings
            self.visit(stmt)
        self.scope.pop()

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)

    def visit_Import(self, node: ast.Import) -> None:
        return

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None:
            return
        self._assign_to_none(node, node.value)
        self.visit(node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if "__all__" in names:
            return
        if _is_type_alias(node.value):
            return
        self._assign_to_none(node, node.value)
        for target in node.targets:
            if not isinstance(target, ast.Name):
                self.visit(target)
        self.visit(node.value)

    def _assign_to_none(self, node: ast.stmt, value: ast.expr) -> None:
        if isinstance(value, ast.Constant) and value.value is None:
            return
        start, end = self._span(value)
        self._add(start, end, "None", "assign")

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self._condition(node.test)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    def visit_While(self, node: ast.While) -> None:
        self._condition(node.test)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._condition(node.test)
        self.visit(node.body)
        self.visit(node.orelse)

    def visit_Assert(self, node: ast.Assert) -> None:
        self._condition(node.test)
        if node.msg is not None:
            self._text(node.msg, "message-text")

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        for cond in node.ifs:
            self._condition(cond)

    def _condition(self, test: ast.expr) -> None:
        if isinstance(test, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
            start, end = self._span(test)
            self._add(start, end, f"not ({self.source[start:end]})", "negate")
        self.visit(test)

    # --- statements ---------------------------------------------------------------------------
    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):
            return  # a bare string or ellipsis: no behaviour
        if isinstance(node.value, (ast.Call, ast.Await)):
            start, end = self._span(node)
            rule = "log-line" if self._is_log_call(node.value) else None
            self._add(start, end, "pass", "delete", rule)
        self.visit(node.value)

    def visit_Raise(self, node: ast.Raise) -> None:
        start, end = self._span(node)
        self._add(start, end, "pass", "delete")
        if node.exc is not None:
            self.visit(node.exc)
        if node.cause is not None:
            self.visit(node.cause)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is None:
            return
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            start, end = self._span(node)
            self._add(start, end, "return None", "return")
        self.visit(node.value)

    def visit_Break(self, node: ast.Break) -> None:
        start, end = self._span(node)
        self._add(start, end, "continue", "loop")

    def visit_Continue(self, node: ast.Continue) -> None:
        start, end = self._span(node)
        self._add(start, end, "break", "loop")

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        new = _BINOP.get(type(node.op))
        if new is not None:
            target_end = self._span(node.target)[1]
            between = self.source[target_end : self._span(node.value)[0]]
            match = re.search(r"(\*\*|//|<<|>>|[-+*/%&|^@])=", between)
            if match:
                op_start = target_end + match.start()
                self._add(op_start, op_start + len(match.group(0)), new + "=", "binop")
        self.visit(node.target)
        self.visit(node.value)

    # --- expressions --------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> None:
        previous = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            new = _COMPARE.get(type(op))
            tokens = [
                t
                for t in self._op_tokens(self._span(previous)[1], self._span(right)[0])
                if t.string in {"<", "<=", ">", ">=", "==", "!=", "in", "not", "is"}
            ]
            if new is not None and tokens:
                self._add(tokens[0].start, tokens[-1].end, new, "compare")
            previous = right
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        word = "and" if isinstance(node.op, ast.And) else "or"
        new = "or" if word == "and" else "and"
        for left, right in zip(node.values, node.values[1:], strict=False):
            for tok in self._op_tokens(self._span(left)[1], self._span(right)[0]):
                if tok.string == word:
                    self._add(tok.start, tok.end, new, "boolop")
                    break
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            start, _ = self._span(node)
            tokens = [t for t in self._op_tokens(start, start + 3) if t.string == "not"]
            if tokens:
                self._add(tokens[0].start, tokens[0].end, "", "not")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        new = _BINOP.get(type(node.op))
        if new is not None and not self._is_string_concat(node):
            symbols = {
                ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                ast.Mod: "%", ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&",
                ast.BitOr: "|", ast.BitXor: "^",
            }  # fmt: skip
            symbol = symbols[type(node.op)]
            for tok in self._op_tokens(self._span(node.left)[1], self._span(node.right)[0]):
                if tok.string == symbol:
                    self._add(tok.start, tok.end, new, "binop")
                    break
        self.generic_visit(node)

    def _is_string_concat(self, node: ast.BinOp) -> bool:
        def is_text(n: ast.expr) -> bool:
            return isinstance(n, ast.JoinedStr) or (
                isinstance(n, ast.Constant) and isinstance(n.value, (str, bytes))
            )

        return isinstance(node.op, ast.Add) and (is_text(node.left) or is_text(node.right))

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        start, end = self._span(node)
        if isinstance(value, bool):
            self._add(start, end, repr(not value), "bool")
        elif isinstance(value, int):
            self._add(start, end, repr(value + 1), "number")
        elif isinstance(value, float):
            self._add(start, end, repr(value + 1.0), "number")
        elif isinstance(value, str):
            self._add(start, end, repr("XX" + value + "XX"), "string")
        elif isinstance(value, bytes):
            self._add(start, end, repr(b"XX" + value + b"XX"), "string")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        start, end = self._span(node)
        self._add(start, end, f'("XX" + {self.source[start:end]} + "XX")', "string")
        # the parts are not mutated one by one (their positions are not exact on 3.11)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _name_of(node.value) in {"Literal", "Final", "ClassVar", "Annotated"}:
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.visit(node.func)
        name = _name_of(node.func)
        if self._is_log_call(node):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self._text(arg, "log-line")
            return
        text_positions: set[int] = set(self.rules.calls.get(name or "", ()))
        if name and name.endswith(self.rules.error_suffixes):
            text_positions.add(0)
        for index, arg in enumerate(node.args):
            if index in text_positions:
                self._text(arg, "message-text")
            else:
                self.visit(arg)
        for keyword in node.keywords:
            if keyword.arg in self.rules.keywords:
                self._text(keyword.value, "message-text")
            else:
                self.visit(keyword.value)

    def _text(self, node: ast.expr, rule: str) -> None:
        outer = self.text_rule
        self.text_rule = outer or rule
        self.visit(node)
        self.text_rule = outer

    def _is_log_call(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Await):
            node = node.value
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            return False
        owner = node.func.value
        return isinstance(owner, ast.Name) and owner.id in self.rules.loggers


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return _name_of(test) == "TYPE_CHECKING"


def _is_type_alias(value: ast.expr) -> bool:
    """``X = Literal[...]`` / ``X = A | B`` of types: no behaviour to mutate."""
    if isinstance(value, ast.Subscript):
        return _name_of(value.value) in {"Literal", "Union", "Optional", "Callable", "Annotated"}
    return False
