"""Module-level helpers of generated modules that use no framework: every target's.

`codegen.helpers` embeds each function's source, as it does a target's own helpers
(`codegen.tensorflow_helpers`, `codegen.jax_helpers`, `codegen.torch_helpers`), in the
modules whose code calls it; plain Python operators on tensors of any framework.
"""


def _power_form(exponent):
    """How `_power` takes x ** exponent: "products" (`_whole_power`) for 1 and a whole
    number from 4 to 16, "logs" (exp(exponent * log(x))) for a finite number that is
    neither whole nor +-0.5, and None (the framework's pow) for the rest and for tensors.

    1 is x itself: TensorFlow's Grappler rewrites pow(x, 1) only where it knows x's
    shape, which it did not in a backward function (a focal gradient's
    (1 - q) ** (gamma - 1) at gamma = 2), where the Pow kernel took half the step."""
    if not isinstance(exponent, (int, float)) or not abs(exponent) < float("inf"):
        return None
    if float(exponent).is_integer():
        return "products" if exponent == 1 or 4 <= exponent <= 16 else None
    return None if abs(exponent) == 0.5 else "logs"


def _whole_power(x, n):
    """x ** n for a whole n >= 1, by squaring: at most 2 * log2(n) products."""
    result = None
    while n:
        if n % 2:
            result = x if result is None else result * x
        n //= 2
        if n:
            x = x * x
    return result
