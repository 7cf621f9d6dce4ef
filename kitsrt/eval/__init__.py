"""Scoring label maps against references: KiTS19 Dice, surface Dice, case pairing for `kitsrt eval`."""
