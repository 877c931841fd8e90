"""Module-level helpers of generated modules that use no framework: every target's.

`codegen.helpers` embeds each function's source, as it does a target's own helpers
(`codegen.tensorflow_helpers`, `codegen.jax_helpers`, `codegen.torch_helpers`), in the
modules whose code calls it; plain Python operators on tensors of any framework.
"""


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
