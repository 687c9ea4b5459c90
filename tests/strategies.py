"""Hypothesis strategies the tests share: one place says what "any JSON value" is."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(
    integers: st.SearchStrategy[int] = st.integers(-(2**80), 2**80),
    text_size: int | None = 6,
    key_size: int | None = 4,
    children: int = 3,
    leaves: int = 8,
) -> st.SearchStrategy[Any]:
    """Any value JSON can carry (no NaN or infinity): null, booleans, ``integers``, floats
    and text, in lists and objects of at most ``children`` items and ``leaves`` leaves."""
    return st.recursive(
        st.none()
        | st.booleans()
        | integers
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=text_size),
        lambda inner: (
            st.lists(inner, max_size=children)
            | st.dictionaries(st.text(max_size=key_size), inner, max_size=children)
        ),
        max_leaves=leaves,
    )
