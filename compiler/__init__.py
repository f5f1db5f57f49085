"""The rule model compiled to other forms: versioned JSON (``json_model``), canonical
rule text (``text``) and Graphviz diagrams (``dot``)."""
