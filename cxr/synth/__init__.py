"""The synthetic demo dataset of `cxr synth` (cxr/synth/generate.py): procedural chest phantoms
in the NIH ChestX-ray14 layout, so the project runs with no download. No real patient. The
modules, in the order a film is made: labels, plan, anatomy, findings, render, generate."""
