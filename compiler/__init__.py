"""The rule model turned into forms for people: canonical rule text (``text``), Graphviz
diagrams (``dot``), syntax highlighting (``highlight``) and the HTML catalog (``catalog``)."""
