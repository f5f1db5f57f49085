"""The rule model turned into forms for people: canonical rule text (``text``), Graphviz
diagrams (``dot``), syntax highlighting (``highlight``), evaluation traces (``trace``), the
HTML catalog (``catalog``) and the pre-commit hook (``precommit``); errors in ``errors``."""
