"""The expression grammar (LALR, parsed by lark) and the parser that turns text into a tree.

Precedence, loosest first: ``or``, ``and``, ``not``, comparisons and ``in`` (one per
level: ``a < b < c`` is refused), ``+ -``, ``* /``, unary minus.
"""

from __future__ import annotations

from decimal import Decimal

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from loom.expressions.errors import ExpressionError
from loom.expressions.nodes import Binary, Call, In, Literal, Node, Path, Unary

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr
    | or_expr OR and_expr -> binary
?and_expr: not_expr
    | and_expr AND not_expr -> binary
?not_expr: comparison
    | NOT not_expr -> unary
?comparison: sum
    | sum COMPARE sum -> binary
    | sum IN "(" args ")" -> member
    | sum NOT IN "(" args ")" -> non_member
?sum: product
    | sum PLUS product -> binary
    | sum MINUS product -> binary
?product: unary
    | product STAR unary -> binary
    | product SLASH unary -> binary
?unary: atom
    | MINUS unary -> unary
?atom: NUMBER -> number
    | STRING -> string
    | TRUE -> true
    | FALSE -> false
    | NULL -> null
    | path
    | NAME LPAR [args] RPAR -> call
    | LPAR or_expr RPAR -> group
path: NAME ("." NAME)*
    | USER ("." NAME)+ -> user_path
args: or_expr ("," or_expr)*

OR: "or"
AND: "and"
NOT: "not"
IN: "in"
TRUE: "true"
FALSE: "false"
NULL: "null"
COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">" | "="
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
LPAR: "("
RPAR: ")"
USER: "$user"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /[0-9]+(\.[0-9]+)?/
STRING: /"(?:[^"\\\n]|\\.)*"/ | /'(?:[^'\\\n]|\\.)*'/
%ignore /[ \t\r\n]+/
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=True)

#: how a message names what the parser wanted or found
_TOKEN_NAMES = {
    "OR": "'or'", "AND": "'and'", "NOT": "'not'", "IN": "'in'", "TRUE": "true", "FALSE": "false",
    "NULL": "null", "COMPARE": "a comparison (= != < <= > >=)", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "LPAR": "'('", "RPAR": "')'", "USER": "$user", "NAME": "a field name",
    "NUMBER": "a number", "STRING": "a text in quotes", "COMMA": "','", "DOT": "'.'", "$END": "the end",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


@v_args(inline=True)
class _Build(Transformer):
    def number(self, token: Token) -> Literal:
        return Literal(token.column, Decimal(token.value) if "." in token.value else int(token.value))

    def string(self, token: Token) -> Literal:
        body, out, i = token.value[1:-1], [], 0
        while i < len(body):
            char = body[i]
            if char == "\\" and i + 1 < len(body):
                i += 1
                char = _ESCAPES.get(body[i], body[i])
            out.append(char)
            i += 1
        return Literal(token.column, "".join(out))

    def true(self, token: Token) -> Literal:
        return Literal(token.column, True)

    def false(self, token: Token) -> Literal:
        return Literal(token.column, False)

    def null(self, token: Token) -> Literal:
        return Literal(token.column, None)

    def path(self, *names: Token) -> Path:
        return Path(names[0].column, tuple(n.value for n in names))

    def user_path(self, user: Token, *names: Token) -> Path:
        return Path(user.column, tuple(n.value for n in names), user=True)

    def binary(self, left: Node, op: Token, right: Node) -> Binary:
        name = {"==": "="}.get(op.value, op.value)
        return Binary(op.column, name, left, right)

    def unary(self, op: Token, operand: Node) -> Unary:
        return Unary(op.column, op.value, operand)

    def member(self, operand: Node, keyword: Token, options: list[Node]) -> In:
        return In(keyword.column, operand, tuple(options))

    def non_member(self, operand: Node, keyword: Token, _in: Token, options: list[Node]) -> In:
        return In(keyword.column, operand, tuple(options), negated=True)

    def call(self, name: Token, _lpar: Token, args: list[Node] | None, _rpar: Token) -> Call:
        return Call(name.column, name.value, tuple(args or ()))

    def group(self, _lpar: Token, inner: Node, _rpar: Token) -> Node:
        return inner

    def args(self, *items: Node) -> list[Node]:
        return list(items)


def parse(text: str) -> Node:
    """The tree of ``text``; ``ExpressionError`` saying where and what is wrong if it is
    not an expression."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty: write a value, a field or a formula", text)
    try:
        return _Build().transform(_PARSER.parse(text))
    except UnexpectedInput as exc:
        raise ExpressionError(_describe(exc, text), text) from None


def _describe(exc: UnexpectedInput, text: str) -> str:
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream]
        if char == "$":
            problem = "unknown reference: '$user.<property>' is the only name that starts with '$'"
        elif char in "\"'":
            problem = "a text is not closed: end it with the same quote it starts with"
        else:
            problem = f"unexpected character {char!r}"
        return _point(problem, text, exc.line, exc.column)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        expected = _expected(exc)
        return _point(f"the expression ends too early{expected}", text, *_end(text))
    assert isinstance(exc, UnexpectedToken)
    found = exc.token
    if found.type == "COMPARE" and "COMPARE" not in exc.expected:
        problem = f"comparisons cannot be chained: write a < b and b < c, not a < b < c; unexpected {found.value!r}"
    elif found.type == "NAME":
        problem = f"unexpected name {found.value!r}{_expected(exc)}"
    else:
        problem = f"unexpected {found.value!r}{_expected(exc)}"
    return _point(problem, text, found.line, found.column)


def _expected(exc: UnexpectedInput) -> str:
    wanted = {n for n in getattr(exc, "expected", ()) or () if not n.startswith("__")}
    if "NUMBER" in wanted:
        return "; expected a value (a number, a text in quotes, a field, a function call) or '('"
    if "COMPARE" in wanted or "PLUS" in wanted:
        return "; expected an operator (+ - * / = != < <= > >= and or in) or the end"
    names = sorted(_TOKEN_NAMES.get(n, repr(n)) for n in wanted)
    return f"; expected {' or '.join(names)}" if names else ""


def _end(text: str) -> tuple[int, int]:
    lines = text.rstrip().split("\n")
    return len(lines), len(lines[-1]) + 1


def _point(problem: str, text: str, line: int, column: int) -> str:
    """The problem, its column, and the line of text with a caret under the column."""
    source = text.split("\n")[line - 1] if line >= 1 else text
    where = f"line {line}, column {column}" if "\n" in text.strip() else f"column {column}"
    return f"{problem} (at {where})\n  {source}\n  {' ' * (column - 1)}^"
