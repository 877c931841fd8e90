"""Syntax nodes back to spec text, with only the parentheses the tree needs.

Parsing the text of `unparse_expr(e)` gives back `e` (spans aside): a sum or product
inside another sum or product keeps its brackets, since the parser would flatten it.
Recursion is bounded by the parser's nesting limit. Used by `lossdsl explain` and the
parser's property tests; pretty-printing of checked or symbolic forms is left to them.
"""

from __future__ import annotations

from lossdsl import nodes

# Binding strength, loosest first; postfix covers names, numbers, calls and indexing.
_OR, _AND, _NOT, _COMPARE, _ADD, _MUL, _NEG, _POW, _POSTFIX = range(9)
_LOGIC = {"or": _OR, "and": _AND, "not": _NOT}


def _precedence(expr: nodes.Expr) -> int:
    match expr:
        case nodes.Logic(op=op):
            return _LOGIC[op]
        case nodes.Compare():
            return _COMPARE
        case nodes.Add():
            return _ADD
        case nodes.Mul():
            return _MUL
        case nodes.Neg():
            return _NEG
        case nodes.Pow():
            return _POW
        case nodes.Number(text=text) if text.startswith("-"):
            return _NEG
        case _:
            return _POSTFIX


def _operand(expr: nodes.Expr, tighter_than: int) -> str:
    """`expr`'s text, bracketed unless it binds tighter than `tighter_than`."""
    text = unparse_expr(expr)
    return text if _precedence(expr) > tighter_than else f"({text})"


def unparse_expr(expr: nodes.Expr) -> str:
    """An expression as spec text, e.g. `mean(sum(-y * log(clip(p))))`."""
    match expr:
        case nodes.Number(text=text):
            return text
        case nodes.Name(id=name):
            return name
        case nodes.Add(operands=operands, negated=negated):
            parts = [_operand(operands[0], _ADD)]
            for operand, minus in zip(operands[1:], negated[1:], strict=True):
                parts.append(("- " if minus else "+ ") + _operand(operand, _ADD))
            return " ".join(parts)
        case nodes.Mul(operands=operands, inverted=inverted):
            parts = [_operand(operands[0], _MUL)]
            for operand, divide in zip(operands[1:], inverted[1:], strict=True):
                parts.append(("/ " if divide else "* ") + _operand(operand, _MUL))
            return " ".join(parts)
        case nodes.Neg(operand=operand):
            return "-" + _operand(operand, _MUL)
        case nodes.Pow(base=base, exponent=exponent):
            return f"{_operand(base, _POW)}^{_operand(exponent, _MUL)}"
        case nodes.Call(func=func, args=args, keywords=keywords):
            arguments = [unparse_expr(arg) for arg in args]
            arguments += [f"{keyword.name}={unparse_expr(keyword.value)}" for keyword in keywords]
            return f"{func}({', '.join(arguments)})"
        case nodes.Index(target=target, index=index, ellipsis=ellipsis):
            written = _slice(index) if isinstance(index, nodes.Slice) else unparse_expr(index)
            return f"{_operand(target, _POW)}[{'..., ' if ellipsis else ''}{written}]"
        case nodes.Compare(op=op, left=left, right=right):
            return f"{_operand(left, _COMPARE)} {op} {_operand(right, _COMPARE)}"
        case nodes.Logic(op="not", operands=(operand,)):
            return "not " + _operand(operand, _AND)
        case nodes.Logic(op=op, operands=operands):
            return f" {op} ".join(_operand(operand, _LOGIC[op]) for operand in operands)


def _slice(index: nodes.Slice) -> str:
    """`a:b`, `:b`, `a:` or `a:b:c` as written."""
    bounds = [index.start, index.stop, *((index.step,) if index.step is not None else ())]
    return ":".join("" if bound is None else unparse_expr(bound) for bound in bounds)


def _bound(value: float | None, infinity: str) -> str:
    if value is None:
        return infinity
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def unparse_domain(domain: nodes.Domain) -> str:
    """A param domain as written: `unit`, `[0, inf)`."""
    match domain:
        case nodes.NamedDomain(name=name):
            return name
        case nodes.Interval(low=low, high=high, low_closed=low_closed, high_closed=high_closed):
            opening = "[" if low_closed else "("
            closing = "]" if high_closed else ")"
            return f"{opening}{_bound(low, '-inf')}, {_bound(high, 'inf')}{closing}"


def unparse_statement(statement: nodes.Statement) -> str:
    """One statement as a line of spec text."""
    match statement:
        case nodes.InputDecl(name=name, kind=kind):
            return f"input {name}: {kind}"
        case nodes.ParamDecl(name=name, domain=domain, default=default):
            declared = f"param {name}"
            if domain is not None:
                declared += f": {unparse_domain(domain)}"
            match default:
                case nodes.VectorLiteral(values=values):
                    return f"{declared} = [{', '.join(value.text for value in values)}]"
                case nodes.Number(text=text):
                    return f"{declared} = {text}"
        case nodes.LetDecl(name=name, value=value):
            return f"let {name} = {unparse_expr(value)}"
        case nodes.MaskDecl(condition=condition):
            return f"mask {unparse_expr(condition)}"
        case nodes.LossDecl(name=name, value=value):
            named = f"loss {name}" if name is not None else "loss"
            return f"{named} = {unparse_expr(value)}"


def unparse_spec(spec: nodes.Spec) -> str:
    """A whole spec as text: its docstring as the leading comment block, then statements."""
    lines = [f"# {line}".rstrip() for line in spec.docstring.split("\n")] if spec.docstring else []
    if lines:
        lines.append("")
    lines.extend(unparse_statement(statement) for statement in spec.statements)
    return "\n".join(lines) + "\n"
