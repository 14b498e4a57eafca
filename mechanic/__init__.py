"""The Mechanic: Persais's coding agent (plan, scaffold, Aider, validate, publish).

A library: it imports nothing from `app`. What it needs from outside it declares as
protocols and receives as arguments.
"""
