"""Griffe extension for the docs site (mkdocs.yml): usdrl's Sphinx-style docstring markup as Markdown.

``:func:`name``` (also :class:, :meth:, :mod:, :data:, :attr:, :exc:, :obj:) becomes the code span
```name``` (``~a.b.c`` shows ``c``, as Sphinx does), and a line ending in ``::`` (an RST literal
block follows) ends in ``:`` instead. The indented block itself already renders as code.
"""

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(?<=\S)::$", re.M)


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _LITERAL.sub(":", _ROLE.sub(_role, obj.docstring.value))
