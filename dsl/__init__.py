"""The rule language: text -> typed rule model (``model``, ``parser``, ``program``,
``validate``), the model's JSON both ways (``codec``, ``schema``), money, running the
EXAMPLEs (``examples``) and evaluation (``evaluate``)."""
