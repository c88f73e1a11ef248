"""Chest CT: reading, lungs, lesions, quantification, progression, phantom, overlays."""
