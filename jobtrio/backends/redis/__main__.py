"""``python -m jobtrio.backends.redis``: the code generated from the declared job layout."""

from .layout import LAYOUT

print(LAYOUT.lua(), LAYOUT.lua_doc(), "", LAYOUT.python(), sep="\n")
