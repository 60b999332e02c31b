"""Every study module by its name, imported by name here (never from a string), so
the code that runs a study by name is in the import graph like any other."""

from __future__ import annotations

from types import ModuleType

from aggregame.studies import conj1, fig3, fig4, fig5, fig6, fig8, fig10, fig12

#: Study module name -> module (the values of aggregame.studies.STUDIES).
STUDY_MODULES: dict[str, ModuleType] = {
    module.__name__.rsplit(".", 1)[1]: module
    for module in (fig3, fig4, fig5, fig6, fig8, fig10, fig12, conj1)}
