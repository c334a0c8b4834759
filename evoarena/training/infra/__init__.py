"""Run infrastructure shared by every stage: run folders and their lock (:mod:`.runs`), progress lines
(:mod:`.progress`) and the checks that run once, before any work (:mod:`.checks`)."""
