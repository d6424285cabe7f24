"""One backend round for one project: Label Studio state in, a new annotation order out.

sync -> embed -> train, score, select -> rank -> push, one module per step; ``runner`` runs
them in order (``RoundRunner``) and says what each project's round is doing.
"""
