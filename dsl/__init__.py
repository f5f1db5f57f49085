"""The rule language: text -> typed rule model, its JSON Schema, and evaluation."""
