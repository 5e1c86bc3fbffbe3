"""The synthetic demo dataset (`cxr synth`): procedural chest phantoms in the NIH ChestX-ray14
layout, so the whole project runs on a fresh machine with no download. No real patient.

    labels.py     which findings each patient has and each film shows (prevalence,
                  co-occurrence, persistence over follow-ups)
    plan.py       the films: demographics, labels, the official-style patient split
    anatomy.py    the normal chest: anatomy, pose, exposure, the layers a film is made of
    findings.py   the 14 signs: where each lesion sits and what it does to a film
    render.py     one film's pixels and the exact box of each lesion
    generate.py   `cxr synth`: the dataset folder, written atomically (temp folder, rename)

    >>> from cxr.synth.generate import generate_dataset
    >>> generate_dataset("/tmp/tiny", patients=12, size=64, seed=1)
"""
