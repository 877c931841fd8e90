"""The layout of printed statements: lines of at most 88 columns, as black and ruff format.

A home-made formatter rather than black's `format_str`: besides reflowing, it hoists the
largest operand of a line that cannot fit into a new temporary (and puts single-use ones
back), which changes the statements, not only their whitespace; and it formats a
statement at a time in linear time, where a formatter of whole modules would run on
every compile (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace as replace_field

from lossdsl.codegen.body import BackwardPass, FunctionBody
from lossdsl.codegen.text import INDENT, LINE_LENGTH

OUTER, FORWARD, BACKWARD = 0, 1, 2
"""The regions of a function with a backward pass: its own body (the locals and what the
mask needs), the custom gradient's forward function, and the backward function inside
that; each is indented one level more than the one before."""

OUTPUT_RESERVED: dict[str, int] = {
    "result": 16,  # `    return `, `    losses = `
    "mask": 16,  # `    valid = `
    "forward_result": 2 * len(INDENT) + len("return ") + len(", residuals"),
    "gradient": 2 * len(INDENT) + len("return ") + len(", *others"),
}
"""The columns the writer's own text takes on the line of each output (at most, over the
targets: `return result, backward` in TensorFlow's forward function, `return result,
residuals` in JAX's, `return gradient, *others` at depth 2 in JAX's and PyTorch's
backward functions, more than TensorFlow's `return gradient` at depth 3)."""

TEMPORARY_NAME = re.compile(r"t\d+")
"""The printer's temporaries (`codegen.names` keeps spec names out of this pattern)."""


def lay_out(
    definitions: list[tuple[str, str]],
    result: str,
    mask: str | None,
    *,
    regions: list[int] | None = None,
    gradient: str | None = None,
    depths: tuple[int, int, int] = (1, 2, 3),
) -> FunctionBody:
    """The printed assignments, result and mask, formatted as black and ruff format them.

    Every line fits in `LINE_LENGTH` columns at the function body's indentation. A
    statement too long for one line is a call split inside its parentheses (its
    arguments on one line if they fit, else one per line with a trailing comma, calls
    among them split the same way); any other part that does not fit (a long sum or
    product, an argument that is no call) gets its largest operand hoisted into a new
    temporary just before the statement, which reads it at every place that computes the
    same value. `result` and `mask` stay on one line with the writer's text around them
    (`OUTPUT_RESERVED`), their largest calls hoisted. A hoisted temporary used once is
    put back where the line it is used in fits with it.
    Temporaries are numbered in the order they are defined. The text is generated code,
    never spec text.

    With a `gradient`, the body has a backward pass: `regions` gives each definition's
    region (`OUTER`, `FORWARD`, `BACKWARD`; definitions of a region use only those of
    its own and earlier ones), the result is the forward function's, the gradient the
    backward function's, and the mask the outer body's. Each region is laid out at its
    indentation (`depths`, levels), in order, and the body's `backward` holds the inner
    two.
    """
    region_of = regions or [OUTER] * len(definitions)
    if gradient is None:
        outputs = [_Output(result, OUTER, "result")]
    else:
        outputs = [_Output(result, FORWARD, "forward_result")]
        outputs.append(_Output(gradient, BACKWARD, "gradient"))
    if mask is not None:
        outputs.append(_Output(mask, OUTER, "mask"))
    assignments = [
        _Assignment(target, _parse(value), region=region, depth=depths[region])
        for (target, value), region in zip(definitions, region_of, strict=True)
    ]
    layout = _BodyLayout(sorted(assignments, key=lambda a: a.region), outputs, depths)
    layout.hoist_until_fitting()
    layout.inline_single_uses()
    return layout.formatted(backward=gradient is not None)


def _parse(expression: str) -> ast.expr:
    return ast.parse(expression, mode="eval").body


@dataclass(frozen=True)
class _Assignment:
    """`target = value` in a region; `hoisted` when the layout made it up to shorten a line."""

    target: str
    value: ast.expr
    hoisted: bool = False
    region: int = OUTER
    depth: int = 1  # the indentation levels of its region


@dataclass
class _Output:
    """An expression the writer puts on a line of its own: the result, mask or gradient."""

    text: str
    region: int
    kind: str

    def __post_init__(self) -> None:
        self.tree = _parse(self.text)

    @property
    def width(self) -> int:
        return LINE_LENGTH - OUTPUT_RESERVED[self.kind]


class _Hoist(Exception):
    """A sub-expression that must become a temporary for its statement to fit."""

    def __init__(self, node: ast.expr) -> None:
        super().__init__()
        self.node = node


class _BodyLayout:
    """The assignments and outputs being laid out; hoisting adds assignments.

    Each pass goes once through the statements in order, looking at one statement at a
    time, so that laying out a long spec takes time linear in its statements. While
    hoisting, a temporary has a provisional name (`$0`, `$1`, ...: no identifier, so it
    clashes with no other name) until its own statement is laid out and it gets the next
    number; a statement only uses temporaries defined before it, so its text is final
    when it is laid out. `readers` holds the `Name` nodes reading each temporary, renamed
    in place.
    """

    def __init__(
        self, assignments: list[_Assignment], outputs: list[_Output], depths: tuple[int, ...]
    ) -> None:
        self.depths = depths
        self.assignments = assignments
        self.outputs = outputs
        self.readers: dict[str, list[ast.Name]] = {}
        self.laid_out_parts: dict[str, str] = {}
        """The hoisted temporaries laid out so far, by their value (`ast.dump`): the first
        of each value, which the regions after its own see too."""

    def formatted(self, backward: bool) -> FunctionBody:
        statements: dict[int, list[str]] = {OUTER: [], FORWARD: [], BACKWARD: []}
        for assignment in self.assignments:
            lines = statement_lines(assignment.target, assignment.value, assignment.depth)
            statement = "\n".join(lines)
            _check_round_trip(statement, assignment.value)
            statements[assignment.region].append(statement)
        texts = {output.kind: _flat(output.tree) for output in self.outputs}
        if not backward:
            return FunctionBody(tuple(statements[OUTER]), texts["result"], texts.get("mask"))
        return FunctionBody(
            tuple(statements[OUTER]),
            texts["forward_result"],
            texts.get("mask"),
            backward=BackwardPass(
                tuple(statements[FORWARD]), tuple(statements[BACKWARD]), texts["gradient"]
            ),
        )

    def hoist_until_fitting(self) -> None:
        """Hoist parts of the statements too long for their lines, the first ones first;
        the parts of a region's outputs once its statements are laid out."""
        provisional = {
            a.target: f"${i}"
            for i, a in enumerate(a for a in self.assignments if TEMPORARY_NAME.fullmatch(a.target))
        }
        for tree in [*(a.value for a in self.assignments), *(o.tree for o in self.outputs)]:
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id in provisional:
                    node.id = provisional[node.id]
                    self.readers.setdefault(node.id, []).append(node)
        self.assignments = [
            replace_field(a, target=provisional.get(a.target, a.target)) for a in self.assignments
        ]
        numbered = 0
        index = 0
        for region in (OUTER, FORWARD, BACKWARD):
            while True:
                if index == len(self.assignments) or self.assignments[index].region != region:
                    parts = (_output_part(o) for o in self.outputs if o.region == region)
                    if (part := next((p for p in parts if p is not None), None)) is None:
                        break
                    if not self.hoist(index, part, region):
                        continue  # an earlier temporary read instead: the outputs again
                assignment = self.assignments[index]
                target = assignment.target
                if target.startswith("$"):
                    target = f"t{numbered}"
                try:
                    statement_lines(target, assignment.value, assignment.depth)
                except _Hoist as hoist:
                    self.hoist(index, hoist.node, region)
                    continue
                if target != assignment.target:
                    numbered += 1
                    for reader in self.readers.pop(assignment.target, []):
                        reader.id = target
                    self.assignments[index] = replace_field(assignment, target=target)
                if assignment.hoisted:
                    self.laid_out_parts.setdefault(ast.dump(assignment.value), target)
                index += 1

    def hoist(self, index: int, node: ast.expr, region: int) -> bool:
        """Compute `node` in a new temporary just before assignment `index` (or, at the end
        of `region`, its outputs), which reads it wherever they compute the same value. A
        temporary hoisted before it with the same value, in this region or one around it, is
        read instead of a second one. Whether a new one was inserted."""
        reused = self.laid_out_parts.get(ast.dump(node))
        name = reused or f"${len(self.assignments)}"  # provisional names so far are below
        replace = _ReplaceEqual(node, name)
        if index < len(self.assignments) and self.assignments[index].region == region:
            user = self.assignments[index]
            self.assignments[index] = replace_field(user, value=replace.expression(user.value))
        else:
            for output in self.outputs:
                if output.region == region:
                    output.tree = replace.expression(output.tree)
        if reused is not None:
            return False  # laid out already: its name is final
        self.readers[name] = replace.readers
        hoisted = _Assignment(name, node, hoisted=True, region=region, depth=self.depths[region])
        self.assignments.insert(index, hoisted)
        return True

    def inline_single_uses(self) -> None:
        """Put each hoisted temporary used once back where it is used, if that still fits.

        The first ones first, each judged with the temporaries' names before any is put
        back: putting one back only shortens the names after it, so what fits keeps
        fitting when the temporaries left are numbered again at the end.
        """
        trees: dict[str | None, ast.expr] = {a.target: a.value for a in self.assignments}
        depths = {a.target: a.depth for a in self.assignments}
        uses: Counter[str] = Counter()
        user: dict[str, str | None] = {}  # the statement reading a name (None: the outputs)
        readers = [*trees.items(), *((None, output.tree) for output in self.outputs)]
        for reader, tree in readers:
            for name in _names(tree):
                uses[name] += 1
                user[name] = reader
        kept = []
        for assignment in self.assignments:
            target = assignment.target
            if (
                assignment.hoisted
                and uses[target] == 1
                and self.inlined(target, user[target], trees, depths)
            ):
                for name in _names(trees[target]):
                    user[name] = user[target]
            else:
                kept.append(assignment)
        temporaries = [a.target for a in kept if TEMPORARY_NAME.fullmatch(a.target)]
        numbers = {name: f"t{number}" for number, name in enumerate(temporaries)}
        renumber = _Rename(lambda name: numbers.get(name, name))
        self.assignments = [
            replace_field(
                a,
                target=numbers.get(a.target, a.target),
                value=renumber.expression(trees[a.target]),
                hoisted=False,
            )
            for a in kept
        ]
        for output in self.outputs:
            output.tree = renumber.expression(output.tree)

    def inlined(
        self,
        target: str,
        reader: str | None,
        trees: dict[str | None, ast.expr],
        depths: dict[str, int],
    ) -> bool:
        """Whether `target` could be and was put back into its one use (in `trees`)."""
        value = trees[target]
        put_back = _Substitute(target, value)  # in place; `taken_out` undoes it
        taken_out = _Replace(value, ast.Name(target, ast.Load()))
        if reader is not None:
            trees[reader] = put_back.expression(trees[reader])
            try:
                statement_lines(reader, trees[reader], depths[reader])
            except _Hoist:
                trees[reader] = taken_out.expression(trees[reader])
                return False
            return True
        for output in self.outputs:
            output.tree = put_back.expression(output.tree)
        if any(_output_part(output) is not None for output in self.outputs):
            for output in self.outputs:
                output.tree = taken_out.expression(output.tree)
            return False
        return True


def _names(tree: ast.AST) -> list[str]:
    """The variables `tree` reads, once per read."""
    return [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]


def _check_round_trip(statement: str, value: ast.expr) -> None:
    """The formatted statement must be the printed one: the same syntax tree."""
    (parsed,) = ast.parse(statement).body
    if not isinstance(parsed, ast.Assign) or ast.dump(parsed.value) != ast.dump(value):
        raise AssertionError(f"formatting changed the generated statement: {statement}")


class _Transformer(ast.NodeTransformer):
    def expression(self, tree: ast.expr) -> ast.expr:
        """`tree` transformed (in place where it is not replaced as a whole)."""
        transformed = self.visit(tree)
        assert isinstance(transformed, ast.expr)
        return transformed


class _Replace(_Transformer):
    """Replaces one node (by identity) in a tree."""

    def __init__(self, old: ast.expr, new: ast.expr) -> None:
        self.old, self.new = old, new

    def visit(self, node: ast.AST) -> ast.AST:
        return self.new if node is self.old else super().visit(node)


class _ReplaceEqual(_Transformer):
    """Replaces every sub-expression equal to `old` (the same syntax tree) by a read of
    the variable `name`; `readers` holds the reads. The printed code has no side
    effects, so equal expressions have equal values."""

    def __init__(self, old: ast.expr, name: str) -> None:
        self.old, self.name = old, name
        self.readers: list[ast.Name] = []

    def visit(self, node: ast.AST) -> ast.AST:
        if _same_tree(node, self.old):
            self.readers.append(ast.Name(self.name, ast.Load()))
            return self.readers[-1]
        return super().visit(node)


def _same_tree(a: object, b: object) -> bool:
    """Whether two syntax trees are equal as `ast.dump` shows them (their fields, not
    their positions), stopping at the first difference: most nodes differ at once."""
    if type(a) is not type(b):
        return False
    if isinstance(a, ast.AST):
        return all(_same_tree(getattr(a, f, None), getattr(b, f, None)) for f in a._fields)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_tree, a, b))
    return a == b


class _Rename(_Transformer):
    """Renames variables: `new_name` gives each name's new one."""

    def __init__(self, new_name: Callable[[str], str]) -> None:
        self.new_name = new_name

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.new_name(node.id), node.ctx)


class _Substitute(_Transformer):
    """Replaces the variable `name` by an expression."""

    def __init__(self, name: str, value: ast.expr) -> None:
        self.name, self.value = name, value

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.value if node.id == self.name else node


def statement_lines(target: str, value: ast.expr, depth: int = 1) -> list[str]:
    """`target = value` as black lays it out `depth` levels into a module (raises `_Hoist`)."""
    prefix = f"{target} = "
    if isinstance(value, ast.Call):
        return _call_lines(prefix, value, "", depth=depth)
    return [_fitting(prefix + _flat(value), value, depth=depth)]


def _fits(line: str, depth: int) -> bool:
    return len(INDENT) * depth + len(line) <= LINE_LENGTH


def _fitting(line: str, node: ast.expr, depth: int) -> str:
    """`line` if it fits; otherwise `node`'s largest operand must be hoisted."""
    if not _fits(line, depth) and (operand := _largest_operand(node)) is not None:
        raise _Hoist(operand)
    return line


def _call_lines(prefix: str, call: ast.Call, suffix: str, depth: int) -> list[str]:
    """`prefix call suffix`, split inside the call's parentheses when too long."""
    line = prefix + _flat(call) + suffix
    if _fits(line, depth):
        return [line]
    head = f"{prefix}{_flat(call.func, _ATOM)}("
    arguments = _arguments(call)
    joined = INDENT + ", ".join(keyword + _flat(value) for keyword, value in arguments)
    if _fits(joined, depth):
        return [head, joined, ")" + suffix]
    comma = "," if len(arguments) > 1 else ""
    lines = [head]
    for keyword, value in arguments:
        if isinstance(value, ast.Call):
            lines += [INDENT + part for part in _call_lines(keyword, value, comma, depth + 1)]
        else:
            lines.append(INDENT + _fitting(keyword + _flat(value) + comma, value, depth + 1))
    lines.append(")" + suffix)
    return lines


def _arguments(call: ast.Call) -> list[tuple[str, ast.expr]]:
    """A call's arguments in order, each with what is written before it (`axis=`)."""
    positional: list[tuple[str, ast.expr]] = [("", argument) for argument in call.args]
    return positional + [
        (f"{keyword.arg}=" if keyword.arg else "**", keyword.value) for keyword in call.keywords
    ]


# What to hoist: an operand of the expression that does not fit, looking through signs.


def _largest_operand(node: ast.expr) -> ast.expr | None:
    """The longest operand of `node` worth a temporary (a sum's terms, a call's arguments).

    A chain of names only (`t0 + t1 + ... + t9`) has its first half hoisted.
    """
    operands = _operands(node)
    items = [item for operand in operands for item in _tuple_items(operand)]
    for candidates in (items, operands):  # a tuple's items first (`_channels_joined`'s)
        worth = [c for c in map(_unsigned, candidates) if not _is_atomic(c)]
        if worth:
            return max(worth, key=lambda candidate: len(_flat(candidate)))
    chain = node
    for _ in range(len(operands) // 2 if len(operands) > 2 else 0):
        assert isinstance(chain, ast.BinOp)  # a chain of more than two operands
        chain = chain.left  # its first operands: a sub-expression of their own
    return None if chain is node else chain


def _tuple_items(node: ast.expr) -> list[ast.expr]:
    """A tuple's items; any other node itself."""
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def _output_part(output: _Output) -> ast.expr | None:
    """What to hoist from a result, mask or gradient too long for its line.

    The shortest inner call whose temporary makes the line fit, else the longest one.
    """
    excess = len(_flat(output.tree)) - output.width
    if excess <= 0:
        return None
    tree = output.tree
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and node is not tree]
    if not calls:
        return _largest_operand(tree)
    lengths = {id(call): len(_flat(call)) for call in calls}
    enough = [call for call in calls if lengths[id(call)] - len("t00") >= excess]
    if enough:
        return min(enough, key=lambda call: lengths[id(call)])
    return max(calls, key=lambda call: lengths[id(call)])


def _operands(node: ast.expr) -> list[ast.expr]:
    match node:
        case ast.BinOp(left=ast.BinOp() as left, op=op, right=right) if _chained(left.op, op):
            return [*_operands(left), right]
        case ast.BinOp(left=left, right=right):
            return [left, right]
        case ast.UnaryOp(operand=operand) | ast.Attribute(value=operand):
            return [operand]
        case ast.Starred(value=operand) | ast.Subscript(value=operand):
            return [operand]
        case ast.Compare(left=left, comparators=comparators):
            return [left, *comparators]
        case ast.BoolOp(values=values) | ast.List(elts=values) | ast.Tuple(elts=values):
            return list(values)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return [body, test, orelse]
        case ast.Call():
            return [value for _, value in _arguments(node)]
    return []


def _chained(inner: ast.operator, outer: ast.operator) -> bool:
    """Whether `(a inner b) outer c` is one chain `a inner b outer c` of equal precedence."""
    level = _BINARY_OPERATORS[type(outer)][1]
    return _BINARY_OPERATORS[type(inner)][1] == level and level != _POWER


def _unsigned(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.UnaryOp):
        node = node.operand
    return node


def _is_atomic(node: ast.expr) -> bool:
    """A name, a number or an attribute of a name (`p.dtype`): never a temporary."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name | ast.Constant)


# One-line Python text with black's spacing and the fewest parentheses.

_TEST, _OR, _AND, _NOT, _COMPARE, _BIT_OR = 0, 1, 2, 3, 4, 5
_UNARY, _POWER, _ATOM = 11, 12, 13

_BINARY_OPERATORS: dict[type[ast.operator], tuple[str, int]] = {
    ast.BitOr: ("|", _BIT_OR),
    ast.BitXor: ("^", 6),
    ast.BitAnd: ("&", 7),
    ast.LShift: ("<<", 8),
    ast.RShift: (">>", 8),
    ast.Add: ("+", 9),
    ast.Sub: ("-", 9),
    ast.Mult: ("*", 10),
    ast.Div: ("/", 10),
    ast.FloorDiv: ("//", 10),
    ast.Mod: ("%", 10),
    ast.MatMult: ("@", 10),
    ast.Pow: ("**", _POWER),
}
"""Each binary operator's symbol and precedence (higher binds tighter)."""

_UNARY_OPERATORS: dict[type[ast.unaryop], str] = {
    ast.USub: "-",
    ast.UAdd: "+",
    ast.Invert: "~",
}

_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


def _flat(node: ast.AST, context: int = _TEST) -> str:
    """`node` on one line, parenthesized where `context` binds tighter than it."""
    text, precedence = _unparse(node)
    return f"({text})" if precedence < context else text


def _unparse(node: ast.AST) -> tuple[str, int]:
    """`node`'s text and precedence."""
    match node:
        case ast.Name(id=name):
            return name, _ATOM
        case ast.Constant(value=value):
            return _constant(value), _ATOM
        case ast.Attribute(value=value, attr=attribute):
            return f"{_flat(value, _ATOM)}.{attribute}", _ATOM
        case ast.Call(func=function):
            arguments = ", ".join(keyword + _flat(value) for keyword, value in _arguments(node))
            return f"{_flat(function, _ATOM)}({arguments})", _ATOM
        case ast.Subscript(value=value, slice=index):
            return f"{_flat(value, _ATOM)}[{_subscript(index)}]", _ATOM
        case ast.List(elts=elements):
            return "[" + ", ".join(_flat(element) for element in elements) + "]", _ATOM
        case ast.Tuple(elts=elements):
            inside = ", ".join(_flat(element) for element in elements)
            return f"({inside},)" if len(elements) == 1 else f"({inside})", _ATOM
        case ast.Starred(value=value):
            return "*" + _flat(value, _BIT_OR), _ATOM
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return "not " + _flat(operand, _NOT), _NOT
        case ast.UnaryOp(op=op, operand=operand):
            inner = _flat(operand, _UNARY)
            if isinstance(operand, ast.BinOp) and isinstance(operand.op, ast.Pow):
                inner = f"({inner})"  # -(x**2), as ruff writes it
            return _UNARY_OPERATORS[type(op)] + inner, _UNARY
        case ast.BinOp(left=left, op=ast.Pow(), right=right):
            simple = _simple_power_operand(left, False) and _simple_power_operand(right, True)
            spaced = not simple
            power = " ** " if spaced else "**"
            return f"{_flat(left, _POWER + 1)}{power}{_flat(right, _UNARY)}", _POWER
        case ast.BinOp(left=left, op=op, right=right):
            symbol, precedence = _BINARY_OPERATORS[type(op)]
            return f"{_flat(left, precedence)} {symbol} {_flat(right, precedence + 1)}", precedence
        case ast.Compare(left=left, ops=operators, comparators=comparators):
            parts = [_flat(left, _COMPARE + 1)]
            for comparison, comparator in zip(operators, comparators, strict=True):
                parts += [_COMPARISONS[type(comparison)], _flat(comparator, _COMPARE + 1)]
            return " ".join(parts), _COMPARE
        case ast.BoolOp(op=op, values=values):
            word, precedence = (" and ", _AND) if isinstance(op, ast.And) else (" or ", _OR)
            return word.join(_flat(value, precedence + 1) for value in values), precedence
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return f"{_flat(body, _OR)} if {_flat(test, _OR)} else {_flat(orelse)}", _TEST
    raise TypeError(f"no layout for generated {type(node).__name__}")


def _constant(value: object) -> str:
    if value is Ellipsis:
        return "..."
    if isinstance(value, str) and '"' not in value and "'" not in value:
        return '"' + repr(value)[1:-1] + '"'
    if isinstance(value, float):
        return repr(value).replace("e+", "e")  # 1e20, as black writes 1e+20
    return repr(value)


def _subscript(index: ast.AST) -> str:
    if isinstance(index, ast.Tuple):
        return ", ".join(_slice(element) for element in index.elts)
    return _slice(index)


def _slice(node: ast.AST) -> str:
    """A subscript item; a slice with a non-trivial bound gets spaces (`x[1 : n - 1]`)."""
    if not isinstance(node, ast.Slice):
        return _flat(node)
    bounds = [node.lower, node.upper] + ([node.step] if node.step is not None else [])
    simple = all(bound is None or _is_simple(bound) for bound in bounds)
    separator = ":" if simple else " : "
    return separator.join("" if bound is None else _flat(bound) for bound in bounds)


def _is_simple(node: ast.expr) -> bool:
    return isinstance(_unsigned(node), ast.Name | ast.Constant)


def _simple_power_operand(node: ast.expr, signed: bool) -> bool:
    """Black's simple `**` operand (no spaces around the operator): a name, a number, a
    dotted name, or (as the exponent, where it needs no parentheses) one of them negated."""
    if signed and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    return _is_atomic(node)
